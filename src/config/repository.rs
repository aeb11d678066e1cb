//! `repository:` and the refs an environment accepts: where the app's code comes from, and
//! what a rollback warns about.

use std::path::PathBuf;

use serde::Deserialize;

/// What happens to a ref an environment does not list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OtherRefs {
    #[default]
    Refuse,
    Approval,
}

/// `repository:`: where the app's code comes from, and what a rollback warns about.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RepositorySettings {
    /// The git URL; default: `app_repo` in the group variables.
    pub url: Option<String>,
    /// An SSH deploy key for a private repository (a path, relative to the config).
    pub ssh_key: Option<PathBuf>,
    /// The SSH host keys to trust (a known_hosts file); default: ssh's own.
    pub known_hosts: Option<PathBuf>,
    /// The environment variable holding an HTTPS token for a private repository.
    pub token_env: Option<String>,
    /// Paths whose change between two commits a rollback warns about: a schema does not roll
    /// back with the code.
    pub migrations: Vec<String>,
    /// How long a fetch of the repository may take.
    pub fetch_timeout_secs: u64,
}

impl Default for RepositorySettings {
    fn default() -> Self {
        RepositorySettings {
            url: None,
            ssh_key: None,
            known_hosts: None,
            token_env: None,
            migrations: vec!["migrations/".into()],
            fetch_timeout_secs: 120,
        }
    }
}
