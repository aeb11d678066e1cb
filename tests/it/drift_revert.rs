//! `<env> update --revert-drift` on the scripted fake AWS through the bot: refused without
//! recorded drift, without a stack and during a freeze; otherwise a REVERT_DRIFT change set on
//! the stack's current template and parameters, behind update's approval policy, bound to what
//! it reverts (a drift that changes meanwhile voids the approval), executed, and checked again.
use crate::support;

use argos::bot::port::ChatEvent;
use argos::engine;
use argos::permissions::Identity;
use argos::store::{ApprovalState, DriftState, JobState};
use support::chat::{Posted, RecordingPort};
use support::fake_aws::{Call, DriftScript, ResourceDrift};
use support::world::{Console, World as AnyWorld};
use support::Recorder;

const CONFIG: &str = r#"
chat:
  commands_per_minute: 120
  command_burst: 50
  edit_interval_ms: 20
permissions:
  roles:
    admins: { console_users: [alice, bob] }
  rules:
    - role: admins
      environments: ["*"]
      actions: ["*"]
approvals:
  ttl_minutes: 30
  policies:
    - environments: [staging]
      actions: [update]
      approvers: 1
"#;

const TEMPLATE: &str = r#"{"Parameters": {"Size": {"Type": "String", "Default": "small"}},
 "Resources": {
  "ApiEc2Instance": {"Type": "AWS::EC2::Instance", "Properties": {}},
  "Database": {"Type": "AWS::RDS::DBInstance", "Properties": {}}
}}"#;

type World = AnyWorld<Console>;

async fn world() -> World {
    argos::clock::reset();
    let w = AnyWorld::builder().time_scale(50.0).config(CONFIG).console().await;
    w.aws.add_stack(
        "argos-staging",
        TEMPLATE,
        &[("Size", "large")],
        &[
            ("ApiEc2Instance", "AWS::EC2::Instance"),
            ("Database", "AWS::RDS::DBInstance"),
        ],
    );
    w
}

fn said(name: &str, text: &str) -> ChatEvent {
    ChatEvent {
        identity: Identity {
            platform: argos::address::Surface::CONSOLE,
            user_id: name.into(),
            display_name: name.into(),
            platform_roles: vec![],
        },
        channel: "ops".into(),
        text: text.into(),
    }
}

fn instance_drift() -> ResourceDrift {
    ResourceDrift::modified(
        "ApiEc2Instance",
        "AWS::EC2::Instance",
        &[("/InstanceType", "t3.small", "t3.large")],
    )
}

/// Runs `staging drift` as alice and waits for it.
async fn drift(w: &World, results: Vec<ResourceDrift>) {
    w.aws.script_drift("argos-staging", DriftScript::complete(0.0, results));
    assert_eq!(w.chat.bot.handle(said("alice", "staging drift")).await, None);
    w.chat.bot.idle().await;
}

/// The text of the latest version of the message that starts with `start`.
fn message(port: &RecordingPort, start: &str) -> String {
    port.posted()
        .into_iter()
        .filter_map(|p| match p {
            Posted::Sent { id, .. } => port.text_of(&id),
            _ => None,
        })
        .find(|t| t.starts_with(start))
        .unwrap_or_else(|| panic!("no message starting with {start:?}: {:?}", port.posted()))
}

fn creates(calls: &[Call]) -> Vec<&Call> {
    calls.iter().filter(|c| c.action == "CreateChangeSet").collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revert_is_approved_against_what_it_reverts_then_executed_in_revert_drift_mode() {
    let w = world().await;
    let bot = &w.chat.bot;

    // Nothing recorded yet: refused before any job, approval or AWS call.
    let refused = bot
        .handle(said("alice", "staging update --revert-drift"))
        .await
        .unwrap();
    assert_eq!(
        refused,
        "❌ no drift is recorded for staging: run `staging drift` first; `update --revert-drift` reverts what it finds"
    );
    assert!(bot.store().recent_jobs(10).unwrap().is_empty());
    // A mistyped option is named, with the grammar.
    let typo = bot
        .handle(said("alice", "staging update --revert-drfit"))
        .await
        .unwrap();
    assert!(
        typo.contains("unknown option '--revert-drfit'; did you mean '--revert-drift'?"),
        "{typo}"
    );
    assert!(
        typo.contains("<env> update [Parameter=value...] [ref=<branch|tag|sha>] [--revert-drift]"),
        "{typo}"
    );

    drift(
        &w,
        vec![
            instance_drift(),
            ResourceDrift::in_sync("Database", "AWS::RDS::DBInstance"),
        ],
    )
    .await;
    assert_eq!(
        bot.store().last_drift("staging").unwrap().unwrap().state,
        DriftState::Drifted
    );

    // A freeze stops it as it stops update.
    let frozen = bot
        .handle(said("alice", "freeze staging for 1h \"release train\""))
        .await
        .unwrap();
    assert!(frozen.contains("staging"), "{frozen}");
    let refused = bot
        .handle(said("alice", "staging update --revert-drift"))
        .await
        .unwrap();
    assert!(refused.starts_with("❄️ staging is frozen"), "{refused}");
    assert!(
        refused.contains("`!argos staging update --revert-drift --break-glass \"why\"`"),
        "{refused}"
    );
    bot.handle(said("alice", "unfreeze staging")).await.unwrap();

    // The request shows what the revert changes, property by property.
    assert_eq!(bot.handle(said("alice", "staging update --revert-drift")).await, None);
    let request = message(&w.chat.port, "🔐 **Approval needed** · job #2");
    assert!(
        request.contains("staging update --revert-drift requested by alice"),
        "{request}"
    );
    assert!(
        request.contains("1 change(s) would revert on argos-staging: drifted resources back to the stack's template"),
        "{request}"
    );
    assert!(
        request.contains("• Modify ApiEc2Instance AWS::EC2::Instance"),
        "{request}"
    );
    assert!(
        request.contains("  ◦ /Properties/InstanceType: t3.large -> t3.small"),
        "{request}"
    );
    // The plan's change set was made in REVERT_DRIFT mode on the stack as it is, then deleted.
    let calls = w.aws.calls();
    let made = creates(&calls);
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(
        made[0].params.get("DeploymentMode").map(String::as_str),
        Some("REVERT_DRIFT")
    );
    assert_eq!(
        made[0].params.get("UsePreviousTemplate").map(String::as_str),
        Some("true")
    );
    assert_eq!(made[0].params.get("TemplateBody"), None);
    assert_eq!(
        made[0]
            .params
            .get("Parameters.member.1.ParameterKey")
            .map(String::as_str),
        Some("Size")
    );
    assert_eq!(
        made[0]
            .params
            .get("Parameters.member.1.UsePreviousValue")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(w.aws.count("DeleteChangeSet"), 1);
    assert_eq!(w.aws.count("ExecuteChangeSet"), 0, "nothing happens before approval");

    let approved = bot.handle(said("bob", "approve 2")).await.unwrap();
    assert!(approved.contains("job #2"), "{approved}");
    bot.idle().await;
    let job = bot.store().job(2).unwrap().unwrap();
    assert_eq!(
        (job.action.as_str(), job.state),
        ("update", JobState::Succeeded),
        "{job:?}"
    );
    assert_eq!(job.args, r#"{"revert_drift":true,"parameters":{}}"#);

    // Executed: the change set the job made in REVERT_DRIFT mode, no other.
    let calls = w.aws.calls();
    let made = creates(&calls);
    assert!(
        made.iter()
            .all(|c| c.params.get("DeploymentMode").map(String::as_str) == Some("REVERT_DRIFT")),
        "{made:?}"
    );
    let executed: Vec<&Call> = calls.iter().filter(|c| c.action == "ExecuteChangeSet").collect();
    assert_eq!(executed.len(), 1);
    let last_made = &made.last().unwrap().params["ChangeSetName"];
    assert!(
        executed[0].params["ChangeSetName"].contains(&format!("changeSet/{last_made}/")),
        "{executed:?}"
    );
    assert_eq!(w.aws.stack_status("argos-staging").as_deref(), Some("UPDATE_COMPLETE"));

    // Checked again afterwards: the store now says in sync.
    let summary = message(&w.chat.port, "✅ **staging · update --revert-drift** · job #2");
    assert!(summary.contains("1 change(s) reverted on argos-staging"), "{summary}");
    assert!(summary.contains("drift check after the revert: in sync"), "{summary}");
    assert_eq!(w.aws.count("DetectStackDrift"), 2);
    assert_eq!(
        bot.store().last_drift("staging").unwrap().unwrap().state,
        DriftState::InSync
    );
    // Audited as update is, under the command as typed.
    let audit = bot.store().audit_log(100).unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.command == "staging update --revert-drift" && a.job_id == Some(2)),
        "{audit:?}"
    );

    // In sync now: nothing to revert.
    let refused = bot
        .handle(said("alice", "staging update --revert-drift"))
        .await
        .unwrap();
    assert_eq!(
        refused,
        "❌ staging was in sync at its last drift check: there is nothing to revert (run `staging drift` to check again)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drift_that_changes_after_the_request_voids_the_approval() {
    let w = world().await;
    let bot = &w.chat.bot;
    drift(
        &w,
        vec![
            instance_drift(),
            ResourceDrift::in_sync("Database", "AWS::RDS::DBInstance"),
        ],
    )
    .await;
    assert_eq!(bot.handle(said("alice", "staging update --revert-drift")).await, None);
    let request = message(&w.chat.port, "🔐 **Approval needed** · job #2");
    assert!(request.contains("1 change(s) would revert"), "{request}");

    // Someone changes the database by hand too, and the next check finds it.
    drift(
        &w,
        vec![
            instance_drift(),
            ResourceDrift::modified(
                "Database",
                "AWS::RDS::DBInstance",
                &[("/DBInstanceClass", "db.t3.micro", "db.t3.large")],
            ),
        ],
    )
    .await;
    let reply = bot.handle(said("bob", "approve 2")).await.unwrap();
    assert_eq!(
        reply,
        "⚠️ The plan for job #2 changed since it was requested; the approval is void and alice has been told."
    );
    assert_eq!(
        bot.store().approval_for_job(2).unwrap().unwrap().state,
        ApprovalState::Void
    );
    assert_eq!(bot.store().job(2).unwrap().unwrap().state, JobState::Cancelled);
    assert_eq!(w.aws.count("ExecuteChangeSet"), 0, "nothing was reverted");
}

#[tokio::test]
async fn a_revert_without_a_stack_or_without_recorded_drift_is_refused() {
    let w = AnyWorld::builder().config(CONFIG).build().await;
    let store = argos::store::Store::open(&w.project.config().database_path()).unwrap();
    let engine = w.project.engine().await.with_store(store.clone());
    let rec = Recorder::new(&engine, "staging", None);
    let e = engine::revert_drift(&rec.ctx).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "no drift is recorded for staging: run `staging drift` first; `update --revert-drift` reverts what it finds"
    );
    store.record_drift("staging", DriftState::Failed, 0, "{}").unwrap();
    let e = engine::revert_drift(&rec.ctx).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "the last drift check of staging failed, so there is no drift to revert: run `staging drift` first"
    );
    // Drift recorded, but the stack is gone since.
    store.record_drift("staging", DriftState::Drifted, 1, "{}").unwrap();
    let e = engine::revert_drift(&rec.ctx).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "there is no stack argos-staging: there is no drift to revert"
    );
    assert_eq!(w.aws.count("CreateChangeSet"), 0);
}

/// Runs the real binary on the project's config; returns (exit code, stdout and stderr).
async fn cli(w: &AnyWorld<()>, args: &[&str]) -> (i32, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_argos"))
        .arg("--config")
        .arg(&w.project.config_path)
        .args(args)
        .env_remove("ARGOS_CONFIG")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run argos");
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (out.status.code().unwrap_or(-1), text(&out.stdout) + &text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_speaks_the_same_grammar_and_reverts_where_no_approval_is_asked() {
    let w = AnyWorld::builder().time_scale(50.0).config(CONFIG).build().await;
    w.aws.add_stack(
        "argos-sandbox",
        TEMPLATE,
        &[("Size", "large")],
        &[
            ("ApiEc2Instance", "AWS::EC2::Instance"),
            ("Database", "AWS::RDS::DBInstance"),
        ],
    );
    let (code, out) = cli(&w, &["sandbox", "update", "--revert"]).await;
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("error: unknown option '--revert' (update takes --revert-drift)"),
        "{out}"
    );
    let (code, out) = cli(&w, &["sandbox", "update", "--revert-drift"]).await;
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("error: no drift is recorded for sandbox: run `sandbox drift` first"),
        "{out}"
    );
    assert_eq!(w.aws.count("CreateChangeSet"), 0);

    // A check finds drift (recorded in the project's store, as the bot's jobs do).
    w.aws
        .script_drift("argos-sandbox", DriftScript::complete(0.0, vec![instance_drift()]));
    let store = argos::store::Store::open(&w.project.config().database_path()).unwrap();
    let engine = w.project.engine().await.with_store(store.clone());
    let rec = Recorder::new(&engine, "sandbox", None);
    engine::drift_and_record(&rec.ctx).await.unwrap();

    let (code, out) = cli(&w, &["sandbox", "update", "--revert-drift"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 change(s) reverted on argos-sandbox"), "{out}");
    assert!(out.contains("/Properties/InstanceType: t3.large -> t3.small"), "{out}");
    let calls = w.aws.calls();
    let made = creates(&calls);
    assert_eq!(made.len(), 1, "no approval here, so no plan first: {made:?}");
    assert_eq!(
        made[0].params.get("DeploymentMode").map(String::as_str),
        Some("REVERT_DRIFT")
    );
    assert_eq!(w.aws.count("ExecuteChangeSet"), 1);
    assert_eq!(store.last_drift("sandbox").unwrap().unwrap().state, DriftState::InSync);
    let job = store.recent_jobs(1).unwrap().remove(0);
    assert_eq!((job.action.as_str(), job.state), ("update", JobState::Succeeded));
    // `status` on the CLI tells the last check, as in chat.
    let (code, out) = cli(&w, &["sandbox", "status"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\ndrift: in sync, checked just now\n"), "{out}");
}
