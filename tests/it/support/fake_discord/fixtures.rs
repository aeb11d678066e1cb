//! The JSON the fake sends: users, members, READY, messages, interactions, commands. Each one deserializes into serenity's model type (see `fixtures_deserialize`).
use super::*;

// Fixtures. Each one deserializes into serenity's model type (see `fixtures_deserialize`).

pub fn user_json(u: &TestUser) -> Value {
    json!({
        "id": u.id_str(),
        "username": u.name,
        "discriminator": "0",
        "global_name": u.name,
        "avatar": null,
        "bot": u.bot,
        "public_flags": 0,
    })
}

pub fn bot_user_json() -> Value {
    let mut u = user_json(&TestUser::argos());
    u["verified"] = json!(true);
    u["mfa_enabled"] = json!(false);
    u["flags"] = json!(0);
    u
}

/// A member as messages carry it (without `user`).
pub fn partial_member_json(u: &TestUser) -> Value {
    json!({
        "roles": u.role_strs(),
        "joined_at": TIMESTAMP,
        "deaf": false,
        "mute": false,
        "flags": 0,
        "pending": false,
        "premium_since": null,
        "nick": null,
        "avatar": null,
    })
}

/// A member as interactions carry it (with `user` and `permissions`).
pub fn member_json(u: &TestUser) -> Value {
    let mut m = partial_member_json(u);
    m["user"] = user_json(u);
    m["permissions"] = json!("2248473465835073");
    m
}

pub fn ready_json(ws_url: &str) -> Value {
    json!({
        "v": 10,
        "user": bot_user_json(),
        "guilds": [{"id": GUILD_ID.to_string(), "unavailable": true}],
        "session_id": "fake-session-1",
        "resume_gateway_url": ws_url,
        "shard": [0, 1],
        "application": {"id": APP_ID.to_string(), "flags": 0},
        "private_channels": [],
    })
}

pub fn attachment_json(id: &str, name: &str, size: usize) -> Value {
    let url = format!("https://cdn.discordapp.com/attachments/0/{id}/{name}");
    json!({"id": id, "filename": name, "size": size, "url": url, "proxy_url": url, "content_type": "text/plain"})
}

/// A message; `guild` adds `guild_id` and `member` as the gateway sends them.
pub fn message_json(
    id: &str,
    channel: &str,
    author: &TestUser,
    content: &str,
    attachments: &[Value],
    edited: bool,
    guild: bool,
) -> Value {
    let mut mentions = Vec::new();
    if content.contains(&format!("<@{BOT_ID}>")) || content.contains(&format!("<@!{BOT_ID}>")) {
        mentions.push(user_json(&TestUser::argos()));
    }
    let mut m = json!({
        "id": id,
        "channel_id": channel,
        "author": user_json(author),
        "content": content,
        "timestamp": TIMESTAMP,
        "edited_timestamp": if edited { json!(TIMESTAMP) } else { Value::Null },
        "tts": false,
        "mention_everyone": false,
        "mentions": mentions,
        "mention_roles": [],
        "attachments": attachments,
        "embeds": [],
        "pinned": false,
        "type": 0,
        "flags": 0,
        "components": [],
    });
    if guild {
        m["guild_id"] = json!(GUILD_ID.to_string());
        m["member"] = partial_member_json(author);
    }
    m
}

pub fn option(name: &str, value: &str, focused: bool) -> Value {
    let mut o = json!({"name": name, "type": 3, "value": value});
    if focused {
        o["focused"] = json!(true);
    }
    o
}

/// An interaction: `kind` 2 (slash command) or 4 (autocomplete).
pub fn interaction_json(id: &str, token: &str, kind: u8, channel: &str, user: &TestUser, options: Vec<Value>) -> Value {
    json!({
        "id": id,
        "application_id": APP_ID.to_string(),
        "type": kind,
        "data": {"id": COMMAND_ID.to_string(), "name": "argos", "type": 1, "options": options, "guild_id": GUILD_ID.to_string()},
        "guild_id": GUILD_ID.to_string(),
        "channel": {"id": channel, "type": 0, "name": "ops", "permissions": "2248473465835073"},
        "channel_id": channel,
        "member": member_json(user),
        "token": token,
        "version": 1,
        "app_permissions": "2248473465835073",
        "locale": "en-US",
        "guild_locale": "en-US",
        "entitlements": [],
        "authorizing_integration_owners": {"0": GUILD_ID.to_string()},
        "context": 0,
        "attachment_size_limit": 26_214_400,
    })
}

/// A click on the button `custom_id` under `message` (a [`message_json`] value): an interaction
/// of type 3 (MESSAGE_COMPONENT), component type 2 (button).
pub fn component_interaction_json(
    id: &str,
    token: &str,
    channel: &str,
    user: &TestUser,
    message: Value,
    custom_id: &str,
) -> Value {
    let mut v = interaction_json(id, token, 3, channel, user, vec![]);
    v["data"] = json!({"custom_id": custom_id, "component_type": 2});
    v["message"] = message;
    v
}

/// What Discord answers for a registered command (the request plus the ids Discord adds).
pub fn command_json(request: &Value, guild: Option<&str>) -> Value {
    let mut c = request.clone();
    c["id"] = json!(COMMAND_ID.to_string());
    c["application_id"] = json!(APP_ID.to_string());
    c["version"] = json!("1");
    if c.get("type").is_none() {
        c["type"] = json!(1);
    }
    if c.get("default_member_permissions").is_none() {
        c["default_member_permissions"] = Value::Null;
    }
    if c.get("description").is_none() {
        c["description"] = json!("");
    }
    if let Some(g) = guild {
        c["guild_id"] = json!(g);
    }
    c
}

/// A stored message as Discord shows it, with its components.
pub(super) fn stored_message_json(m: &StoredMessage, guild: bool) -> Value {
    let att: Vec<Value> = m.attachments.iter().map(|n| attachment_json(&m.id, n, 1)).collect();
    let mut v = message_json(
        &m.id,
        &m.channel,
        &TestUser::argos(),
        &m.content,
        &att,
        m.edits > 0,
        guild,
    );
    v["components"] = Value::Array(m.components.clone());
    v
}
