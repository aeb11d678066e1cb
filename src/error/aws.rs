//! [`AwsError`]: a failed AWS call described for a person (the action, AWS's code and
//! message), read off the SDK's error. It lives beside the crate's error type, below `cloud`,
//! so the error type wraps it without importing from a floor above its own.

use aws_sdk_cloudformation::error::ProvideErrorMetadata;

/// A failed AWS call, described for a person: the action, AWS's error code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{action} failed: {}{message}", code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default())]
pub struct AwsError {
    pub action: String,
    pub code: Option<String>,
    pub message: String,
}

impl AwsError {
    pub fn from_sdk<E>(action: &str, err: aws_sdk_cloudformation::error::SdkError<E>) -> AwsError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        use aws_sdk_cloudformation::error::SdkError;
        let code = err.code().map(str::to_string);
        let message = match (err.message(), &err) {
            (Some(m), _) => m.to_string(),
            // An answer we could not read (an HTML error page, say): its status says enough.
            // An answer the SDK could not read: its XML may still say what went wrong (moto
            // wraps CloudFormation's errors in an extra <Errors>), else its status says enough.
            (None, SdkError::ServiceError(se)) => {
                let body = se.raw().body().bytes().map(String::from_utf8_lossy).unwrap_or_default();
                match (xml_text(&body, "Code"), xml_text(&body, "Message")) {
                    (code, Some(message)) => {
                        return AwsError {
                            action: action.to_string(),
                            code: code.or_else(|| err.code().map(str::to_string)),
                            message,
                        }
                    }
                    _ => format!("HTTP {} with an unreadable body", se.raw().status().as_u16()),
                }
            }
            (None, SdkError::TimeoutError(_)) => "no answer in time".to_string(),
            (None, SdkError::DispatchFailure(d)) => match d.as_connector_error() {
                Some(c) if c.is_io() => format!("cannot reach the AWS endpoint: {c}"),
                _ => "cannot reach the AWS endpoint".to_string(),
            },
            (None, _) => aws_sdk_cloudformation::error::DisplayErrorContext(&err).to_string(),
        };
        AwsError {
            action: action.to_string(),
            code,
            message,
        }
    }

    /// CloudFormation's way of saying a stack does not exist.
    pub fn is_missing_stack(&self) -> bool {
        self.code.as_deref() == Some("ValidationError") && self.message.contains("does not exist")
    }
}

/// The text of the first `<tag>` element of an XML error body.
pub(crate) fn xml_text(body: &str, tag: &str) -> Option<String> {
    let start = body.find(&format!("<{tag}>"))? + tag.len() + 2;
    let len = body[start..].find(&format!("</{tag}>"))?;
    let text = body[start..start + len].trim();
    (!text.is_empty()).then(|| {
        text.replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    })
}
