//! How often a job's status message is redrawn, per platform. A chat API counts edits:
//! Discord and Slack get at most one edit per `chat.edit_interval_ms` per message, a per-message
//! budget (`chat.edit_burst`, then one every `chat.edit_refill_secs`) and a budget shared by
//! every message of the bot (`chat.edits_per_second`), under the adapters' own request limits.
//! A terminal counts nothing: the console has no budget, and redraws each second even when
//! nothing happened, so the elapsed time it shows is never more than a second old.

use std::time::Duration;

use crate::address::ChatPlatform;
use crate::bot::pace::Pacing;
use crate::config::ChatSettings;

/// How often the console redraws a running job's status message.
pub const CONSOLE_REDRAW: Duration = Duration::from_secs(1);

/// The pacing of `platform`'s status messages.
pub fn of(platform: ChatPlatform, chat: &ChatSettings) -> Pacing {
    match platform {
        ChatPlatform::Console => Pacing {
            budget: None,
            redraw: Some(CONSOLE_REDRAW),
        },
        ChatPlatform::Discord | ChatPlatform::Slack => Pacing::chat_api(chat),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bot::pace::EditBudget;

    #[test]
    fn the_console_has_no_budget_and_redraws_each_second_the_chat_apis_keep_theirs() {
        let chat = ChatSettings::default();
        let console = of(ChatPlatform::Console, &chat);
        assert_eq!((console.budget, console.redraw), (None, Some(Duration::from_secs(1))));
        for p in [ChatPlatform::Discord, ChatPlatform::Slack] {
            let paced = of(p, &chat);
            assert_eq!(paced.budget, Some(EditBudget::from_settings(&chat)), "{p:?}");
            assert_eq!(paced.redraw, None, "{p:?}");
        }
    }
}
