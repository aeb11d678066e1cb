//! The scenario: a console bot serving the page, alice (admin) and bob (who may see only
//! sandbox), a deploy whose playbook prints a line every quarter second.
use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use argos::bot::port::ChatEvent;
use argos::permissions::Identity;
use support::world::{add_app, Console, World};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::browser::{free_port, Browser};

fn config(port: u16) -> String {
    format!(
        r#"permissions:
  roles:
    admins: {{ console_users: [alice] }}
    viewers: {{ console_users: [bob] }}
  rules:
    - role: admins
      environments: ["*"]
      actions: ["*"]
    - role: viewers
      environments: [sandbox]
      actions: [status]
health:
  listen: "127.0.0.1:{port}"
web:
  public_url: "http://127.0.0.1:{port}"
  link_minutes: 5
"#
    )
}

fn user(name: &str) -> Identity {
    Identity::named(argos::address::Surface::CONSOLE, name)
}

fn said(name: &str, text: &str) -> ChatEvent {
    ChatEvent {
        identity: user(name),
        channel: "ops".into(),
        text: text.into(),
    }
}

/// The sign-in link in `web`'s reply.
fn link_in(reply: &str) -> String {
    let start = reply.find("http://").unwrap_or_else(|| panic!("no link in {reply:?}"));
    reply[start..].split_whitespace().next().unwrap().to_string()
}

/// A playbook stand-in that prints `lines` lines, one every quarter second: a job whose log
/// grows while one watches.
fn slow_playbook(dir: &std::path::Path, lines: u32) -> std::path::PathBuf {
    let path = dir.join("ansible-playbook");
    std::fs::write(
        &path,
        format!("#!/bin/sh\nfor i in $(seq 1 {lines}); do echo \"playbook line $i of {lines}\"; sleep 0.25; done\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The HTTP status of `GET path` (with the session cookie, if given).
async fn status_of(port: u16, path: &str, cookie: Option<&str>) -> u16 {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let cookie = cookie
        .map(|c| format!("Cookie: argos_session={c}\r\n"))
        .unwrap_or_default();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n{cookie}Connection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sign_in_see_the_overview_and_follow_a_running_jobs_log() {
    let port = free_port();
    let w = World::builder().every_job_starts().config(&config(port)).build().await;
    // The deploy runs the playbook stand-in instead of ansible-playbook.
    let scripts = tempfile::tempdir().unwrap();
    let playbook = slow_playbook(scripts.path(), 40);
    let yaml = std::fs::read_to_string(&w.project.config_path).unwrap();
    let yaml = yaml.replace(
        "command: .venv/bin/ansible-playbook",
        &format!("command: {}", playbook.display()),
    );
    std::fs::write(&w.project.config_path, yaml).unwrap();
    let Console { bot, port: chat } = Console::on(&w.project).await;
    add_app(&w.aws, bot.engine(), &["api"]);
    let (_, server) = argos::health::serve(&format!("127.0.0.1:{port}"), bot.clone())
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");

    // No session: the page asks to sign in, with 401.
    assert_eq!(status_of(port, "/", None).await, 401);
    assert_eq!(
        status_of(port, "/jobs/1", Some("00ff")).await,
        401,
        "an unknown session is none"
    );
    let browser = Browser::start().await;
    let b = &browser.client;
    b.goto(&base).await.unwrap();
    assert!(browser.text("#message").await.contains("Type `web` to Argos in chat"));

    // alice asks for a link and signs in with it.
    let reply = bot.handle(said("alice", "web")).await.unwrap();
    assert!(
        reply.starts_with(
            "🔗 Your sign-in link for the Argos page (works once, for 5 min; don't share it): http://127.0.0.1:"
        ),
        "{reply}"
    );
    let link = link_in(&reply);
    b.goto(&link).await.unwrap();
    b.find(fantoccini::Locator::Css("#sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually("the overview after signing in", async || browser.has("#who").await).await;
    assert_eq!(browser.text("#who").await, "alice");
    assert!(browser.has("#env-staging").await && browser.has("#env-sandbox").await);
    assert!(browser.text("#env-staging").await.contains("No job running."));

    // A deploy starts; the overview shows it running, its page shows its log growing.
    assert_eq!(bot.handle(said("alice", "staging deploy --roles api")).await, None);
    let store = bot.store().clone();
    eventually("the job's first log lines in the store", async || {
        store.log_end(1).unwrap_or(0) > 0
    })
    .await;
    b.goto(&base).await.unwrap();
    assert!(browser
        .text("#env-staging .running")
        .await
        .starts_with("Running: #1 deploy by alice"));
    browser.screenshot("web-overview.png").await;
    // The job's status message in chat links to its page.
    let job_link = format!("🔗 {base}/jobs/1");
    assert!(
        chat.posted()
            .iter()
            .any(|p| matches!(p, support::chat::Posted::Sent { text, .. } if text.contains(&job_link))),
        "{:?}",
        chat.posted()
    );
    b.goto(&format!("{base}/jobs/1")).await.unwrap();
    assert_eq!(browser.text("#job-state").await, "running");
    let first = browser.text("#log").await;
    assert!(first.contains("playbook line 1 of 40"), "{first}");
    // Without reloading: the page's script appends what the store gets.
    eventually("the log growing on the open page", async || {
        let now = browser.text("#log").await;
        now.len() > first.len() + 100 && now.starts_with(&first)
    })
    .await;
    browser.screenshot("web-job.png").await;
    eventually("the whole log on the open page", async || {
        browser.text("#log").await.contains("playbook line 40 of 40")
    })
    .await;
    let log = browser.text("#log").await;
    for i in 1..=40 {
        assert_eq!(
            log.matches(&format!("playbook line {i} of 40\n")).count() + usize::from(i == 40 && !log.ends_with('\n')),
            1,
            "line {i} once: {log}"
        );
    }

    // The used link opens nothing any more, and says why.
    b.delete_all_cookies().await.unwrap();
    b.goto(&link).await.unwrap();
    b.find(fantoccini::Locator::Css("#sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually("the refusal of a used link", async || browser.has("#message").await).await;
    assert!(browser
        .text("#message")
        .await
        .starts_with("This sign-in link was used already"));
    b.goto(&format!("{base}/jobs/1")).await.unwrap();
    assert!(browser.text("#message").await.starts_with("You are not signed in."));

    // An expired link is refused too.
    store.create_sign_in_link("0123abcd", &user("alice"), 0).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    b.goto(&format!("{base}/login/0123abcd")).await.unwrap();
    b.find(fantoccini::Locator::Css("#sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually("the refusal of an expired link", async || browser.has("#message").await).await;
    assert!(browser
        .text("#message")
        .await
        .starts_with("This sign-in link has expired."));

    // bob may see sandbox only: staging is not on his overview, and its job is refused.
    let bobs = link_in(&bot.handle(said("bob", "web")).await.unwrap());
    b.goto(&bobs).await.unwrap();
    b.find(fantoccini::Locator::Css("#sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually("bob's overview", async || browser.has("#who").await).await;
    assert!(browser.has("#env-sandbox").await);
    assert!(!browser.has("#env-staging").await, "bob may not see staging");
    b.goto(&format!("{base}/jobs/1")).await.unwrap();
    assert_eq!(browser.text("#message-title").await, "Not yours to see");
    b.goto(&format!("{base}/envs/staging")).await.unwrap();
    assert_eq!(browser.text("#message-title").await, "Not yours to see");

    browser.client.clone().close().await.unwrap();
    server.abort();
}
