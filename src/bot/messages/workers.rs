//! What the workers' lifecycle answers post: one line per worker in the environment's
//! announce channel.

use crate::engine::workers::Handled;

/// `🧩 **staging** worker i-0abc configured at main @ 1a2b3c4d and in service · job #12`.
pub fn worker_announcement(env: &str, job: u64, handled: &Handled) -> String {
    let icon = match handled {
        Handled::Configured { .. } | Handled::Released { .. } => "🧩",
        Handled::Abandoned { .. } | Handled::ReleasedUndrained { .. } => "⚠️",
    };
    let line = crate::names::shorten(&handled.line().replace('\n', " "), 300);
    format!("{icon} **{env}** {line} · job #{job}")
}

/// The result a lifecycle job records when its replica stopped before it answered.
pub const LIFECYCLE_INTERRUPTED: &str =
    "the replica answering the workers' hooks stopped; the workers still wait and the next round answers them";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_announcement_is_one_line() {
        let ok = Handled::Configured {
            instance: "i-0abc".into(),
            at: Some("main @ 1a2b3c4d".into()),
        };
        assert_eq!(
            worker_announcement("staging", 12, &ok),
            "🧩 **staging** worker i-0abc configured at main @ 1a2b3c4d and in service · job #12"
        );
        let failed = Handled::Abandoned {
            instance: "i-0abc".into(),
            reason: "task Check settings failed\non host i-0abc".into(),
        };
        let text = worker_announcement("staging", 12, &failed);
        assert!(!text.contains('\n'), "{text}");
        assert!(text.starts_with("⚠️ **staging** worker i-0abc abandoned (the group replaces it): task Check"));
    }
}
