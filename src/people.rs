//! People: a person is one person whatever surface they speak from. The CLI and the console
//! both go by the operating-system user; `people:` in the config ties that name to a Discord
//! user id and a Slack member id. Everything that asks "is this the same person" (the
//! two-person rule, one vote per person, role membership) asks here.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::config::PersonSettings;

/// Where an id comes from. The CLI and the console share one: the operating-system user.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Surface {
    /// The operating-system user (`$USER`), for the CLI and the console alike.
    Os,
    Discord,
    Slack,
    /// A platform this module does not know; its ids stand for themselves.
    Other(String),
}

impl Surface {
    /// The surface of an identity's or a job's `platform`.
    pub fn of(platform: &str) -> Surface {
        match platform {
            "cli" | "console" => Surface::Os,
            "discord" => Surface::Discord,
            "slack" => Surface::Slack,
            other => Surface::Other(other.to_string()),
        }
    }

    fn name(&self) -> &str {
        match self {
            Surface::Os => "console",
            Surface::Discord => "discord",
            Surface::Slack => "slack",
            Surface::Other(p) => p,
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
    by_id: HashMap<(Surface, String), String>,
    /// Person's name → every (surface, id) they are known by.
    ids: BTreeMap<String, Vec<(Surface, String)>>,
}

impl People {
    /// Indexes the (validated) `people:` section.
    pub fn new(people: &BTreeMap<String, PersonSettings>) -> People {
        let mut out = People::default();
        for (name, p) in people {
            let mut ids = vec![(Surface::Os, p.console_name(name).to_string())];
            ids.extend(p.discord.clone().map(|id| (Surface::Discord, id)));
            ids.extend(p.slack.clone().map(|id| (Surface::Slack, id)));
            for id in &ids {
                out.by_id.insert(id.clone(), name.clone());
            }
            out.ids.insert(name.clone(), ids);
        }
        out
    }

    /// Who `user_id` on `platform` is.
    pub fn person(&self, platform: &str, user_id: &str) -> PersonKey {
        let surface = Surface::of(platform);
        match self.by_id.get(&(surface.clone(), user_id.to_string())) {
            Some(name) => PersonKey(format!("person:{name}")),
            None => PersonKey(format!("{}:{user_id}", surface.name())),
        }
    }

    /// The id a vote of `user_id` on `platform` is recorded under: `person:<name>` for someone
    /// listed in `people` (one vote, whichever surface they vote from), else the platform's own
    /// id as before (the CLI and the console share the operating-system user's name).
    pub fn vote_id(&self, platform: &str, user_id: &str) -> String {
        let person = self.person(platform, user_id);
        match person.name() {
            Some(_) => person.0,
            None => user_id.to_string(),
        }
    }

    /// Whether two (platform, user id) pairs are the same person.
    pub fn same_person(&self, a: (&str, &str), b: (&str, &str)) -> bool {
        self.person(a.0, a.1) == self.person(b.0, b.1)
    }

    /// Every (surface, id) the person behind `user_id` on `platform` is known by: all of a
    /// listed person's, or just this one.
    pub fn ids(&self, platform: &str, user_id: &str) -> Vec<(Surface, String)> {
        let own = (Surface::of(platform), user_id.to_string());
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
        assert!(p.same_person(("cli", "alice"), ("console", "alice")));
        assert!(!p.same_person(("cli", "alice"), ("console", "bob")));
        // Unlisted ids on different platforms stay different people.
        assert!(!p.same_person(("console", "1"), ("discord", "1")));
        assert_eq!(p.person("cli", "alice").as_str(), "console:alice");
    }

    #[test]
    fn a_listed_person_is_one_person_on_every_platform() {
        let p = people();
        let alice = p.person("discord", "112233445566778899");
        assert_eq!((alice.as_str(), alice.name()), ("person:alice", Some("alice")));
        assert_eq!(
            p.person("cli", "alice"),
            alice,
            "the console name defaults to the person's"
        );
        assert_eq!(p.person("slack", "U0ALICE"), alice);
        assert!(p.same_person(("console", "rbrown"), ("cli", "rbrown")));
        assert!(
            !p.same_person(("console", "bob"), ("console", "rbrown")),
            "bob's console name is rbrown"
        );
        assert_eq!(p.ids("slack", "U0ALICE").len(), 3);
        assert_eq!(p.vote_id("console", "alice"), "person:alice");
        assert_eq!(
            p.vote_id("slack", "U0NOBODY"),
            "U0NOBODY",
            "unlisted votes keep their id"
        );
        assert_eq!(
            p.ids("slack", "U0NOBODY"),
            vec![(Surface::Slack, "U0NOBODY".to_string())]
        );
    }
}
