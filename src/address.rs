//! Channel addresses: where a message goes, as a chat platform and that platform's channel
//! (`console:carol`, `discord:112233445566778899`, `slack:C0123ABCDEF`). One parser for the
//! config check, the outbox writer and the adapters that read the outbox, so that what one
//! writes the other finds.

use std::fmt;

/// A chat platform a message can be posted on (the CLI is not one: it posts nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChatPlatform {
    Console,
    Discord,
    Slack,
}

impl ChatPlatform {
    pub const ALL: [ChatPlatform; 3] = [ChatPlatform::Discord, ChatPlatform::Slack, ChatPlatform::Console];

    pub fn as_str(self) -> &'static str {
        match self {
            ChatPlatform::Console => "console",
            ChatPlatform::Discord => "discord",
            ChatPlatform::Slack => "slack",
        }
    }

    pub fn parse(text: &str) -> Result<ChatPlatform, String> {
        ChatPlatform::ALL
            .into_iter()
            .find(|p| p.as_str() == text)
            .ok_or_else(|| format!("unknown platform '{text}'; expected one of discord, slack, console"))
    }
}

impl fmt::Display for ChatPlatform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where someone speaks to Argos from: the command line, or a chat platform. Matches over it
/// name every case, so a new platform fails to compile until each place handles it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Surface {
    Cli,
    Chat(ChatPlatform),
}

impl Surface {
    pub const CONSOLE: Surface = Surface::Chat(ChatPlatform::Console);
    pub const DISCORD: Surface = Surface::Chat(ChatPlatform::Discord);
    pub const SLACK: Surface = Surface::Chat(ChatPlatform::Slack);

    /// The word jobs and audit records store (`cli`, `console`, `discord`, `slack`).
    pub fn as_str(self) -> &'static str {
        match self {
            Surface::Cli => "cli",
            Surface::Chat(p) => p.as_str(),
        }
    }

    /// The stored word; `None` for one this version does not know.
    pub fn parse(text: &str) -> Option<Surface> {
        match text {
            "cli" => Some(Surface::Cli),
            other => ChatPlatform::parse(other).ok().map(Surface::Chat),
        }
    }

    /// The chat platform, if it is one (the CLI posts nothing).
    pub fn chat(self) -> Option<ChatPlatform> {
        match self {
            Surface::Cli => None,
            Surface::Chat(p) => Some(p),
        }
    }
}

impl fmt::Display for Surface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A platform and one of its channels: a Discord channel id, a Slack channel id, or the user
/// whose console it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChannelAddress {
    platform: ChatPlatform,
    channel: String,
}

const EXAMPLES: &str = "console:carol, discord:112233445566778899 or slack:C0123ABCDEF";

impl ChannelAddress {
    /// Reads `<platform>:<channel>` (`console:carol`, `discord:<id>`, `slack:<id>`).
    pub fn parse(text: &str) -> Result<ChannelAddress, String> {
        let text = text.trim();
        let Some((platform, channel)) = text.split_once(':') else {
            return Err(format!(
                "'{text}' is not a channel address: expected <platform>:<channel>, e.g. {EXAMPLES}"
            ));
        };
        ChannelAddress::new(ChatPlatform::parse(platform)?, channel)
    }

    /// `channel` on `platform`, checked for that platform's form.
    pub fn new(platform: ChatPlatform, channel: &str) -> Result<ChannelAddress, String> {
        let problem = match platform {
            ChatPlatform::Console => console_name_problem(channel).map(|why| {
                let hint = match channel.rsplit_once(':') {
                    Some((_, user)) if !user.is_empty() => format!("; write console:{user}"),
                    _ => String::new(),
                };
                format!("console channel '{channel}' {why}: it is the name of the user whose console it is{hint}")
            }),
            ChatPlatform::Discord => snowflake_problem(channel).map(|why| {
                format!("Discord channel '{channel}' {why}: use the channel's id (a snowflake: digits only)")
            }),
            ChatPlatform::Slack => slack_id_problem(channel, &['C', 'G', 'D']).map(|why| {
                format!("Slack channel '{channel}' {why}: use the channel's id (C…, G… or D…), not its name")
            }),
        };
        match problem {
            Some(p) => Err(p),
            None => Ok(ChannelAddress {
                platform,
                channel: channel.to_string(),
            }),
        }
    }

    /// The console of `user` (who may be anyone the operating system says they are).
    pub fn console(user: &str) -> ChannelAddress {
        ChannelAddress {
            platform: ChatPlatform::Console,
            channel: user.to_string(),
        }
    }

    /// Reads a channel as adapters and the store name it ([`ChannelAddress::key`]).
    pub fn from_key(platform: &str, key: &str) -> Result<ChannelAddress, String> {
        let platform = ChatPlatform::parse(platform)?;
        match platform {
            ChatPlatform::Console => match key.strip_prefix("console:") {
                Some(user) => ChannelAddress::new(platform, user),
                None => Err(format!("console channel '{key}' does not start with 'console:'")),
            },
            _ => ChannelAddress::new(platform, key),
        }
    }

    pub fn platform(&self) -> ChatPlatform {
        self.platform
    }

    /// The platform's own channel: a channel id, or the console's user.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The channel as adapters post to it and the store records it (jobs, outbox). A console
    /// channel keeps its `console:` prefix there, so that it never equals a user or channel id
    /// of another platform and data written by earlier versions stays valid.
    pub fn key(&self) -> String {
        match self.platform {
            ChatPlatform::Console => format!("console:{}", self.channel),
            _ => self.channel.clone(),
        }
    }
}

impl fmt::Display for ChannelAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.platform, self.channel)
    }
}

/// Why `name` cannot be a console (operating-system) user name, if it cannot.
pub fn console_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name.contains(':') {
        Some("contains a colon")
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("contains a space or a control character")
    } else {
        None
    }
}

/// Why `id` is not a Discord id (a snowflake: a positive 64-bit number in digits), if it is not.
pub fn snowflake_problem(id: &str) -> Option<&'static str> {
    if id.is_empty() {
        Some("is empty")
    } else if !id.bytes().all(|b| b.is_ascii_digit()) {
        Some("is not a snowflake (digits only)")
    } else if !id.parse::<u64>().is_ok_and(|n| n > 0) {
        Some("is not a snowflake (a positive 64-bit number)")
    } else {
        None
    }
}

/// Why `id` is not a Slack id starting with one of `first` (then capital letters and digits).
pub fn slack_id_problem(id: &str, first: &[char]) -> Option<&'static str> {
    let mut chars = id.chars();
    match chars.next() {
        None => Some("is empty"),
        Some(c) if !first.contains(&c) => Some("does not start with the right letter"),
        _ if id.len() < 2 || !chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) => {
            Some("is not a Slack id (capital letters and digits)")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_forms_parse() {
        let a = ChannelAddress::parse("console:carol").unwrap();
        assert_eq!(
            (a.platform(), a.channel(), a.key()),
            (ChatPlatform::Console, "carol", "console:carol".into())
        );
        assert_eq!(a.to_string(), "console:carol");
        let d = ChannelAddress::parse("discord:112233445566778899").unwrap();
        assert_eq!(
            (d.platform(), d.key()),
            (ChatPlatform::Discord, "112233445566778899".into())
        );
        let s = ChannelAddress::parse("slack:C0123ABCDEF").unwrap();
        assert_eq!((s.platform(), s.key()), (ChatPlatform::Slack, "C0123ABCDEF".into()));
    }

    #[test]
    fn the_key_reads_back_to_the_same_address() {
        for text in ["console:carol", "discord:112233445566778899", "slack:C0123ABCDEF"] {
            let a = ChannelAddress::parse(text).unwrap();
            assert_eq!(ChannelAddress::from_key(a.platform().as_str(), &a.key()), Ok(a));
        }
        assert_eq!(ChannelAddress::console("carol").key(), "console:carol");
    }

    #[test]
    fn a_bad_address_says_what_is_wrong() {
        let e = ChannelAddress::parse("console:console:carol").unwrap_err();
        assert!(
            e.contains("contains a colon") && e.contains("write console:carol"),
            "{e}"
        );
        let e = ChannelAddress::parse("discord:#ops").unwrap_err();
        assert!(e.contains("Discord channel '#ops' is not a snowflake"), "{e}");
        let e = ChannelAddress::parse("slack:general").unwrap_err();
        assert!(
            e.contains("Slack channel 'general'") && e.contains("not its name"),
            "{e}"
        );
        let e = ChannelAddress::parse("teams:ops").unwrap_err();
        assert!(e.contains("unknown platform 'teams'"), "{e}");
        let e = ChannelAddress::parse("carol").unwrap_err();
        assert!(e.contains("expected <platform>:<channel>"), "{e}");
        assert!(ChannelAddress::parse("console:").is_err());
        assert!(
            ChannelAddress::from_key("console", "carol").is_err(),
            "a console key has its prefix"
        );
    }
}
