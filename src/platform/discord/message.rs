//! What a Discord message is made of: its content fitted to Discord's limits, mentions that
//! ping nobody, buttons whose `custom_id` carries the command they run, the attachment, and
//! the identity of who wrote it.

use serenity::all::{ButtonStyle, CreateActionRow, CreateAllowedMentions, CreateButton, RoleId, User};

use super::rest::Body;
use crate::bot::port::{tone_of, Button, OutgoingMessage, PortError, PortResult, Tone};
use crate::permissions::Identity;

/// What the deferred slash-command response becomes when the bot answers in the channel.
pub const FOLLOWING_IN_CHANNEL: &str = "On it: following this job in the channel.";

/// What a button click is answered with when the bot answers in the channel instead.
pub const ON_IT: &str = "On it.";

/// The start of our buttons' `custom_id`s; the rest is the command the button runs.
pub const BUTTON_PREFIX: &str = "argos:cmd:";

/// Discord's limits on a `custom_id`, a button label, and buttons in one action row.
pub const MAX_CUSTOM_ID_CHARS: usize = 100;
pub(super) const MAX_LABEL_CHARS: usize = 80;
pub const MAX_BUTTONS: usize = 5;

/// Discord refuses message content longer than this.
pub const MAX_CONTENT_CHARS: usize = 2000;

/// The JSON of a message: its text, its buttons (always sent on an edit: an edit without
/// buttons removes the ones the message had), no pings, and its file's slot if it has one.
pub(super) fn message_body(msg: &OutgoingMessage, edit: bool, file: Option<(String, Vec<u8>)>) -> Body {
    let mut json = serde_json::json!({
        "content": fit(&msg.text),
        "allowed_mentions": no_pings(),
    });
    let rows = action_rows(&msg.buttons);
    if edit || !rows.is_empty() {
        json["components"] = serde_json::to_value(&rows).unwrap_or_default();
    }
    match file {
        Some((filename, data)) => {
            json["attachments"] = serde_json::json!([{"id": 0, "filename": filename}]);
            Body::WithFile { json, filename, data }
        }
        None => Body::Json(json),
    }
}

pub(super) fn snowflake(what: &str, text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n != 0)
        .ok_or_else(|| format!("{what} '{text}' is not a Discord id"))
}

/// Cuts text to what Discord accepts, on a character boundary.
/// Every message the bot sends pings nobody: replies quote what users typed, and an
/// `@everyone` or a role mention in a command must not reach the whole server.
pub(super) fn no_pings() -> CreateAllowedMentions {
    CreateAllowedMentions::new()
}

pub(super) fn fit(text: &str) -> String {
    if text.chars().count() <= MAX_CONTENT_CHARS {
        return text.to_string();
    }
    let mut out: String = text.chars().take(MAX_CONTENT_CHARS - 1).collect();
    out.push('…');
    out
}

/// The `custom_id` of a button that runs `command`, or `None` if it would be too long for Discord.
pub fn button_custom_id(command: &str) -> Option<String> {
    let id = format!("{BUTTON_PREFIX}{}", command.trim());
    (id.chars().count() <= MAX_CUSTOM_ID_CHARS).then_some(id)
}

/// The command a button's `custom_id` runs; `None` for `custom_id`s that are not ours.
pub fn button_command(custom_id: &str) -> Option<&str> {
    custom_id
        .strip_prefix(BUTTON_PREFIX)
        .map(str::trim)
        .filter(|c| !c.is_empty())
}

/// Green for approving, red for denying or cancelling, grey for anything else.
pub fn button_style(label: &str) -> ButtonStyle {
    match tone_of(label) {
        Tone::Positive => ButtonStyle::Success,
        Tone::Negative => ButtonStyle::Danger,
        Tone::Neutral => ButtonStyle::Secondary,
    }
}

/// One action row with the message's buttons (at most [`MAX_BUTTONS`]); no rows without buttons.
/// A button whose command does not fit in a `custom_id` is left out (and logged).
pub(super) fn action_rows(buttons: &[Button]) -> Vec<CreateActionRow> {
    let row: Vec<CreateButton> = buttons
        .iter()
        .filter_map(|b| {
            let Some(id) = button_custom_id(&b.command) else {
                tracing::warn!(label = %b.label, "button left out: its command is too long for Discord");
                return None;
            };
            let label: String = b.label.chars().take(MAX_LABEL_CHARS).collect();
            Some(CreateButton::new(id).label(label).style(button_style(&b.label)))
        })
        .take(MAX_BUTTONS)
        .collect();
    if row.is_empty() {
        vec![]
    } else {
        vec![CreateActionRow::Buttons(row)]
    }
}

/// Who someone is, from their user and (in a guild) their nickname and role ids.
pub(super) fn identity_of(user: &User, nick: Option<&String>, roles: &[RoleId]) -> Identity {
    Identity {
        platform: crate::address::Surface::DISCORD,
        user_id: user.id.to_string(),
        display_name: nick
            .cloned()
            .or_else(|| user.global_name.clone())
            .unwrap_or_else(|| user.name.clone()),
        platform_roles: roles.iter().map(|r| r.to_string()).collect(),
    }
}

pub(super) async fn read_attachment(msg: &OutgoingMessage) -> PortResult<Option<(String, Vec<u8>)>> {
    let Some(a) = &msg.attachment else { return Ok(None) };
    let data = tokio::fs::read(&a.path)
        .await
        .map_err(|e| PortError(format!("cannot read attachment {}: {e}", a.path.display())))?;
    Ok(Some((a.filename.clone(), data)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn button_ids_carry_the_command() {
        assert_eq!(button_custom_id("approve 12").as_deref(), Some("argos:cmd:approve 12"));
        assert_eq!(button_command("argos:cmd:approve 12"), Some("approve 12"));
        assert_eq!(button_command("someone-else:approve 12"), None);
        assert_eq!(button_command("argos:cmd: "), None);
        let long = "x".repeat(MAX_CUSTOM_ID_CHARS);
        assert_eq!(button_custom_id(&long), None, "too long for Discord");
        let fits = "x".repeat(MAX_CUSTOM_ID_CHARS - BUTTON_PREFIX.len());
        assert_eq!(button_custom_id(&fits).map(|i| i.len()), Some(MAX_CUSTOM_ID_CHARS));
    }

    #[test]
    fn button_styles_follow_the_label() {
        assert_eq!(button_style("Approve"), ButtonStyle::Success);
        assert_eq!(button_style("✅ Approve"), ButtonStyle::Success);
        assert_eq!(button_style("Deny"), ButtonStyle::Danger);
        assert_eq!(button_style("Cancel job"), ButtonStyle::Danger);
        assert_eq!(button_style("Show log"), ButtonStyle::Secondary);
    }

    #[test]
    fn at_most_five_buttons_in_one_row_and_none_without_buttons() {
        let b = |i: usize| Button {
            label: format!("B{i}"),
            command: format!("job {i}"),
        };
        assert!(action_rows(&[]).is_empty());
        let rows = action_rows(&(0..7).map(b).collect::<Vec<_>>());
        let v = serde_json::to_value(&rows).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 1);
        assert_eq!(v[0]["components"].as_array().unwrap().len(), MAX_BUTTONS);
        assert_eq!(v[0]["components"][0]["custom_id"], "argos:cmd:job 0");
    }
}
