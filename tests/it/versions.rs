//! Versions end to end on the console bot: a chosen ref becomes a commit before the job
//! exists, real `ansible-playbook` checks that commit out on each (local) host, the deploys are
//! recorded and listed, and a rollback names what it undoes, migrations included. The app's
//! repository is the demo repo (`scripts/demo-repo`), a real git repository on disk.

use std::path::{Path, PathBuf};
use std::process::Command;

use argos::bot::port::ChatEvent;
use argos::permissions::Identity;
use argos::store::JobState;

use crate::support::chat::Posted;
use crate::support::world::{add_app, Console, World};
use crate::support::{repo, TestProject};

const PEOPLE: &str = r#"
chat:
  commands_per_minute: 120
  command_burst: 50
  edit_interval_ms: 20
permissions:
  roles:
    admins: { console_users: [alice, carol] }
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

/// The demo app's repository, made by the project's own script.
fn demo_repo(dir: &Path) -> PathBuf {
    let path = dir.join("demo-app");
    let out = Command::new(repo().join("scripts/demo-repo"))
        .arg(&path)
        .output()
        .expect("run scripts/demo-repo");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    path
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn commit_of(dir: &Path, name: &str) -> String {
    git(dir, &["rev-parse", &format!("{name}^{{commit}}")])
}

/// A console world whose config names the demo repository, with `extra` config on top.
async fn world(extra: &str) -> (World<Console>, tempfile::TempDir, PathBuf) {
    argos::clock::reset();
    let dir = tempfile::tempdir().unwrap();
    let demo = demo_repo(dir.path());
    let config = format!("{PEOPLE}repository:\n  url: {}\n{extra}", demo.display());
    // api and collector check out the app's code; front stands for the roles that do not.
    // (The fourth default role, knowledge, would add one more ansible-playbook run to each of
    // the deploys without showing anything more.)
    let w = World::builder()
        .time_scale(50.0)
        .config(&config)
        .roles(&["api", "front", "collector"])
        .console()
        .await;
    let engine = w.project.engine().await;
    let roles = engine.config.settings.ansible.roles.clone();
    add_app(&w.aws, &engine, &roles.iter().map(String::as_str).collect::<Vec<_>>());
    (w, dir, demo)
}

/// Every commit the sandbox hosts checked out (`<host>/app`), once each.
fn checked_out(project: &TestProject) -> Vec<String> {
    let mut out = Vec::new();
    for host in std::fs::read_dir(project.hosts_dir()).into_iter().flatten().flatten() {
        let app = host.path().join("app");
        if app.join(".git").exists() {
            out.push(git(&app, &["rev-parse", "HEAD"]));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The last text of every message the bot posted, in order.
fn texts(w: &World<Console>) -> Vec<String> {
    let mut ids = Vec::new();
    for p in w.chat.port.posted() {
        if let Posted::Sent { id, .. } = p {
            ids.push(id);
        }
    }
    ids.iter().filter_map(|id| w.chat.port.text_of(id)).collect()
}

async fn ask(w: &World<Console>, who: &str, text: &str) -> Option<String> {
    let reply = w.chat.bot.handle(said(who, text)).await;
    w.chat.bot.idle().await;
    reply
}

#[tokio::test]
async fn a_chosen_ref_is_deployed_recorded_and_rolled_back() {
    let (w, _dir, demo) = world("").await;
    let store = w.chat.bot.store().clone();
    let v1 = commit_of(&demo, "v1.0.0");
    let v12 = commit_of(&demo, "v1.2.0");

    assert_eq!(
        ask(&w, "alice", "staging deploy ref=v1.0.0").await,
        None,
        "the status message answers"
    );
    let first = store.job(1).unwrap().unwrap();
    assert_eq!(first.state, JobState::Succeeded, "{:?}", first.result);
    assert_eq!(
        (first.git_ref.as_deref(), first.sha.as_deref()),
        (Some("v1.0.0"), Some(v1.as_str()))
    );
    assert_eq!(
        checked_out(&w.project),
        std::slice::from_ref(&v1),
        "the host has the commit, for real"
    );
    assert!(!first.hosts.is_empty(), "the hosts it reached are recorded");
    // Each host that got code says which commit it runs, in the job's log.
    let log = std::fs::read_to_string(first.log_path.as_deref().expect("a log")).unwrap();
    let reports = log.matches(&format!(" runs {v1}")).count();
    assert_eq!(
        reports, 2,
        "api and collector (the roles with code) report their commit: {log}"
    );

    ask(&w, "alice", "staging deploy ref=v1.2.0").await;
    let second = store.job(2).unwrap().unwrap();
    assert_eq!(second.sha.as_deref(), Some(v12.as_str()), "{:?}", second.result);
    assert_eq!(checked_out(&w.project), std::slice::from_ref(&v12));

    let history = ask(&w, "alice", "staging history").await.unwrap();
    let lines: Vec<&str> = history.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(lines.len(), 2, "{history}");
    assert!(
        lines[0].starts_with(&format!("#2 deploy v1.2.0 @ {} · alice (console) · ", &v12[..8])),
        "{history}"
    );
    assert!(
        lines[0].contains("· succeeded · ") && lines[0].ends_with(" host(s)"),
        "{history}"
    );
    assert!(
        lines[1].starts_with(&format!("#1 deploy v1.0.0 @ {}", &v1[..8])),
        "{history}"
    );

    let envs = ask(&w, "alice", "envs").await.unwrap();
    assert!(
        envs.contains(&format!("• staging: free · v1.2.0 @ {} by alice, ", &v12[..8])),
        "{envs}"
    );
    let status = ask(&w, "alice", "staging status").await.unwrap();
    assert!(
        status.ends_with(&format!(
            "Deployed: v1.2.0 @ {} by alice, {}, ✅ (job #2), 1 commit(s) behind master",
            &v12[..8],
            second.finished_at.unwrap().format("%Y-%m-%d %H:%M UTC")
        )),
        "{status}"
    );
    let job = ask(&w, "alice", "job 2").await.unwrap();
    assert!(job.contains(&format!("commit {v12} (v1.2.0)")), "{job}");

    // Back to the last good commit before the current one: v1.0.0, with what that undoes.
    ask(&w, "alice", "staging rollback").await;
    let third = store.job(3).unwrap().unwrap();
    assert_eq!(third.state, JobState::Succeeded, "{:?}", third.result);
    assert_eq!(
        (third.action.as_str(), third.git_ref.as_deref(), third.sha.as_deref()),
        ("rollback", Some("job #1"), Some(v1.as_str()))
    );
    assert_eq!(checked_out(&w.project), std::slice::from_ref(&v1));
    let done = texts(&w)
        .into_iter()
        .rev()
        .find(|t| t.contains("rolled back staging"))
        .unwrap();
    assert!(
        done.contains(&format!("undoes 4 commit(s), from {} back to {}", &v12[..8], &v1[..8])),
        "{done}"
    );
    assert!(
        done.contains("migrations changed between the two (migrations/0002_add_column.sql)"),
        "{done}"
    );

    // The rollback leaves staging held by who rolled back (holds.after_rollback), so nobody
    // redeploys the bad commit meanwhile; the holder may go on.
    let refused = ask(&w, "carol", "staging deploy").await.unwrap();
    assert!(
        refused.starts_with(&format!(
            "🔒 staging is held by alice: rolled back from {}, until ",
            &v12[..8]
        )),
        "{refused}"
    );
    assert_eq!(store.recent_jobs(10).unwrap().len(), 3, "no job for it");

    // `rollback to` a ref: forward again to v1.2.0 (nothing undone, nothing to warn about).
    ask(&w, "alice", "staging rollback to v1.2.0").await;
    assert_eq!(store.job(4).unwrap().unwrap().sha.as_deref(), Some(v12.as_str()));

    // The CLI reads the same record, and refuses an unknown ref before any job.
    let (out, code) = cli(&w.project, &["staging", "history", "2"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with(&format!("#4 rollback v1.2.0 @ {}", &v12[..8])), "{out}");
    assert!(out.contains(&format!("#3 rollback job #1 @ {}", &v1[..8])), "{out}");
    let (out, code) = cli(&w.project, &["staging", "deploy", "ref=nope"]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("unknown ref \"nope\""), "{out}");
    assert_eq!(store.recent_jobs(10).unwrap().len(), 4, "no job for it");
}

/// Runs the `argos` binary on the project as alice; its output (stdout then stderr) and code.
async fn cli(project: &TestProject, args: &[&str]) -> (String, i32) {
    crate::support::run_cli(project, "alice", args).await
}

#[tokio::test]
async fn an_unknown_or_refused_ref_is_refused_before_any_job() {
    let (w, _dir, _demo) = world("defaults:\n  refs: [\"v*\", master]\n").await;
    let reply = ask(&w, "alice", "staging deploy ref=v9.9.9").await.unwrap();
    assert!(reply.starts_with("❌ unknown ref \"v9.9.9\" in "), "{reply}");
    let reply = ask(&w, "alice", "staging deploy ref=feature-x").await.unwrap();
    assert_eq!(
        reply,
        "❌ ref `feature-x` refused: staging takes only v*, master (environments.staging.refs)"
    );
    let reply = ask(&w, "alice", "staging deploy ref=featur-x").await.unwrap();
    assert!(reply.contains("nearest: feature-x"), "{reply}");
    let reply = ask(&w, "alice", "staging rollback").await.unwrap();
    assert_eq!(
        reply,
        "❌ nothing to roll back: staging has no successful deploy on record"
    );
    assert!(
        w.chat.bot.store().recent_jobs(10).unwrap().is_empty(),
        "no job for any of them"
    );
}

#[tokio::test]
async fn a_ref_outside_the_rule_waits_for_approval_and_a_moved_ref_voids_it() {
    let (w, _dir, demo) = world("defaults:\n  refs: [\"v*\"]\n  other_refs: approval\n").await;
    let fx = commit_of(&demo, "feature-x");
    assert_eq!(ask(&w, "alice", "staging deploy ref=feature-x").await, None);
    let request = texts(&w).into_iter().find(|t| t.contains("Approval needed")).unwrap();
    assert!(
        request.contains(&format!("staging deploy · feature-x @ {}", &fx[..8])),
        "{request}"
    );
    assert!(request.contains("nothing recorded runs there now"), "{request}");

    // The branch moves before anyone approves: the approval is void, nothing runs.
    git(&demo, &["checkout", "-q", "feature-x"]);
    std::fs::write(demo.join("NEWS"), "moved\n").unwrap();
    git(&demo, &["add", "NEWS"]);
    git(
        &demo,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.org",
            "commit",
            "-qm",
            "move feature-x",
        ],
    );
    let reply = ask(&w, "carol", "approve 1").await.unwrap();
    assert!(reply.contains("void"), "{reply}");
    let job = w.chat.bot.store().job(1).unwrap().unwrap();
    assert_eq!(job.state, JobState::Cancelled);
    assert_eq!(
        job.result.as_deref(),
        Some("approval void: the plan changed before the job started")
    );
    assert!(checked_out(&w.project).is_empty(), "nothing was deployed");
}

#[tokio::test]
async fn the_bot_suggests_refs_for_the_slash_commands_autocomplete() {
    let (w, _dir, _demo) = world("defaults:\n  refs: [\"v*\"]\n  other_refs: approval\n").await;
    let suggest = w.chat.bot.ref_suggester();
    let all = suggest("staging".into(), String::new()).await;
    // The tags the environment accepts come first, newest first; then the other names.
    assert_eq!(&all[..3], ["v1.2.0", "v1.1.0", "v1.0.0"], "{all:?}");
    for branch in ["master", "feature-x", "feature-y"] {
        assert!(all[3..].iter().any(|n| n == branch), "{all:?}");
    }
    let mut features = suggest("staging".into(), "feat".into()).await;
    features.sort();
    assert_eq!(features, ["feature-x", "feature-y"]);
    assert!(suggest("staging".into(), "nothing-like-it".into()).await.is_empty());
}

#[tokio::test]
async fn after_a_failed_deploy_rollback_goes_to_the_last_good_commit() {
    let (w, _dir, demo) = world("").await;
    let store = w.chat.bot.store().clone();
    let v1 = commit_of(&demo, "v1.0.0");
    let v12 = commit_of(&demo, "v1.2.0");
    let fx = commit_of(&demo, "feature-x");
    // On record: two good deploys, then one that failed after reaching the hosts.
    for (git_ref, sha, state) in [
        ("v1.0.0", &v1, JobState::Succeeded),
        ("v1.2.0", &v12, JobState::Succeeded),
        ("feature-x", &fx, JobState::Failed),
    ] {
        let action = argos::command::Action::Deploy {
            roles: vec![],
            version: argos::command::Version {
                git_ref: Some(git_ref.into()),
                commit: Some(sha.clone()),
            },
        };
        let new = argos::store::NewJob {
            requester_id: "alice".into(),
            requester_name: "alice".into(),
            platform: argos::address::Surface::CONSOLE,
            channel: "ops".into(),
            env: "staging".into(),
            action: action.verb().into(),
            args: action.stored_args(),
            person: String::new(),
            break_glass: None,
        };
        store.insert_job_for(&new, state, None).unwrap();
    }
    // The hosts run feature-x: going back is to v1.2.0 (job #2), not past it.
    ask(&w, "alice", "staging rollback").await;
    let back = store.job(4).unwrap().unwrap();
    assert_eq!(back.state, JobState::Succeeded, "{:?}", back.result);
    assert_eq!(
        (back.git_ref.as_deref(), back.sha.as_deref()),
        (Some("job #2"), Some(v12.as_str()))
    );
    assert_eq!(checked_out(&w.project), std::slice::from_ref(&v12));
}
