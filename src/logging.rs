//! Logging: stderr, filtered by `ARGOS_LOG`, as text or as JSON lines
//! (`ARGOS_LOG_FORMAT=json`) that carry the job's id, environment and action, and every line
//! passed through the redactor before it is written.

use std::io::{IsTerminal, Write};
use std::path::Path;

/// Logs go to stderr, filtered by `ARGOS_LOG` (default `warn`), as text or, with
/// `ARGOS_LOG_FORMAT=json`, as one JSON object per line carrying the fields of the spans it was
/// logged in (a job's `job`, `env` and `action`).
pub fn init(config: &Path) -> Result<(), String> {
    let json = match std::env::var_os("ARGOS_LOG_FORMAT") {
        None => false,
        Some(v) => match v.to_str().map(str::trim) {
            Some(f) if f.is_empty() || f.eq_ignore_ascii_case("text") => false,
            Some(f) if f.eq_ignore_ascii_case("json") => true,
            _ => {
                return Err(format!(
                    "ARGOS_LOG_FORMAT={} is not a log format: use `text` (the default) or `json`",
                    crate::names::quote(&v.to_string_lossy())
                ))
            }
        },
    };
    // The same secrets the engine masks. Call sites redact what they log already; this catches
    // what a library logs (the AWS SDK's debug and trace output shows request bodies).
    let redactor = crate::config::Config::load(config)
        .map(|c| c.redactor())
        .unwrap_or_else(|_| crate::redact::Redactor::default().with_environment());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("ARGOS_LOG").unwrap_or_else(|_| "warn".into()))
        // Colours only for a person at a terminal, not escape codes in the journal or a file.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(RedactedStderr(redactor));
    if json {
        // Every enclosing span, outermost first, not only the innermost: inside a job the AWS
        // SDK's own spans (debug and trace) nest in the job's, and its lines must name the job too.
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .init();
    } else {
        builder.init();
    }
    Ok(())
}

/// Stderr through the redactor: each log line is collected whole, then masked and written, so
/// a secret is caught however the formatter splits its writes and in its JSON-escaped form too.
struct RedactedStderr(crate::redact::Redactor);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactedStderr {
    type Writer = RedactedLine<'a>;

    fn make_writer(&'a self) -> RedactedLine<'a> {
        RedactedLine {
            redactor: &self.0,
            line: Vec::new(),
        }
    }
}

struct RedactedLine<'a> {
    redactor: &'a crate::redact::Redactor,
    line: Vec<u8>,
}

impl Write for RedactedLine<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RedactedLine<'_> {
    fn drop(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let text = self.redactor.redact(&String::from_utf8_lossy(&self.line));
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
}
