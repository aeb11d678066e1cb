//! Ref names: what a user may type as a ref (checked before git ever sees it, so a name can
//! never be read as an option or a revision range), and the nearest existing names for an
//! error about one that does not exist.

use super::GitError;

/// Checks that `name` is a plain branch, tag or commit name (`command::ref_name_problem`, the
/// rule the parser and the config use too). Stricter than
/// `git check-ref-format`: no leading `-` (an option), no `..` (a range), no `@{` or any of
/// `~^:?*[\` (revision syntax), no spaces or control characters, no empty or dot-led path
/// components, no trailing `.lock`.
pub fn validate_ref(name: &str) -> Result<(), GitError> {
    match crate::command::ref_name_problem(name) {
        None => Ok(()),
        Some(_) if name.is_empty() => Err(GitError::Invalid("invalid ref: it is empty".into())),
        Some(why) => Err(GitError::Invalid(format!("invalid ref {}: {why}", quoted(name)))),
    }
}

/// Whether `name` could be a full or abbreviated commit SHA (git's shortest abbreviation is 4).
pub(super) fn looks_like_sha(name: &str) -> bool {
    (4..=40).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Up to `n` names from `candidates` closest to `name` by edit distance, closest first. A name
/// that starts with what was typed counts as close; one that shares nearly nothing does not,
/// so a typo gets suggestions and gibberish gets none.
pub(super) fn nearest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>, n: usize) -> Vec<String> {
    let limit = 1 + name.chars().count() / 2;
    let mut scored: Vec<(usize, &str)> = candidates
        .into_iter()
        .filter_map(|c| {
            let d = strsim::levenshtein(name, c);
            (d <= limit || c.starts_with(name)).then_some((d, c))
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(n).map(|(_, c)| c.to_string()).collect()
}

/// `name` in double quotes, with anything unprintable escaped (it goes into a one-line error).
pub(super) fn quoted(name: &str) -> String {
    format!("{:?}", name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass() {
        for ok in ["master", "feature-x", "release/1.2", "v1.2.0", "e6c1bb7", "user@host"] {
            validate_ref(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn options_ranges_and_odd_characters_are_refused_with_the_reason() {
        let cases = [
            ("-x", "starts with '-'"),
            ("--upload-pack=touch /tmp/x", "starts with '-'"),
            ("v1..v2", "'..'"),
            ("a b", "contains ' '"),
            ("a\nb", "contains '\\n'"),
            ("HEAD~1", "'~'"),
            ("x^{tree}", "'^'"),
            ("master@{1}", "'@{'"),
            ("a//b", "empty path component"),
            ("/a", "empty path component"),
            ("a/.hidden", "starts with '.'"),
            ("x.lock", ".lock"),
            ("", "empty"),
        ];
        for (name, why) in cases {
            let err = validate_ref(name).expect_err(name).to_string();
            assert!(err.contains(why), "{name:?}: {err}");
            assert!(err.starts_with("invalid ref"), "{err}");
        }
        assert!(validate_ref(&"a".repeat(201)).is_err());
    }

    #[test]
    fn shas_are_hex_of_git_lengths() {
        assert!(looks_like_sha("e6c1"));
        assert!(looks_like_sha("e6c1bb7cfcf01e8b98ddb8864f02df7a748022bd"));
        assert!(!looks_like_sha("e6c"));
        assert!(!looks_like_sha("feature"));
        assert!(!looks_like_sha(&"a".repeat(41)));
    }

    #[test]
    fn nearest_names_by_edit_distance() {
        let names = ["master", "feature-x", "feature-y", "v1.0.0", "v1.1.0", "v1.2.0"];
        assert_eq!(nearest("featur-x", names, 3), ["feature-x", "feature-y"]);
        assert_eq!(nearest("v1.3.0", names, 3), ["v1.0.0", "v1.1.0", "v1.2.0"]);
        assert_eq!(nearest("mastr", names, 3), ["master"]);
        assert!(nearest("zzzzzzzz", names, 3).is_empty());
        // A prefix of a long name is close even when the distance is large.
        assert_eq!(nearest("fea", names, 3), ["feature-x", "feature-y"]);
    }
}
