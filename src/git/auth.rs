//! How git authenticates to a private app repository, without a secret ever reaching argv, a
//! URL on disk, a log or an error: an SSH deploy key through `GIT_SSH_COMMAND`, or an HTTPS
//! token read from an environment variable and handed to git as an `http.extraHeader` through
//! `GIT_CONFIG_*` variables. [`Scrubber`] removes what might still leak from git's stderr.

use std::path::PathBuf;

use super::GitError;
use crate::redact::Redactor;

/// The user name GitHub expects with a token in HTTP basic authentication (GitLab accepts
/// any name, e.g. `oauth2`).
pub const DEFAULT_TOKEN_USER: &str = "x-access-token";

/// How to authenticate to the app repository.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Auth {
    /// A public repository, or one the process's own SSH setup reaches.
    #[default]
    None,
    /// An SSH deploy key (the private key file). With `known_hosts`, only the host keys in that
    /// file are trusted; without it, ssh's usual files are used. Never prompts.
    SshKey { key: PathBuf, known_hosts: Option<PathBuf> },
    /// An HTTPS token, read from the environment variable `env_var` at each fetch (so a
    /// rotated token is picked up), sent as basic authentication as `user`.
    Token { env_var: String, user: String },
}

impl Auth {
    /// A token from `env_var`, sent as GitHub expects it.
    pub fn token(env_var: impl Into<String>) -> Auth {
        Auth::Token {
            env_var: env_var.into(),
            user: DEFAULT_TOKEN_USER.to_string(),
        }
    }

    /// The environment a network command (clone, fetch) runs with, and the scrubber for its
    /// output. Fails if the token's variable is unset.
    pub(super) fn prepare(&self) -> Result<(Vec<(String, String)>, Scrubber), GitError> {
        match self {
            Auth::None => Ok((Vec::new(), Scrubber::default())),
            Auth::SshKey { key, known_hosts } => {
                // BatchMode: a missing key or unknown host fails at once instead of prompting
                // on a terminal the bot does not have.
                let mut cmd = format!(
                    "ssh -i {} -o IdentitiesOnly=yes -o BatchMode=yes",
                    shell_quote(&key.to_string_lossy())
                );
                if let Some(file) = known_hosts {
                    cmd.push_str(&format!(
                        " -o StrictHostKeyChecking=yes -o UserKnownHostsFile={}",
                        shell_quote(&file.to_string_lossy())
                    ));
                }
                Ok((vec![("GIT_SSH_COMMAND".into(), cmd)], Scrubber::default()))
            }
            Auth::Token { env_var, user } => {
                let token = std::env::var(env_var).unwrap_or_default();
                let token = token.trim();
                if token.is_empty() {
                    return Err(GitError::Invalid(format!(
                        "the environment variable {env_var} that holds the app repository's token is not set"
                    )));
                }
                let encoded = base64(format!("{user}:{token}").as_bytes());
                let header = format!("Authorization: Basic {encoded}");
                let scrubber = Scrubber::new([token.to_string(), encoded, header.clone()]);
                // Appended to whatever GIT_CONFIG_COUNT the process already has would be
                // neater, but a bot's environment has none; ours replaces it.
                let env = vec![
                    ("GIT_CONFIG_COUNT".into(), "1".into()),
                    ("GIT_CONFIG_KEY_0".into(), "http.extraHeader".into()),
                    ("GIT_CONFIG_VALUE_0".into(), header),
                ];
                Ok((env, scrubber))
            }
        }
    }
}

/// Removes secrets from text git wrote: known secret values, and the user information of any
/// URL (`https://user:pass@host` becomes `https://host`).
#[derive(Debug, Clone, Default)]
pub(super) struct Scrubber {
    secrets: Redactor,
}

impl Scrubber {
    pub(super) fn new<I: IntoIterator<Item = String>>(secrets: I) -> Scrubber {
        Scrubber {
            secrets: Redactor::new(secrets),
        }
    }

    pub(super) fn scrub(&self, text: &str) -> String {
        strip_userinfo(&self.secrets.redact(text))
    }
}

/// `text` with the `user[:password]@` part of every `scheme://` URL removed.
pub fn strip_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        // The authority ends at the first '/', quote or white space; its userinfo at the last
        // '@' inside it.
        let end = tail
            .find(|c: char| c == '/' || c == '\'' || c == '"' || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        let host_from = authority.rfind('@').map(|i| i + 1).unwrap_or(0);
        out.push_str(&authority[host_from..]);
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// `s` quoted for the POSIX shell git runs `GIT_SSH_COMMAND` with.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Standard base64 with padding (HTTP basic authentication); a dozen lines instead of a crate.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("x-access-token:abc", "eC1hY2Nlc3MtdG9rZW46YWJj"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain}");
        }
    }

    #[test]
    fn userinfo_is_stripped_from_every_url() {
        assert_eq!(
            strip_userinfo("fatal: unable to access 'https://bob:s3cret@example.com/a.git/': refused"),
            "fatal: unable to access 'https://example.com/a.git/': refused"
        );
        assert_eq!(
            strip_userinfo("ssh://git@h:22/x and http://h/y"),
            "ssh://h:22/x and http://h/y"
        );
        assert_eq!(strip_userinfo("no url here"), "no url here");
        assert_eq!(strip_userinfo("https://a:b@host"), "https://host");
    }

    #[test]
    fn a_token_reaches_git_only_through_the_environment_and_is_scrubbed() {
        std::env::set_var("ARGOS_TEST_GIT_AUTH_TOKEN", "ghp_unit_secret_123");
        let (env, scrubber) = Auth::token("ARGOS_TEST_GIT_AUTH_TOKEN").prepare().unwrap();
        let header = &env.iter().find(|(k, _)| k == "GIT_CONFIG_VALUE_0").unwrap().1;
        assert!(header.starts_with("Authorization: Basic "));
        let leaked = format!("token ghp_unit_secret_123, header {header}");
        let clean = scrubber.scrub(&leaked);
        assert!(
            !clean.contains("ghp_unit_secret_123") && !clean.contains(&header[21..]),
            "{clean}"
        );
        let missing = Auth::token("ARGOS_TEST_GIT_AUTH_UNSET").prepare().unwrap_err();
        assert!(missing.to_string().contains("ARGOS_TEST_GIT_AUTH_UNSET"), "{missing}");
    }

    #[test]
    fn ssh_key_paths_are_quoted_for_the_shell() {
        let auth = Auth::SshKey {
            key: "/keys/it's.pem".into(),
            known_hosts: Some("/state/known_hosts".into()),
        };
        let (env, _) = auth.prepare().unwrap();
        assert_eq!(env[0].0, "GIT_SSH_COMMAND");
        assert_eq!(
            env[0].1,
            "ssh -i '/keys/it'\\''s.pem' -o IdentitiesOnly=yes -o BatchMode=yes \
             -o StrictHostKeyChecking=yes -o UserKnownHostsFile='/state/known_hosts'"
        );
    }
}
