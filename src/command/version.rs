//! Which code an action deploys ([`Version`]: a ref and the commit it resolved to), and how
//! people read a commit.

use serde::{Deserialize, Serialize};

/// Which code an action deploys: the ref asked for, and the commit it was resolved to before
/// the job was created (so a resumed or approved job deploys the same commit, wherever the
/// branch has moved since).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// A branch, tag or commit; none: the environment's default ref.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    /// The full commit SHA, once resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

impl Version {
    /// `feature-x @ 1a2b3c4d`, `1a2b3c4d`, or the ref alone before it is resolved.
    pub fn describe(&self) -> Option<String> {
        match (&self.git_ref, &self.commit) {
            (Some(r), Some(c)) if r.as_str() != c.as_str() => Some(format!("{r} @ {}", short_sha(c))),
            (_, Some(c)) => Some(short_sha(c).to_string()),
            (Some(r), None) => Some(r.clone()),
            (None, None) => None,
        }
    }
}

/// The first 8 characters of a commit SHA, as people read them.
pub fn short_sha(sha: &str) -> &str {
    sha.get(..8).unwrap_or(sha)
}
