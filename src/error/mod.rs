//! The engine's error type. Its `Display` is what a user reads: the root cause first, in one
//! line, with the remedy where there is one. Secrets are removed before errors leave the engine.

mod aws;

pub use aws::AwsError;

use crate::config::ConfigError;
use crate::template::TemplateError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input, found before any AWS call.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Template(#[from] TemplateError),
    /// An AWS call failed (after the SDK's retries).
    #[error("{0}")]
    Aws(#[from] AwsError),
    /// A stack operation ended in a failed state; the message leads with the root cause.
    #[error("{0}")]
    StackFailed(String),
    /// The state of AWS does not allow the operation; the message says what to do.
    #[error("{0}")]
    Refused(String),
    /// A playbook failed: "task T failed on host H: message".
    #[error("{0}")]
    Playbook(String),
    /// A health check failed after a deploy: "unhealthy: <role> <host> <check> → <what>
    /// (expected <status>)", then the way back.
    #[error("{0}")]
    Unhealthy(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("cancelled")]
    Cancelled,
    #[error("{0}")]
    Io(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The same error with every secret masked.
    pub fn redacted(self, r: &crate::redact::Redactor) -> Error {
        match self {
            Error::Cancelled => Error::Cancelled,
            other => {
                let text = r.redact(&other.to_string());
                match other {
                    Error::Invalid(_) => Error::Invalid(text),
                    Error::Refused(_) => Error::Refused(text),
                    Error::Playbook(_) => Error::Playbook(text),
                    Error::Unhealthy(_) => Error::Unhealthy(text),
                    Error::Timeout(_) => Error::Timeout(r.redact(&text.replacen("timed out: ", "", 1))),
                    _ => Error::StackFailed(text),
                }
            }
        }
    }
}
