//! Block Kit for the bot's messages: the text in section blocks, and the buttons in an
//! actions block. A button's `value` is the command it runs and nothing else, so a click works
//! after a restart and on any replica; buttons whose command destroys or stops something ask
//! for confirmation first (Block Kit `confirm`).

use slack_morphism::prelude::*;

use super::text::{chunks, fit, mrkdwn};
use crate::bot::port::{tone_of, Button, OutgoingMessage, Tone};
use crate::command::{parse, Command};

/// The start of our buttons' `action_id`s (then the button's position, which keeps them
/// unique within a message, as Slack requires).
pub const ACTION_PREFIX: &str = "argos:cmd:";

/// Slack's limits: a section's text, a button's value and label, blocks in a message, and the
/// notification text.
const MAX_SECTION_CHARS: usize = 3000;
const MAX_VALUE_CHARS: usize = 2000;
const MAX_LABEL_CHARS: usize = 75;
const MAX_TEXT_BLOCKS: usize = 45;
pub const MAX_BUTTONS: usize = 5;
const MAX_FALLBACK_CHARS: usize = 3000;

/// The message as Slack content: a plain `text` (notifications and clients without blocks)
/// plus the blocks.
pub fn content(msg: &OutgoingMessage) -> SlackMessageContent {
    let body = mrkdwn(&msg.text);
    let mut blocks: Vec<SlackBlock> = chunks(&body, MAX_SECTION_CHARS)
        .into_iter()
        .take(MAX_TEXT_BLOCKS)
        .filter(|c| !c.trim().is_empty())
        .map(|c| {
            SlackSectionBlock::new()
                .with_text(SlackBlockText::MarkDown(SlackBlockMarkDownText::new(c)))
                .into()
        })
        .collect();
    let buttons = buttons(&msg.buttons);
    if !buttons.is_empty() {
        blocks.push(SlackActionsBlock::new(buttons).into());
    }
    // The notification shows this text alone: the first line that says something, not the
    // opening fence of a code block.
    let first_line = body
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("```"))
        .unwrap_or("");
    SlackMessageContent::new()
        .with_text(fit(first_line, MAX_FALLBACK_CHARS))
        .with_blocks(blocks)
}

/// Whether clicking a button that runs `command` should ask "are you sure?" first.
pub fn needs_confirmation(command: &str) -> bool {
    match parse(command) {
        Ok(Command::Env { action, .. }) => action.destroys(),
        Ok(Command::Cancel { .. } | Command::Approve { .. }) => true,
        _ => false,
    }
}

fn style(label: &str) -> Option<SlackBlockButtonStyle> {
    match tone_of(label) {
        Tone::Positive => Some(SlackBlockButtonStyle::Primary),
        Tone::Negative => Some(SlackBlockButtonStyle::Danger),
        Tone::Neutral => None,
    }
}

fn buttons(buttons: &[Button]) -> Vec<SlackActionBlockElement> {
    buttons
        .iter()
        .filter(|b| {
            let fits = b.command.trim().chars().count() <= MAX_VALUE_CHARS;
            if !fits {
                tracing::warn!(label = %b.label, "button left out: its command is too long for Slack");
            }
            fits
        })
        .take(MAX_BUTTONS)
        .enumerate()
        .map(|(i, b)| {
            let command = b.command.trim().to_string();
            let label = fit(&b.label, MAX_LABEL_CHARS);
            let mut button = SlackBlockButtonElement::new(SlackBlockPlainTextOnly::from(label.as_str()))
                .with_action_id(SlackActionId::new(format!("{ACTION_PREFIX}{i}")))
                .with_value(command.clone());
            if let Some(s) = style(&b.label) {
                button = button.with_style(s);
            }
            if needs_confirmation(&command) {
                button = button.with_confirm(SlackBlockConfirmItem::new(
                    SlackBlockPlainTextOnly::from("Are you sure?"),
                    SlackBlockText::MarkDown(SlackBlockMarkDownText::new(format!(
                        "This runs `{}` as you.",
                        mrkdwn(&fit(&command, 200))
                    ))),
                    SlackBlockPlainTextOnly::from(fit(&label, 30).as_str()),
                    SlackBlockPlainTextOnly::from("Back"),
                ));
            }
            SlackActionBlockElement::Button(button)
        })
        .collect()
}

/// The command a clicked button runs; `None` for actions that are not our buttons.
pub fn button_command(action_id: &str, value: Option<&str>) -> Option<String> {
    action_id.strip_prefix(ACTION_PREFIX)?;
    value.map(str::trim).filter(|v| !v.is_empty()).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(msg: &OutgoingMessage) -> serde_json::Value {
        serde_json::to_value(content(msg)).unwrap()
    }

    #[test]
    fn text_is_escaped_into_sections_and_buttons_carry_only_their_command() {
        let msg = OutgoingMessage {
            text: "✋ **decommission qa-2** asked by <!channel>\nreason: x & y".into(),
            attachment: None,
            buttons: vec![
                Button {
                    label: "Approve".into(),
                    command: "approve 12".into(),
                },
                Button {
                    label: "Deny".into(),
                    command: "deny 12".into(),
                },
                Button {
                    label: "Status".into(),
                    command: "qa-2 status".into(),
                },
            ],
        };
        let v = json(&msg);
        assert_eq!(v["text"], "✋ *decommission qa-2* asked by &lt;!channel&gt;");
        let blocks = v["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "section");
        assert_eq!(blocks[0]["text"]["type"], "mrkdwn");
        assert!(blocks[0]["text"]["text"].as_str().unwrap().contains("x &amp; y"));
        let buttons = blocks[1]["elements"].as_array().unwrap();
        assert_eq!(buttons.len(), 3);
        assert_eq!(buttons[0]["action_id"], "argos:cmd:0");
        assert_eq!(buttons[0]["value"], "approve 12");
        assert_eq!(buttons[0]["style"], "primary");
        assert!(buttons[0].get("confirm").is_some(), "approving asks first");
        assert_eq!(buttons[1]["style"], "danger");
        assert!(buttons[1].get("confirm").is_none(), "denying does not");
        assert!(buttons[2].get("confirm").is_none());
        assert!(buttons[2].get("style").is_none());
    }

    #[test]
    fn destructive_commands_ask_for_confirmation() {
        assert!(needs_confirmation("staging decommission"));
        assert!(needs_confirmation("qa-2 clean"));
        assert!(needs_confirmation("cancel 4"));
        assert!(needs_confirmation("approve 4"));
        assert!(!needs_confirmation("deny 4"));
        assert!(!needs_confirmation("staging deploy"));
        assert!(!needs_confirmation("not a command"));
    }

    #[test]
    fn only_our_actions_are_commands() {
        assert_eq!(
            button_command("argos:cmd:1", Some(" approve 3 ")).as_deref(),
            Some("approve 3")
        );
        assert_eq!(button_command("argos:cmd:1", Some(" ")), None);
        assert_eq!(button_command("other:1", Some("approve 3")), None);
    }

    #[test]
    fn the_notification_text_is_the_first_line_that_says_something() {
        let status = OutgoingMessage::text("```\nstack argos-staging: CREATE_COMPLETE\n  output X = 1\n```");
        assert_eq!(json(&status)["text"], "stack argos-staging: CREATE_COMPLETE");
        assert_eq!(json(&OutgoingMessage::text("\n  \nhello\n```"))["text"], "hello");
        assert_eq!(json(&OutgoingMessage::text("```\n```"))["text"], "");
    }

    #[test]
    fn at_most_five_buttons() {
        let msg = OutgoingMessage {
            text: "x".into(),
            attachment: None,
            buttons: (0..7)
                .map(|i| Button {
                    label: format!("B{i}"),
                    command: format!("job {i}"),
                })
                .collect(),
        };
        let v = json(&msg);
        assert_eq!(v["blocks"][1]["elements"].as_array().unwrap().len(), MAX_BUTTONS);
        assert_eq!(json(&OutgoingMessage::text("x"))["blocks"].as_array().unwrap().len(), 1);
    }
}
