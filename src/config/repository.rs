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

/// Checks `repository:` and the environments' refs; the key and what is wrong.
pub(super) fn check(s: &super::Settings) -> Result<(), (String, String)> {
    let r = &s.repository;
    if r.ssh_key.is_some() && r.token_env.is_some() {
        return Err(("repository".into(), "give ssh_key or token_env, not both".into()));
    }
    if let Some(url) = &r.url {
        let bad =
            url.trim().is_empty() || url.starts_with('-') || url.chars().any(|c| c.is_whitespace() || c.is_control());
        if bad {
            return Err(("repository.url".into(), "not a git URL or path".into()));
        }
        // `https://user:secret@host/…`: a password in the config (and in every error) is refused.
        let userinfo = url
            .split_once("://")
            .and_then(|(_, rest)| rest.split('/').next()?.split_once('@'));
        if userinfo.is_some_and(|(user, _)| user.contains(':')) {
            return Err((
                "repository.url".into(),
                "holds a password: put the token in the environment and name it in repository.token_env".into(),
            ));
        }
    }
    for m in &r.migrations {
        if m.is_empty() || m.starts_with('/') || m.split('/').any(|p| p == "..") {
            return Err((
                "repository.migrations".into(),
                format!("'{m}' is not a path inside the repository"),
            ));
        }
    }
    let envs = std::iter::once(("defaults".to_string(), &s.defaults))
        .chain(s.environments.iter().map(|(n, e)| (format!("environments.{n}"), e)));
    for (key, env) in envs {
        let names_versions = env.git_ref.is_some() || !env.refs.is_empty() || env.other_refs != OtherRefs::Refuse;
        if names_versions && r.url.is_none() {
            return Err((
                key,
                "ref, refs and other_refs need repository.url (versions are off without it)".into(),
            ));
        }
        if let Some(name) = &env.git_ref {
            if !crate::command::is_ref_name(name) {
                return Err((
                    format!("{key}.ref"),
                    format!("'{name}' is not a branch, tag or commit name"),
                ));
            }
        }
        if let Some(p) = env
            .refs
            .iter()
            .find(|p| p.trim().is_empty() || p.chars().any(char::is_whitespace))
        {
            return Err((format!("{key}.refs"), format!("'{p}' is not a ref pattern")));
        }
    }
    Ok(())
}
