//! Platform adapters: the only code that knows a chat platform's types.

pub mod console;
pub mod discord;
pub mod pacing;
pub mod slack;

/// The platforms the bot talks on. Adding one fails to compile until [`pacing`] handles it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Platform {
    Console,
    Discord,
    Slack,
}

impl Platform {
    pub const ALL: [Platform; 3] = [Platform::Console, Platform::Discord, Platform::Slack];

    /// The name adapters report ([`crate::bot::port::ChatPort::platform`]) and configs use.
    pub fn name(self) -> &'static str {
        match self {
            Platform::Console => "console",
            Platform::Discord => "discord",
            Platform::Slack => "slack",
        }
    }

    pub fn from_name(name: &str) -> Option<Platform> {
        Platform::ALL.into_iter().find(|p| p.name() == name)
    }
}
