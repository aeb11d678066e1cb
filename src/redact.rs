//! Secret redaction: every line from a subprocess, an AWS error or a chat reply passes through
//! a [`Redactor`] before it goes anywhere.

use std::sync::Arc;

/// What replaces a secret.
pub const MASK: &str = "[redacted]";

/// Values shorter than this are not treated as secrets: masking "1" or "ok" everywhere would
/// shred ordinary output without protecting anything.
const MIN_SECRET_LEN: usize = 4;

/// Environment variables whose values are always secret.
const SECRET_ENV_HINTS: &[&str] = &["PASSWORD", "SECRET", "TOKEN", "PRIVATE_KEY", "CREDENTIAL"];

/// A set of secret values, cheap to clone and share between tasks.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Arc<Vec<String>>,
}

impl Redactor {
    pub fn new<I, S>(values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut secrets: Vec<String> = Vec::new();
        for v in values {
            let v: String = v.into();
            if v.len() < MIN_SECRET_LEN {
                continue;
            }
            // A secret can reach us JSON-escaped (Ansible's JSON lines) as well as raw.
            let escaped = serde_json::to_string(&v).unwrap_or_default();
            let escaped = escaped.trim_matches('"').to_string();
            if escaped != v {
                secrets.push(escaped);
            }
            secrets.push(v);
        }
        // Longest first, so a secret that contains another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor {
            secrets: Arc::new(secrets),
        }
    }

    /// Adds the values of secret-looking variables from the process environment.
    pub fn with_environment(self) -> Self {
        let mut values: Vec<String> = self.secrets.iter().cloned().collect();
        values.extend(std::env::vars().filter(|(k, _)| is_secret_name(k)).map(|(_, v)| v));
        Redactor::new(values)
    }

    /// Returns `text` with every secret replaced by [`MASK`].
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in self.secrets.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        out
    }

    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }
}

/// Whether a variable or key name suggests its value is a secret.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_ENV_HINTS.iter().any(|h| upper.contains(h)) || upper.ends_with("_KEY") && !upper.ends_with("KEY_NAME")
}

/// The tokens a chat adapter holds (Discord's bot token, Slack's app and bot tokens), kept only
/// to scrub them out of the text of errors before they are logged or shown: one scrubber for
/// every adapter. A Socket Mode address's one-time `ticket=` is masked too.
#[derive(Debug, Clone, Default)]
pub struct TokenScrubber {
    tokens: Vec<String>,
}

impl TokenScrubber {
    /// Tokens shorter than 8 characters are not real tokens and are not masked. Discord's
    /// `Bot ` prefix is not part of the secret.
    pub fn new<I, S>(tokens: I) -> TokenScrubber
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let tokens = tokens
            .into_iter()
            .map(|t| t.as_ref().trim().trim_start_matches("Bot ").trim().to_string())
            .filter(|t| t.len() >= 8)
            .collect();
        TokenScrubber { tokens }
    }

    pub fn scrub(&self, mut text: String) -> String {
        for token in &self.tokens {
            if text.contains(token.as_str()) {
                text = text.replace(token.as_str(), "[token]");
            }
        }
        if let Some(at) = text.find("ticket=") {
            let end = text[at..]
                .find(|c: char| c == '&' || c == '"' || c.is_whitespace())
                .map(|e| at + e)
                .unwrap_or(text.len());
            text.replace_range(at + 7..end, "[ticket]");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_raw_and_json_escaped_values() {
        let r = Redactor::new(["pa\"ss/word", "hunter22"]);
        assert_eq!(r.redact("db=hunter22 ok"), "db=[redacted] ok");
        let json = serde_json::json!({ "msg": "pa\"ss/word" }).to_string();
        assert!(!r.redact(&json).contains("ss/word"), "{}", r.redact(&json));
    }

    #[test]
    fn ignores_trivially_short_values() {
        let r = Redactor::new(["ok", ""]);
        assert_eq!(r.redact("ok"), "ok");
    }

    #[test]
    fn names_that_look_secret() {
        assert!(is_secret_name("db_password"));
        assert!(is_secret_name("DISCORD_TOKEN"));
        assert!(is_secret_name("app_secret_key"));
        assert!(!is_secret_name("key_name"));
        assert!(!is_secret_name("app_name"));
    }

    #[test]
    fn chat_tokens_and_tickets_are_scrubbed() {
        let s = TokenScrubber::new(["xoxb-1234-secret", "xapp-1-abcdefgh", "Bot discord-token-123", "short"]);
        assert_eq!(
            s.scrub("bad xoxb-1234-secret and xapp-1-abcdefgh".into()),
            "bad [token] and [token]"
        );
        assert_eq!(
            s.scrub("cannot connect to wss://x/link/?ticket=abc-123&app_id=A1: refused".into()),
            "cannot connect to wss://x/link/?ticket=[ticket]&app_id=A1: refused"
        );
        assert_eq!(
            s.scrub("Authorization: Bot discord-token-123".into()),
            "Authorization: Bot [token]"
        );
        assert_eq!(s.scrub("a short word".into()), "a short word");
    }
}
