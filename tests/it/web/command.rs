//! `web` in the grammar: a known person gets a one-time link when the page is configured, a
//! stranger is refused, and without `web.public_url` the reply says what to set. The token is
//! in the reply only: the audit log has the command, the store a hash.
use crate::support;

use argos::bot::port::ChatEvent;
use argos::permissions::Identity;
use argos::store::LinkRefusal;
use support::world::{Console, World};

const PEOPLE: &str = r#"permissions:
  roles:
    admins: { console_users: [alice] }
  rules:
    - role: admins
      environments: ["*"]
      actions: ["*"]
"#;

fn said(name: &str, text: &str) -> ChatEvent {
    ChatEvent {
        identity: Identity::named(argos::address::Surface::CONSOLE, name),
        channel: "ops".into(),
        text: text.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_gives_a_known_person_a_one_time_link_and_nobody_else() {
    let config = format!("{PEOPLE}web:\n  public_url: \"https://argos.example.com\"\n  link_minutes: 3\n");
    let w = World::builder().config(&config).build().await;
    let Console { bot, .. } = Console::on(&w.project).await;
    let reply = bot.handle(said("alice", "web")).await.unwrap();
    let prefix = "🔗 Your sign-in link for the Argos page (works once, for 3 min; don't share it): https://argos.example.com/login/";
    assert!(reply.starts_with(prefix), "{reply}");
    let token = &reply[prefix.len()..];
    assert_eq!(token.len(), 64, "256 bits in hex: {token}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    let again = bot.handle(said("alice", "web")).await.unwrap();
    assert_ne!(again, reply, "every link is new");

    // The audit log records the command, never the token.
    let audit = bot.store().audit_log(50).unwrap();
    let web: Vec<_> = audit.iter().filter(|r| r.command == "web").collect();
    assert_eq!(web.len(), 2);
    assert!(web.iter().all(|r| r.outcome == "ok: sign-in link sent"));
    assert!(!audit
        .iter()
        .any(|r| r.command.contains(token) || r.outcome.contains(token)));

    // The link opens one session, for alice.
    let who = bot.store().redeem_sign_in_link(token, "feed", 60_000).unwrap().unwrap();
    assert_eq!(who.user_id, "alice");
    assert_eq!(
        bot.store().redeem_sign_in_link(token, "beef", 60_000).unwrap(),
        Err(LinkRefusal::Used)
    );

    assert_eq!(
        bot.handle(said("mallory", "web")).await.unwrap(),
        "⛔ You have no role with Argos. Ask an admin to add you to config/argos.yaml. (`help` and `whoami` work for everyone.)"
    );
    let extra = bot.handle(said("alice", "web please")).await.unwrap();
    assert!(
        extra.starts_with("❓ `web` takes no arguments (got 'please')"),
        "{extra}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_public_url_web_says_what_to_set() {
    let w = World::builder().config(PEOPLE).build().await;
    let Console { bot, .. } = Console::on(&w.project).await;
    assert_eq!(
        bot.handle(said("alice", "web")).await.unwrap(),
        "The web page is not configured: an admin sets web.public_url in config/argos.yaml (and health.listen serves it)."
    );
}

/// `argos web` through the real binary as the operating-system user `user`: (exit code,
/// stdout, stderr).
async fn cli_web(config: &std::path::Path, user: &str) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_argos"))
        .arg("--config")
        .arg(config)
        .arg("web")
        .env_remove("ARGOS_CONFIG")
        .env("USER", user)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run argos");
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_prints_a_link_for_its_user_and_refuses_a_stranger() {
    let config = format!("{PEOPLE}web:\n  public_url: \"https://argos.example.com\"\n  link_minutes: 3\n");
    let w = World::builder().config(&config).build().await;
    let (code, stdout, stderr) = cli_web(&w.project.config_path, "alice").await;
    assert_eq!(code, 0, "{stderr}");
    let prefix = "🔗 Your sign-in link for the Argos page (works once, for 3 min; don't share it): https://argos.example.com/login/";
    let token = stdout
        .trim()
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{stdout}"))
        .to_string();
    assert_eq!(token.len(), 64);
    let store = argos::store::Store::open(&w.project.config().database_path()).unwrap();
    let who = store.redeem_sign_in_link(&token, "feed", 60_000).unwrap().unwrap();
    assert_eq!(
        (who.platform, who.user_id.as_str()),
        (argos::address::Surface::Cli, "alice")
    );
    let audit = store.audit_log(10).unwrap();
    assert!(audit
        .iter()
        .any(|r| r.command == "web" && r.outcome == "ok: sign-in link sent"));
    assert!(!audit
        .iter()
        .any(|r| r.command.contains(&token) || r.outcome.contains(&token)));

    let (code, stdout, stderr) = cli_web(&w.project.config_path, "mallory").await;
    assert_eq!((code, stdout.as_str()), (2, ""));
    assert!(stderr.contains("error: ⛔ You have no role with Argos."), "{stderr}");
}
