//! Environment names and the names and tags derived from them (stack, image, `Name` tag), how a
//! user's text is quoted back ([`quote`]), and how a local path is shown ([`shown_path`]).
//!
//! One place decides what a valid environment is, so the CLI, the chat grammar and the engine
//! all refuse `Prod!` the same way, before any AWS call.

use std::fmt;

/// Longest environment name we accept. The stack is `<app>-<env>` and resource names such as
/// the RDS identifier (63 characters) and `Name` tags are built from it, so leave room.
pub const MAX_ENV_LEN: usize = 32;

/// A validated environment name: lowercase letters, digits and single hyphens, starting with a
/// letter. Constructed only through [`EnvName::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnvName(String);

/// Why a name was refused; the message tells the user what a valid name looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid environment name {shown}: {reason} (use lowercase letters, digits and single hyphens, starting with a letter, at most {MAX_ENV_LEN} characters)")]
pub struct InvalidName {
    shown: String,
    reason: String,
}

impl InvalidName {
    fn new(raw: &str, reason: impl Into<String>) -> Self {
        InvalidName {
            shown: quote(raw),
            reason: reason.into(),
        }
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters (also none) and
/// every other character matches itself: environment patterns (`qa-*`, `*`) in permissions,
/// approval policies, ref lists and freezes. Greedy with backtracking to the last `*` only, so
/// it is linear-ish even for patterns like `a*a*a*b`.
pub fn pattern_matches(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // The last `*` seen and the text position it is currently assumed to swallow up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            // Let the last `*` swallow one more character and retry from there.
            star = Some((sp, st + 1));
            pi = sp + 1;
            ti = st + 1;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// The most characters of a user's text that a reply or an error quotes back.
pub const QUOTE_MAX_CHARS: usize = 60;

/// A user's text as it may be shown back, in single quotes: see [`shorten`]. Every reply and
/// error that quotes what someone typed goes through this (or [`shorten`], unquoted).
pub fn quote(raw: &str) -> String {
    format!("'{}'", shorten(raw, QUOTE_MAX_CHARS))
}

/// A user's text made safe to show: control characters escaped (`\x1b`, `\n`), and the
/// invisible ones that reorder or hide text (bidirectional overrides, zero-width characters,
/// line separators) as `\u{202e}`, so a terminal or a chat shows them instead of obeying them;
/// at most `max` characters in all, ending with `…` when cut. Only the part shown is read.
pub fn shorten(raw: &str, max: usize) -> String {
    let mut out = String::new();
    let mut len = 0;
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        let piece = match c {
            '\n' => "\\n".to_string(),
            '\r' => "\\r".to_string(),
            '\t' => "\\t".to_string(),
            // C0, DEL and C1: all at most 0x9f.
            c if c.is_control() => format!("\\x{:02x}", c as u32),
            c if is_invisible(c) => format!("\\u{{{:x}}}", c as u32),
            c => c.to_string(),
        };
        let n = piece.chars().count();
        // Room for `…` unless this is the last piece.
        let room = if chars.peek().is_some() {
            max.saturating_sub(1)
        } else {
            max
        };
        if len + n > room {
            out.push('…');
            break;
        }
        out.push_str(&piece);
        len += n;
    }
    out
}

/// Format characters that change how text around them reads without showing themselves.
fn is_invisible(c: char) -> bool {
    matches!(c as u32, 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x2069 | 0xFEFF)
}

impl EnvName {
    pub fn parse(raw: &str) -> Result<Self, InvalidName> {
        if raw.is_empty() {
            return Err(InvalidName::new(raw, "it is empty"));
        }
        let len = raw.chars().count();
        if len > MAX_ENV_LEN {
            return Err(InvalidName::new(raw, format!("it is {len} characters long")));
        }
        if let Some(bad) = raw
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            let what = if bad.is_ascii_uppercase() {
                format!("it contains the uppercase letter '{bad}'")
            } else if bad.is_whitespace() || bad.is_control() {
                "it contains whitespace or a control character".to_string()
            } else {
                // Quoted like the name: an invisible character (a bidi override) is shown escaped.
                format!("it contains {}", quote(&bad.to_string()))
            };
            return Err(InvalidName::new(raw, what));
        }
        if !raw.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(InvalidName::new(raw, "it must start with a letter"));
        }
        if raw.ends_with('-') || raw.contains("--") {
            return Err(InvalidName::new(raw, "hyphens may not end it or stand twice in a row"));
        }
        Ok(EnvName(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EnvName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks an application name (`app_name` in group_vars) with the same rules.
pub fn validate_app_name(raw: &str) -> Result<(), String> {
    EnvName::parse(raw)
        .map(|_| ())
        .map_err(|e| e.to_string().replace("environment name", "app_name"))
}

/// The names every part of the system agrees on for one app and environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub app: String,
    pub env: EnvName,
}

impl Names {
    pub fn new(app: &str, env: &EnvName) -> Self {
        Names {
            app: app.to_string(),
            env: env.clone(),
        }
    }
    /// The application stack: `<app>-<env>`.
    pub fn stack(&self) -> String {
        format!("{}-{}", self.app, self.env)
    }
    /// The `Name` tag of a group's resources: `<app>-<env>-<group>`.
    pub fn group_name_tag(&self, group: &str) -> String {
        format!("{}-{}-{}", self.app, self.env, group)
    }
}

/// Names of the environment-agnostic image and its build stack.
/// This machine's host name (for replica records and messages), or `localhost`.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    match (rc, std::str::from_utf8(&buf[..end])) {
        (0, Ok(h)) if !h.is_empty() => h.to_string(),
        _ => "localhost".to_string(),
    }
}

pub fn image_name(app: &str) -> String {
    format!("{app}-image")
}

/// The stack that holds the image build instance (from `formations/image.json`).
pub fn image_stack(app: &str) -> String {
    format!("{app}-image")
}

/// Tag keys shared by the templates, the engine and the playbooks' inventory.
pub mod tags {
    pub const NAME: &str = "Name";
    pub const GROUP: &str = "Group";
    pub const ENV: &str = "Env";
    pub const APP: &str = "App";
    /// On images: the hash of everything that went into the image.
    pub const INPUTS_HASH: &str = "InputsHash";
    /// On images: the app commit the image was baked from.
    pub const COMMIT: &str = "Commit";
    /// On images: which role the image serves.
    pub const ROLE: &str = "Role";
    /// The Env/Group value of the image build instance.
    pub const IMAGE_GROUP: &str = "image";
}

/// A path as a terminal shows it: relative to the working directory when it lies under it
/// (`sandbox/state/logs/job-1.log`), as it is otherwise.
pub fn shown_path(path: &std::path::Path) -> String {
    let here = std::env::current_dir().ok();
    let relative = here.as_deref().and_then(|here| path.strip_prefix(here).ok());
    relative.unwrap_or(path).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(pattern_matches("*", "anything"));
        assert!(pattern_matches("qa-*", "qa-2"));
        assert!(!pattern_matches("qa-*", "qa"));
        assert!(pattern_matches("a*c", "abbbc"));
        assert!(!pattern_matches("staging", "staging2"));
    }

    #[test]
    fn patterns_do_not_blow_up_and_agree_on_edge_cases() {
        assert!(pattern_matches("", ""));
        assert!(!pattern_matches("", "a"));
        assert!(pattern_matches("**", ""));
        assert!(pattern_matches("*-*", "qa-2"));
        assert!(!pattern_matches("*-*", "qa2"));
        assert!(pattern_matches("q*2", "qa-2"));
        let long = "a".repeat(200);
        assert!(!pattern_matches("a*a*a*a*a*a*a*a*a*a*b", &long));
        assert!(pattern_matches("a*a*a*a*a*a*a*a*a*a*", &long));
    }

    #[test]
    fn accepts_ordinary_names() {
        for ok in ["staging", "prod", "qa-2", "a", "feature-x1"] {
            assert_eq!(EnvName::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_bad_names_with_reasons() {
        let cases = [
            ("Prod!", "uppercase letter 'P'"),
            ("prod!", "contains '!'"),
            ("a;b", "contains ';'"),
            ("", "it is empty"),
            ("1abc", "start with a letter"),
            ("ab-", "hyphens"),
            ("a--b", "hyphens"),
            ("a b", "whitespace"),
            // Found by tests/it/grammar_fuzz.rs: the reason showed a bidi override raw.
            ("stag\u{202e}ing", "contains '\\u{202e}'"),
        ];
        for (raw, why) in cases {
            let err = EnvName::parse(raw).unwrap_err().to_string();
            assert!(err.contains(why), "{raw:?}: {err}");
            assert!(!err.contains('\u{202e}'), "{raw:?}: {err}");
        }
        let long = "a".repeat(200);
        let err = EnvName::parse(&long).unwrap_err().to_string();
        assert!(err.contains("200 characters long"), "{err}");
        assert!(err.len() < 250, "the name is shortened in the message: {err}");
    }

    #[test]
    fn quoted_text_is_short_and_shows_control_characters() {
        assert_eq!(quote("deplyo"), "'deplyo'");
        assert_eq!(quote("\x1b[2J\x1b[H"), "'\\x1b[2J\\x1b[H'");
        assert_eq!(quote("a\tb\nc\r\u{7f}\u{9b}"), "'a\\tb\\nc\\r\\x7f\\x9b'");
        assert_eq!(quote("abc\u{202e}fed"), "'abc\\u{202e}fed'");
        let long = quote(&"a".repeat(100_000));
        assert_eq!(long, format!("'{}…'", "a".repeat(QUOTE_MAX_CHARS - 1)));
        // The bound holds for the escaped text too.
        let escapes = shorten(&"\x1b".repeat(1000), 60);
        assert_eq!(escapes.chars().count(), 57, "{escapes}");
        assert!(escapes.ends_with("\\x1b…"), "{escapes}");
        // Exactly `max` characters are shown whole.
        assert_eq!(shorten(&"b".repeat(60), 60), "b".repeat(60));
        assert_eq!(shorten("", 60), "");
        assert_eq!(shorten("é€", 1), "…");
    }

    #[test]
    fn derives_names() {
        let n = Names::new("argos", &EnvName::parse("staging").unwrap());
        assert_eq!(n.stack(), "argos-staging");
        assert_eq!(n.group_name_tag("api"), "argos-staging-api");
        assert_eq!(image_name("argos"), "argos-image");
    }

    #[test]
    fn paths_under_the_working_directory_are_shown_relative_to_it() {
        let here = std::env::current_dir().unwrap();
        let log = here.join("sandbox/state/logs/job-1.log");
        assert_eq!(shown_path(&log), "sandbox/state/logs/job-1.log");
        assert_eq!(
            shown_path(std::path::Path::new("/elsewhere/job-1.log")),
            "/elsewhere/job-1.log"
        );
    }
}
