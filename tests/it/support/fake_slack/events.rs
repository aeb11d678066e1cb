//! The fake Slack's payloads (Socket Mode envelopes and the events, slash commands and
//! interactions inside them, shaped like Slack's and checked against slack-morphism's models by
//! the self-test) and its reading of Block Kit (buttons, texts, `<!here>`-style broadcasts, and
//! the limits Slack answers `invalid_blocks` for).

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::{Envelope, Post, SlackUser, StoredMessage, APP_ID, BOT_ID, BOT_USER_ID, COMMAND, TEAM_DOMAIN, TEAM_ID};

/// The seconds part of a ts, for `event_time`.
fn seconds(ts: &str) -> u64 {
    ts.split('.')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_700_000_000)
}

fn channel_type(channel: &str) -> &'static str {
    match channel.chars().next() {
        Some('D') => "im",
        Some('G') => "group",
        _ => "channel",
    }
}

/// The frame Slack writes for one delivery attempt.
pub(super) fn envelope_frame(e: &Envelope) -> String {
    json!({
        "envelope_id": e.envelope_id,
        "type": e.kind,
        "accepts_response_payload": e.accepts_response_payload,
        "retry_attempt": e.retry_attempt,
        "retry_reason": e.retry_reason,
        "payload": e.payload,
    })
    .to_string()
}

/// The `events_api` payload around one event.
pub(super) fn event_callback(event: Value, event_n: u64, ts: &str) -> Value {
    json!({
        "token": "fake-verification-token",
        "team_id": TEAM_ID,
        "context_team_id": TEAM_ID,
        "context_enterprise_id": null,
        "api_app_id": APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": format!("Ev0ARGOS{event_n:06}"),
        "event_time": seconds(ts),
        "authorizations": [{
            "enterprise_id": null,
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "is_bot": true,
            "is_enterprise_install": false,
        }],
        "is_ext_shared_channel": false,
        "event_context": format!("4-fake-event-context-{event_n}"),
    })
}

/// The `rich_text` block Slack adds to a message a person typed: user mentions as `user`
/// elements, the rest as text.
pub(super) fn rich_text_blocks(text: &str) -> Vec<Value> {
    let mut elements = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("<@") {
        let Some(len) = rest[start..].find('>') else { break };
        if start > 0 {
            elements.push(json!({"type": "text", "text": &rest[..start]}));
        }
        let id = &rest[start + 2..start + len];
        let id = id.split('|').next().unwrap_or(id);
        elements.push(json!({"type": "user", "user_id": id}));
        rest = &rest[start + len + 1..];
    }
    if !rest.is_empty() {
        elements.push(json!({"type": "text", "text": rest}));
    }
    vec![json!({
        "type": "rich_text",
        "block_id": "fake",
        "elements": [{"type": "rich_text_section", "elements": elements}],
    })]
}

/// A `message` event for what a person typed.
pub(super) fn user_message_event(
    channel: &str,
    user: &SlackUser,
    text: &str,
    ts: &str,
    thread_ts: Option<&str>,
) -> Value {
    let mut ev = json!({
        "type": "message",
        "channel": channel,
        "user": user.id,
        "text": text,
        "ts": ts,
        "event_ts": ts,
        "channel_type": channel_type(channel),
        "client_msg_id": format!("00000000-c11e-4000-8000-{}", ts.replace('.', "")),
        "team": TEAM_ID,
        "blocks": rich_text_blocks(text),
    });
    if let Some(t) = thread_ts {
        ev["thread_ts"] = json!(t);
        ev["parent_user_id"] = json!(user.id);
    }
    ev
}

/// The `app_mention` event Slack sends alongside the `message` event of a mention.
pub(super) fn app_mention_event(
    channel: &str,
    user: &SlackUser,
    text: &str,
    ts: &str,
    thread_ts: Option<&str>,
) -> Value {
    let mut ev = json!({
        "type": "app_mention",
        "channel": channel,
        "user": user.id,
        "text": text,
        "ts": ts,
        "event_ts": ts,
        "client_msg_id": format!("00000000-c11e-4000-8000-{}", ts.replace('.', "")),
        "team": TEAM_ID,
        "blocks": rich_text_blocks(text),
    });
    if let Some(t) = thread_ts {
        ev["thread_ts"] = json!(t);
    }
    ev
}

/// The `message` event that echoes one of the bot's own posts.
pub(super) fn bot_message_event(post: &Post) -> Value {
    let mut ev = json!({
        "type": "message",
        "channel": post.channel,
        "user": BOT_USER_ID,
        "bot_id": BOT_ID,
        "app_id": APP_ID,
        "text": post.text,
        "ts": post.ts,
        "event_ts": post.ts,
        "channel_type": channel_type(&post.channel),
        "team": TEAM_ID,
    });
    if !post.blocks.is_empty() {
        ev["blocks"] = Value::Array(post.blocks.clone());
    }
    if let Some(t) = &post.thread_ts {
        ev["thread_ts"] = json!(t);
    }
    ev
}

/// The bot's message as Slack shows it in API answers and interaction payloads.
pub(super) fn stored_message_json(m: &StoredMessage) -> Value {
    let mut v = json!({
        "type": "message",
        "user": m.user,
        "text": m.text,
        "ts": m.ts,
        "team": TEAM_ID,
    });
    if m.bot {
        v["bot_id"] = json!(BOT_ID);
        v["app_id"] = json!(APP_ID);
    }
    if !m.blocks.is_empty() {
        v["blocks"] = Value::Array(m.blocks.clone());
    }
    if let Some(t) = &m.thread_ts {
        v["thread_ts"] = json!(t);
    }
    if m.edits > 0 {
        v["edited"] = json!({"user": m.user, "ts": m.ts});
    }
    v
}

/// A `slash_commands` payload (Slack sends every field as a string).
pub(super) fn slash_payload(
    channel: &str,
    channel_name: &str,
    user: &SlackUser,
    text: &str,
    response_url: &str,
    trigger_id: &str,
) -> Value {
    json!({
        "token": "fake-verification-token",
        "team_id": TEAM_ID,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel,
        "channel_name": channel_name,
        "user_id": user.id,
        "user_name": user.name,
        "command": COMMAND,
        "text": text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id,
    })
}

/// A `block_actions` payload: `user` clicked `button` under the message `message_ts`.
#[allow(clippy::too_many_arguments)]
pub(super) fn block_actions_payload(
    channel: &str,
    channel_name: &str,
    user: &SlackUser,
    message_ts: &str,
    message: Option<Value>,
    button: &SlackButton,
    response_url: &str,
    trigger_id: &str,
    action_ts: &str,
) -> Value {
    let mut action = json!({
        "type": "button",
        "action_id": button.action_id,
        "block_id": button.block_id.clone().unwrap_or_else(|| "fake-block".into()),
        "text": {"type": "plain_text", "text": button.text, "emoji": true},
        "action_ts": action_ts,
    });
    if let Some(v) = &button.value {
        action["value"] = json!(v);
    }
    if let Some(s) = &button.style {
        action["style"] = json!(s);
    }
    let mut payload = json!({
        "type": "block_actions",
        "user": {"id": user.id, "username": user.name, "name": user.name, "team_id": TEAM_ID},
        "api_app_id": APP_ID,
        "token": "fake-verification-token",
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": false},
        "trigger_id": trigger_id,
        "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
        "enterprise": null,
        "is_enterprise_install": false,
        "channel": {"id": channel, "name": channel_name},
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [action],
    });
    if let Some(m) = message {
        payload["message"] = m;
    }
    payload
}

/// A button as the bot sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackButton {
    pub action_id: String,
    pub block_id: Option<String>,
    pub value: Option<String>,
    /// The label.
    pub text: String,
    /// `primary`, `danger`, or `None` (default).
    pub style: Option<String>,
    /// It has a `confirm` dialog.
    pub confirm: bool,
    pub url: Option<String>,
}

fn button(element: &Value, block_id: Option<&str>) -> Option<SlackButton> {
    (element["type"] == "button").then(|| SlackButton {
        action_id: element["action_id"].as_str().unwrap_or("").to_string(),
        block_id: element["block_id"].as_str().or(block_id).map(str::to_string),
        value: element["value"].as_str().map(str::to_string),
        text: element["text"]["text"].as_str().unwrap_or("").to_string(),
        style: element["style"].as_str().map(str::to_string),
        confirm: element.get("confirm").is_some_and(|c| !c.is_null()),
        url: element["url"].as_str().map(str::to_string),
    })
}

/// The buttons in some blocks, in order: those of `actions` blocks and section accessories.
pub fn buttons_in(blocks: &[Value]) -> Vec<SlackButton> {
    let mut out = Vec::new();
    for b in blocks {
        let block_id = b["block_id"].as_str();
        match b["type"].as_str() {
            Some("actions") => {
                for e in b["elements"].as_array().into_iter().flatten() {
                    out.extend(button(e, block_id));
                }
            }
            Some("section") => out.extend(button(&b["accessory"], block_id)),
            _ => {}
        }
    }
    out
}

/// Every `text` string in some blocks (section texts and fields, headers, context elements,
/// button labels, rich text runs), in order.
pub fn texts_in(blocks: &[Value]) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                if let Some(Value::String(t)) = o.get("text") {
                    out.push(t.clone());
                }
                for (k, child) in o {
                    if k != "text" || !child.is_string() {
                        walk(child, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|c| walk(c, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    blocks.iter().for_each(|b| walk(b, &mut out));
    out
}

/// The broadcast mentions in `text` that would ping a whole channel: `<!channel>`, `<!here>`,
/// `<!everyone>` (also with a `|label`), as written.
pub fn broadcast_mentions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for start in text.match_indices("<!").map(|(i, _)| i) {
        let rest = &text[start + 2..];
        let Some(end) = rest.find('>') else { continue };
        let name = rest[..end].split('|').next().unwrap_or("");
        if matches!(name, "channel" | "here" | "everyone") {
            out.push(text[start..start + 2 + end + 1].to_string());
        }
    }
    out
}

/// What Slack would reject in `blocks` (its `invalid_blocks` messages, with a JSON pointer):
/// the limits a bot most easily runs into.
pub(super) fn block_errors(blocks: &[Value]) -> Vec<String> {
    let mut errors = Vec::new();
    let mut err = |what: String, at: String| errors.push(format!("{what} [json-pointer:/blocks{at}]"));
    if blocks.len() > 50 {
        err("no more than 50 items allowed".into(), String::new());
    }
    let mut block_ids = BTreeSet::new();
    let chars = |v: &Value| v.as_str().map(|s| s.chars().count()).unwrap_or(0);
    for (i, b) in blocks.iter().enumerate() {
        let at = format!("/{i}");
        if let Some(id) = b["block_id"].as_str() {
            if !block_ids.insert(id.to_string()) {
                err(format!("duplicate block_id {id:?}"), format!("{at}/block_id"));
            }
            if id.chars().count() > 255 {
                err("must be less than 256 characters".into(), format!("{at}/block_id"));
            }
        }
        let text_object = |t: &Value, max: usize, plain_only: bool, at: String, err: &mut dyn FnMut(String, String)| {
            let kind = t["type"].as_str().unwrap_or("");
            if kind != "plain_text" && (plain_only || kind != "mrkdwn") {
                err(format!("invalid text object type {kind:?}"), format!("{at}/type"));
            }
            let n = chars(&t["text"]);
            if n == 0 {
                err("must be more than 0 characters".into(), format!("{at}/text"));
            }
            if n > max {
                err(
                    format!("must be less than {} characters", max + 1),
                    format!("{at}/text"),
                );
            }
        };
        match b["type"].as_str() {
            Some("section") => {
                if b["text"].is_null() && b["fields"].is_null() {
                    err("must provide text or fields".into(), at.clone());
                }
                if !b["text"].is_null() {
                    text_object(&b["text"], 3000, false, format!("{at}/text"), &mut err);
                }
                if let Some(fields) = b["fields"].as_array() {
                    if fields.len() > 10 {
                        err("no more than 10 items allowed".into(), format!("{at}/fields"));
                    }
                    for (j, f) in fields.iter().enumerate() {
                        text_object(f, 2000, false, format!("{at}/fields/{j}"), &mut err);
                    }
                }
                if b["accessory"]["type"] == "button" {
                    button_errors(&b["accessory"], format!("{at}/accessory"), &mut err);
                }
            }
            Some("header") => text_object(&b["text"], 150, true, format!("{at}/text"), &mut err),
            Some("actions") => {
                let elements = b["elements"].as_array().cloned().unwrap_or_default();
                if elements.is_empty() || elements.len() > 25 {
                    err("must have 1 to 25 elements".into(), format!("{at}/elements"));
                }
                let mut action_ids = BTreeSet::new();
                for (j, e) in elements.iter().enumerate() {
                    if let Some(id) = e["action_id"].as_str() {
                        if !action_ids.insert(id.to_string()) {
                            err(
                                format!("duplicate action_id {id:?}"),
                                format!("{at}/elements/{j}/action_id"),
                            );
                        }
                    }
                    if e["type"] == "button" {
                        button_errors(e, format!("{at}/elements/{j}"), &mut err);
                    }
                }
            }
            Some("context") => {
                let elements = b["elements"].as_array().cloned().unwrap_or_default();
                if elements.is_empty() || elements.len() > 10 {
                    err("must have 1 to 10 elements".into(), format!("{at}/elements"));
                }
            }
            Some(_) => {}
            None => err("missing block type".into(), format!("{at}/type")),
        }
    }
    errors
}

fn button_errors(e: &Value, at: String, err: &mut dyn FnMut(String, String)) {
    let chars = |v: &Value| v.as_str().map(|s| s.chars().count()).unwrap_or(0);
    if e["text"]["type"] != "plain_text" {
        err("button text must be plain_text".into(), format!("{at}/text/type"));
    }
    let n = chars(&e["text"]["text"]);
    if n == 0 || n > 75 {
        err("must be 1 to 75 characters".into(), format!("{at}/text/text"));
    }
    if chars(&e["action_id"]) > 255 {
        err("must be less than 256 characters".into(), format!("{at}/action_id"));
    }
    if chars(&e["value"]) > 2000 {
        err("must be less than 2001 characters".into(), format!("{at}/value"));
    }
    if let Some(style) = e["style"].as_str() {
        if style != "primary" && style != "danger" {
            err(format!("invalid style {style:?}"), format!("{at}/style"));
        }
    }
    if let Some(c) = e.get("confirm").filter(|c| !c.is_null()) {
        for (key, max) in [("title", 100), ("text", 300), ("confirm", 30), ("deny", 30)] {
            let n = chars(&c[key]["text"]);
            if n == 0 || n > max {
                err(
                    format!("must be 1 to {max} characters"),
                    format!("{at}/confirm/{key}/text"),
                );
            }
        }
    }
}
