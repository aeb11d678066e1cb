//! `web:`: the read-only web page of `argos bot` (served on `health.listen`): the address people
//! reach it at, how long a sign-in link and a session last, and how much of a job's log the
//! store keeps.

use serde::Deserialize;

/// The smallest log limit accepted: below it a job's head and tail say nothing useful.
pub const MIN_LOG_LIMIT_BYTES: u64 = 4096;

/// The largest: a job page renders the whole kept log.
pub const MAX_LOG_LIMIT_BYTES: u64 = 1 << 30;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSettings {
    /// The page's address as people reach it (`https://argos.example.com`), without a trailing
    /// slash. Sign-in links and the status messages' job links start with it; unset, `web`
    /// says the page is not configured and status messages carry no link. Behind https the
    /// session cookie is marked Secure.
    pub public_url: Option<String>,
    /// How long a sign-in link from `web` stays valid (it is valid once).
    pub link_minutes: u64,
    /// How long a session lasts after signing in.
    pub session_hours: u64,
    /// The most of one job's log the store keeps, in bytes. A longer log keeps its first and
    /// last halves, and the page says how much was dropped in between.
    pub log_limit_bytes: u64,
}

impl Default for WebSettings {
    fn default() -> Self {
        WebSettings {
            public_url: None,
            link_minutes: 10,
            session_hours: 12,
            log_limit_bytes: 4 * 1024 * 1024,
        }
    }
}

impl WebSettings {
    /// The key at fault and what is wrong with it.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if let Some(url) = &self.public_url {
            let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
            if !scheme_ok || url.ends_with('/') || url.chars().any(char::is_whitespace) {
                return Err((
                    "web.public_url",
                    format!("'{url}' must be an http:// or https:// address without a trailing slash, e.g. https://argos.example.com"),
                ));
            }
        }
        if self.link_minutes == 0 || self.link_minutes > 60 {
            return Err((
                "web.link_minutes",
                "must be 1 to 60 (a sign-in link is short-lived)".into(),
            ));
        }
        if self.session_hours == 0 || self.session_hours > 24 * 30 {
            return Err(("web.session_hours", "must be 1 to 720".into()));
        }
        if !(MIN_LOG_LIMIT_BYTES..=MAX_LOG_LIMIT_BYTES).contains(&self.log_limit_bytes) {
            return Err((
                "web.log_limit_bytes",
                format!("must be {MIN_LOG_LIMIT_BYTES} to {MAX_LOG_LIMIT_BYTES} (1 GiB)"),
            ));
        }
        Ok(())
    }

    /// Whether the session cookie must be marked Secure (the page is reached over https).
    pub fn secure_cookie(&self) -> bool {
        self.public_url.as_deref().is_some_and(|u| u.starts_with("https://"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_name_their_key() {
        let ok = WebSettings::default();
        assert_eq!(ok.check(), Ok(()));
        assert!(!ok.secure_cookie());
        for (bad, key) in [
            (
                WebSettings {
                    public_url: Some("argos.example.com".into()),
                    ..WebSettings::default()
                },
                "web.public_url",
            ),
            (
                WebSettings {
                    public_url: Some("https://argos.example.com/".into()),
                    ..WebSettings::default()
                },
                "web.public_url",
            ),
            (
                WebSettings {
                    link_minutes: 0,
                    ..WebSettings::default()
                },
                "web.link_minutes",
            ),
            (
                WebSettings {
                    session_hours: 10_000,
                    ..WebSettings::default()
                },
                "web.session_hours",
            ),
            (
                WebSettings {
                    log_limit_bytes: u64::MAX,
                    ..WebSettings::default()
                },
                "web.log_limit_bytes",
            ),
        ] {
            assert_eq!(bad.check().unwrap_err().0, key);
        }
        let https = WebSettings {
            public_url: Some("https://argos.example.com".into()),
            ..WebSettings::default()
        };
        assert_eq!(https.check(), Ok(()));
        assert!(https.secure_cookie(), "behind https the cookie is Secure");
    }
}
