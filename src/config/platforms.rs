//! The chat platforms' sections of `config/argos.yaml` (`discord:`, `slack:`) and the health
//! listener the bot serves its endpoints and web page on (`health:`).

use serde::Deserialize;

/// The Discord adapter. The token is read from the environment (or .env) only.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscordSettings {
    pub enabled: bool,
    /// The environment variable holding the bot token.
    pub token_env: String,
    /// Register slash commands in this guild (instantly) rather than globally.
    pub guild_id: Option<String>,
    /// Send Discord traffic through this HTTP proxy and gateway (the tests' fake Discord).
    pub api_proxy: Option<String>,
    /// Ask for the privileged message-content intent, which prefix commands (`!argos ...`)
    /// need. Without it the bot answers mentions and slash commands only.
    pub message_content_intent: bool,
}

impl Default for DiscordSettings {
    fn default() -> Self {
        DiscordSettings {
            enabled: false,
            token_env: "DISCORD_TOKEN".into(),
            guild_id: None,
            api_proxy: None,
            message_content_intent: false,
        }
    }
}

/// Where `argos bot` serves its health and metrics endpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSettings {
    /// `host:port` to listen on; `null` turns the endpoints off. Loopback by default: put a
    /// scraper on the same host, or a reverse proxy with access control in front.
    pub listen: Option<String>,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            listen: Some("127.0.0.1:9464".into()),
        }
    }
}

/// The Slack adapter (Socket Mode: the bot dials out, no public endpoint). Both tokens are
/// read from the environment (or .env) only.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlackSettings {
    pub enabled: bool,
    /// The environment variable holding the app-level token (`xapp-...`, scope
    /// `connections:write`), which opens the Socket Mode connections.
    pub app_token_env: String,
    /// The environment variable holding the bot token (`xoxb-...`), for the Web API.
    pub bot_token_env: String,
    /// The Web API's base URL; only the tests' fake Slack sets it (a loopback `http://` URL).
    pub api_url: Option<String>,
    /// Socket Mode connections kept open (Slack allows up to 10; two ride out a reconnect).
    pub connections: u32,
    /// `chat.update` calls per minute for the whole workspace, shared by every job's status
    /// message and by the live replicas (Slack's tier 3 is about 50).
    pub updates_per_minute: u32,
}

impl Default for SlackSettings {
    fn default() -> Self {
        SlackSettings {
            enabled: false,
            app_token_env: "SLACK_APP_TOKEN".into(),
            bot_token_env: "SLACK_BOT_TOKEN".into(),
            api_url: None,
            connections: 2,
            updates_per_minute: 50,
        }
    }
}
