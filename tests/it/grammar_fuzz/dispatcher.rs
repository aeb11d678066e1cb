//! The dispatcher: a bot on the fake AWS answers every line, from everyone, and bad input changes nothing but the audit log.
use super::*;

fn said(user: &str, text: &str) -> ChatEvent {
    ChatEvent {
        identity: Identity {
            platform: argos::address::Surface::CONSOLE,
            user_id: user.into(),
            display_name: user.into(),
            platform_roles: vec![],
        },
        channel: format!("console:{user}"),
        text: text.into(),
    }
}

/// Whether the dispatcher would act on this line for a user allowed everything: a valid
/// command on a configured environment (a job, or `status`/`events`, which call AWS), other
/// than a deploy of unknown roles, which is refused before any job exists.
fn acts(input: &str, envs: &[String], roles: &[String]) -> bool {
    match command::parse(input) {
        Ok(Command::Env { env, action, .. }) => {
            envs.iter().any(|e| e == env.as_str())
                && !matches!(&action, Action::Deploy { roles: asked, .. } if asked.iter().any(|r| !roles.contains(r)))
        }
        _ => false,
    }
}

/// A bot on a test project whose AWS is the scripted fake (which must see no call), in a
/// runtime of its own: the property runner is synchronous.
struct World {
    rt: tokio::runtime::Runtime,
    fake: FakeAws,
    _project: TestProject,
    bot: Bot,
    store: Store,
    longest_reply: std::cell::Cell<usize>,
    dispatched: std::cell::Cell<usize>,
    envs: Vec<String>,
    roles: Vec<String>,
}

impl World {
    fn new() -> World {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let AnyWorld { aws: fake, project, .. } = rt.block_on(AnyWorld::builder().config(CONFIG).build());
        let bot = rt.block_on(world::bot_on(&project));
        let store = bot.store().clone();
        let config = project.config();
        World {
            envs: config.settings.environments.keys().cloned().collect(),
            roles: config.settings.ansible.roles.clone(),
            rt,
            fake,
            _project: project,
            bot,
            store,
            longest_reply: Default::default(),
            dispatched: Default::default(),
        }
    }

    /// Whether alice's `input` would start something that outlives a case.
    fn acts(&self, user: &str, input: &str) -> bool {
        user == "alice" && acts(input, &self.envs, &self.roles)
    }

    /// `user` says `input`: what must hold whatever it was.
    fn check(&self, user: &str, input: &str) -> Result<(), TestCaseError> {
        let store = &self.store;
        let last_audit = store.audit_log(1).unwrap().first().map_or(0, |a| a.id);
        let reply = self.rt.block_on(self.bot.handle(said(user, input)));
        self.dispatched.set(self.dispatched.get() + 1);

        // Only a job started answers with its status message instead of a reply, and none
        // may start here: there is always a reply.
        let reply = reply.ok_or_else(|| TestCaseError::fail(format!("no reply to {user}: {input:?}")))?;
        let chars = reply.chars().count();
        self.longest_reply.set(self.longest_reply.get().max(chars));
        prop_assert!(
            chars <= CHAT_MESSAGE_MAX_CHARS,
            "{chars} chars to {user} for {input:?}: {reply:?}"
        );
        check_clean("the reply", &reply, input)?;
        if let Err(e) = command::parse(input) {
            prop_assert_eq!(&reply, &format!("❓ {e}"), "{}", user);
            let max = "❓ ".chars().count() + parse_error_max_chars();
            prop_assert!(chars <= max, "{chars} chars (ceiling {max}): {reply:?}");
        }

        // Nothing changed: no job, no lock, no AWS call...
        prop_assert!(store.recent_jobs(1).unwrap().is_empty(), "a job for {user}'s {input:?}");
        prop_assert!(store.held_locks().unwrap().is_empty(), "a lock for {user}'s {input:?}");
        prop_assert!(
            self.fake.calls().is_empty(),
            "AWS calls for {input:?}: {:?}",
            self.fake.actions()
        );
        // ...but the audit log: one record, bounded and escaped like a quote.
        let audit = store.audit_log(2).unwrap();
        prop_assert!(
            audit.first().is_some_and(|a| a.id > last_audit) && audit.get(1).is_none_or(|a| a.id <= last_audit),
            "{user}'s {input:?} was not audited once: {audit:?}"
        );
        let record = &audit[0];
        prop_assert_eq!(&record.user_id, user);
        prop_assert!(record.command.chars().count() <= 500);
        check_clean("the audit record", &record.command, input)?;
        Ok(())
    }
}

/// Lines that have hurt chat bots, each checked every run (the fuzzer finds them only by luck).
const CORPUS: &[&str] = &[
    "",
    " ",
    "\n",
    "help",
    "help deploy",
    "help \u{202e}",
    "whoami",
    "envs",
    "jobs",
    "job 1",
    "job 18446744073709551616",
    "cancel #1",
    "approve 5",
    "approve 5 6",
    "deny 5 because \x1b[2J @everyone",
    "schedules",
    "staging deploy",
    "staging deploy --roles",
    "staging deploy --roles=../../etc",
    "staging decommission --yes",
    "staging update DatabasePassword=x DatabasePassword=y",
    "stag\u{202e}ing status",
    "\u{202e}gnigats status",
    "staging \x1b[2J\x1b[H",
    "staging status now\x07",
    "@everyone staging deploy",
    "<@&123456789012345678> ping",
    "<!channel> staging clean",
    "!argos !argos staging deploy",
    "Staging Deploy",
    "STAGING status",
    "prod\u{0}uction status",
    "\u{85}staging\u{85}status",
    "👩\u{200d}👩\u{200d}👧 deploy",
];

#[test]
fn the_dispatcher_answers_a_corpus_of_nasty_lines() {
    let world = World::new();
    for input in CORPUS {
        for user in ["mallory", "alice"] {
            if world.acts(user, input) {
                continue;
            }
            if let Err(e) = world.check(user, input) {
                panic!("{user}: {input:?}: {e}");
            }
        }
    }
    for input in [
        "a".repeat(100_000),
        format!("staging {}", "\x1b".repeat(20_000)),
        "🚀 ".repeat(30_000),
    ] {
        if let Err(e) = world.check("mallory", &input) {
            panic!("a line of {} chars: {e}", input.chars().count());
        }
    }
}

#[test]
fn the_dispatcher_answers_everyone_and_bad_input_changes_nothing() {
    let world = World::new();
    let n = cases(DISPATCH_CASES);
    let started = Instant::now();
    // mallory has no role: whatever she types is answered and nothing happens. alice may do
    // anything; she gets only the lines that would not act (bad ones and the global commands),
    // since a real job would outlive the case.
    let users = proptest::sample::select(&["mallory", "alice"][..]);
    let result = runner(n).run(&(users, line()), |(user, input)| {
        if world.acts(user, &input) {
            return Ok(());
        }
        world.check(user, &input)
    });
    println!(
        "dispatcher: {n} cases ({} dispatched) in {:.2?}, longest reply {} chars (parse errors at most {})",
        world.dispatched.get(),
        started.elapsed(),
        world.longest_reply.get(),
        "❓ ".chars().count() + parse_error_max_chars()
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn a_secret_typed_into_a_command_is_masked_in_the_reply_as_in_the_audit_log() {
    let world = World::new();
    let secret = support::DB_PASSWORD;
    for input in [
        format!("staging deploy DatabasePassword={secret}"),
        format!("staging update DatabasePassword={secret} --bogus"),
        format!("{secret} status"),
    ] {
        let reply = world.rt.block_on(world.bot.handle(said("mallory", &input)));
        let reply = reply.expect("a reply");
        assert!(!reply.contains(secret), "{input:?} → {reply}");
        let audit = world.store.audit_log(1).unwrap();
        assert!(!audit[0].command.contains(secret), "{:?}", audit[0]);
    }
}
