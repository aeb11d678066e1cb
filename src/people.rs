//! People: a person is one person whatever surface they speak from. The CLI and the console
//! both go by the operating-system user; `people:` in the config ties that name to a Discord
//! user id and a Slack member id. Everything that asks "is this the same person" (the
//! two-person rule, one vote per person, role membership) asks here.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::address::{ChatPlatform, Surface};
use crate::config::PersonSettings;

/// Whose ids an id is among. The CLI and the console share one: the operating-system user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdSpace {
    /// The operating-system user (`$USER`), for the CLI and the console alike.
    Os,
    Discord,
    Slack,
}

impl IdSpace {
    /// The ids a surface's users are known by.
    pub fn of(surface: Surface) -> IdSpace {
        match surface {
            Surface::Cli | Surface::Chat(ChatPlatform::Console) => IdSpace::Os,
            Surface::Chat(ChatPlatform::Discord) => IdSpace::Discord,
            Surface::Chat(ChatPlatform::Slack) => IdSpace::Slack,
        }
    }

    fn name(self) -> &'static str {
        match self {
            IdSpace::Os => "console",
            IdSpace::Discord => "discord",
            IdSpace::Slack => "slack",
        }
    }
}

/// Who someone is, across surfaces: `person:<name>` for someone listed in `people`, else
/// `<surface>:<id>` (`console:alice` for the CLI and the console alike).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PersonKey(String);

impl PersonKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The person's name in `people`, if they are listed there.
    pub fn name(&self) -> Option<&str> {
        self.0.strip_prefix("person:")
    }
}

impl fmt::Display for PersonKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `people:` map, indexed by id.
#[derive(Debug, Clone, Default)]
pub struct People {
    /// (surface, id) → person's name.
    by_id: HashMap<(IdSpace, String), String>,
    /// Person's name → every (surface, id) they are known by.
    ids: BTreeMap<String, Vec<(IdSpace, String)>>,
}

impl People {
    /// Indexes the (validated) `people:` section.
    pub fn new(people: &BTreeMap<String, PersonSettings>) -> People {
        let mut out = People::default();
        for (name, p) in people {
            let mut ids = vec![(IdSpace::Os, p.console_name(name).to_string())];
            ids.extend(p.discord.clone().map(|id| (IdSpace::Discord, id)));
            ids.extend(p.slack.clone().map(|id| (IdSpace::Slack, id)));
            for id in &ids {
                out.by_id.insert(id.clone(), name.clone());
            }
            out.ids.insert(name.clone(), ids);
        }
        out
    }

    /// Who `user_id` on `platform` is.
    pub fn person(&self, surface: Surface, user_id: &str) -> PersonKey {
        let space = IdSpace::of(surface);
        match self.by_id.get(&(space, user_id.to_string())) {
            Some(name) => PersonKey(format!("person:{name}")),
            None => PersonKey(format!("{}:{user_id}", space.name())),
        }
    }

    /// The id a vote of `user_id` on `platform` is recorded under: `person:<name>` for someone
    /// listed in `people` (one vote, whichever surface they vote from), else the platform's own
    /// id as before (the CLI and the console share the operating-system user's name).
    pub fn vote_id(&self, surface: Surface, user_id: &str) -> String {
        let person = self.person(surface, user_id);
        match person.name() {
            Some(_) => person.0,
            None => user_id.to_string(),
        }
    }

    /// The operating-system (console) name of the person listed as `name`, if listed: the id
    /// a person is known by where no chat platform names them (the web page's trusted header).
    pub fn console_name(&self, name: &str) -> Option<&str> {
        self.ids
            .get(name)?
            .iter()
            .find(|(space, _)| *space == IdSpace::Os)
            .map(|(_, id)| id.as_str())
    }

    /// Whether two (platform, user id) pairs are the same person.
    pub fn same_person(&self, a: (Surface, &str), b: (Surface, &str)) -> bool {
        self.person(a.0, a.1) == self.person(b.0, b.1)
    }

    /// Every (surface, id) the person behind `user_id` on `platform` is known by: all of a
    /// listed person's, or just this one.
    pub fn ids(&self, surface: Surface, user_id: &str) -> Vec<(IdSpace, String)> {
        let own = (IdSpace::of(surface), user_id.to_string());
        match self.by_id.get(&own).and_then(|name| self.ids.get(name)) {
            Some(all) => all.clone(),
            None => vec![own],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn people() -> People {
        let mut map = BTreeMap::new();
        map.insert(
            "alice".to_string(),
            PersonSettings {
                console: None,
                discord: Some("112233445566778899".into()),
                slack: Some("U0ALICE".into()),
            },
        );
        map.insert(
            "bob".to_string(),
            PersonSettings {
                console: Some("rbrown".into()),
                discord: None,
                slack: None,
            },
        );
        People::new(&map)
    }

    #[test]
    fn the_cli_and_the_console_are_one_surface() {
        let p = People::default();
        assert!(p.same_person((Surface::Cli, "alice"), (Surface::CONSOLE, "alice")));
        assert!(!p.same_person((Surface::Cli, "alice"), (Surface::CONSOLE, "bob")));
        // Unlisted ids on different platforms stay different people.
        assert!(!p.same_person((Surface::CONSOLE, "1"), (Surface::DISCORD, "1")));
        assert_eq!(p.person(Surface::Cli, "alice").as_str(), "console:alice");
    }

    #[test]
    fn a_listed_person_is_one_person_on_every_platform() {
        let p = people();
        let alice = p.person(Surface::DISCORD, "112233445566778899");
        assert_eq!((alice.as_str(), alice.name()), ("person:alice", Some("alice")));
        assert_eq!(
            p.person(Surface::Cli, "alice"),
            alice,
            "the console name defaults to the person's"
        );
        assert_eq!(p.person(Surface::SLACK, "U0ALICE"), alice);
        assert!(p.same_person((Surface::CONSOLE, "rbrown"), (Surface::Cli, "rbrown")));
        assert!(
            !p.same_person((Surface::CONSOLE, "bob"), (Surface::CONSOLE, "rbrown")),
            "bob's console name is rbrown"
        );
        assert_eq!(p.ids(Surface::SLACK, "U0ALICE").len(), 3);
        assert_eq!(p.console_name("bob"), Some("rbrown"));
        assert_eq!(p.console_name("alice"), Some("alice"));
        assert_eq!(p.console_name("zed"), None);
        assert_eq!(p.vote_id(Surface::CONSOLE, "alice"), "person:alice");
        assert_eq!(
            p.vote_id(Surface::SLACK, "U0NOBODY"),
            "U0NOBODY",
            "unlisted votes keep their id"
        );
        assert_eq!(
            p.ids(Surface::SLACK, "U0NOBODY"),
            vec![(IdSpace::Slack, "U0NOBODY".to_string())]
        );
    }
}
