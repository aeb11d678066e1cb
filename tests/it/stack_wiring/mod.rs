//! The stack's wiring, derived from the merged template (through the crate's merge API) and
//! from the playbooks' variables and templates, never written down twice: every connection
//! between roles (front → api, the app's hosts → database, → the knowledge server's Fuseki
//! and NER, → broker) must go to a port on which the target's playbook makes a service
//! listen, reachable from other hosts, and be allowed by the target's security group from
//! exactly the source's group; every ingress rule must serve such a connection (or be the
//! front's public HTTP, or SSH from `AllowedSshCidr`). The app's side of a connection is the
//! setting upstream Argos reads (see `upstream_argos`): a name it does not read leaves the app
//! on upstream's default, `localhost`.
//!
//! Checked for every switch of the template that changes the wiring (broker on/off, workers
//! on/off); a combination the template's `Rules` refuse is not deployable and is skipped.
//!
//! The derivation is split by what it reads: `vars.rs` the Ansible variables, `listeners.rs`
//! what each group's playbook makes listen where, `connections.rs` who connects to what,
//! `security_groups.rs` the template's compute resources and ingress rules; `checks.rs` holds
//! the tests, which put them together.
use crate::upstream_argos;

mod checks;
mod connections;
mod https;
mod listeners;
mod security_groups;
mod vars;

use std::path::PathBuf;

use argos::template::{load_formations, Template};
use serde_json::Value;

pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

pub(crate) fn yaml(rel: &str) -> Value {
    serde_saphyr::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

pub(crate) fn templates() -> (Template, Template) {
    load_formations(&repo().join("formations")).expect("formations/ merges")
}
