//! The error a git operation ends in: one line a user can read, with every secret already
//! scrubbed (the token, its encoded header, any password in a URL).

/// What went wrong with the app repository. The text never holds a secret: git's output is
/// scrubbed before it is put here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitError {
    /// Bad input (a ref name, a URL, a path prefix), refused before git ran.
    #[error("{0}")]
    Invalid(String),
    /// The ref is neither a branch, a tag nor a commit of the repository; the text names the
    /// nearest names that exist.
    #[error("{0}")]
    UnknownRef(String),
    /// The remote could not be reached or refused us (network, authentication).
    #[error("{0}")]
    Unreachable(String),
    #[error("timed out: {0}")]
    Timeout(String),
    /// git failed otherwise, or the mirror's folder could not be written.
    #[error("{0}")]
    Failed(String),
}

impl From<GitError> for crate::error::Error {
    fn from(e: GitError) -> Self {
        use crate::error::Error;
        match e {
            GitError::Invalid(m) | GitError::UnknownRef(m) => Error::Invalid(m),
            GitError::Timeout(m) => Error::Timeout(m),
            GitError::Unreachable(m) => Error::Refused(m),
            GitError::Failed(m) => Error::Io(m),
        }
    }
}
