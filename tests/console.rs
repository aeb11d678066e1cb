//! The console adapter through the real binary's stdin and stdout: commands typed by named
//! users (an admin, a deployer, a stranger) against a moto server and the sandbox playbooks.
mod support;

use std::process::Stdio;

use support::moto::Moto;
use support::TestProject;
use tokio::io::AsyncWriteExt;

const PERMISSIONS: &str = r#"
chat:
  commands_per_minute: 120
  command_burst: 20
  edit_interval_ms: 100
permissions:
  roles:
    admins: { console_users: [alice] }
    deployers: { console_users: [bob] }
  rules:
    - role: admins
      environments: ["*"]
      actions: ["*"]
    - role: deployers
      environments: [staging]
      actions: [deploy, status, events]
"#;

async fn console(project: &TestProject, user: &str, input: &str) -> (String, i32) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_argos"))
        .arg("--config")
        .arg(&project.config_path)
        .args(["console", "--user", user])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("argos starts");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the console ends after its input and jobs")
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (text, out.status.code().unwrap_or(-1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_session_with_three_users() {
    let moto = Moto::start().await;
    let project = TestProject::new(&moto.url, PERMISSIONS);

    // The stranger may ask for help and nothing else.
    let (out, code) = console(&project, "mallory", "help\nstaging status\njobs\n").await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("Commands you may run") && out.contains("help [command]"),
        "{out}"
    );
    assert!(
        !out.contains("<env> deploy"),
        "help lists only what the user may run: {out}"
    );
    assert!(out.contains("You don't have permission for status on staging"), "{out}");
    assert!(out.contains("You have no role with Argos"), "{out}");

    // The admin commissions: one status message followed to the end, then status.
    let (out, code) = console(
        &project,
        "alice",
        "staging deplyo\n!argos staging commission\nstaging status\n",
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("unknown command 'deplyo'; did you mean 'deploy'?"),
        "{out}"
    );
    assert!(out.contains("staging · commission · job #1 · alice"), "{out}");
    assert!(
        out.contains("✅ staging · commission · job #1 · alice · done in"),
        "{out}"
    );
    assert!(out.contains("full log: "), "{out}");
    assert!(!out.contains(support::DB_PASSWORD));

    // The deployer may deploy staging but not decommission it; jobs are listed.
    let (out, code) = console(&project, "bob", "staging decommission\nstaging deploy api\njobs\n").await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("You don't have permission for decommission on staging"),
        "{out}"
    );
    assert!(out.contains("✅ staging · deploy · job #2 · bob"), "{out}");
    assert!(out.contains("#1 staging commission — succeeded by alice"), "{out}");

    // Every command is in the audit log, allowed or denied.
    let store = argos::store::Store::open(&project.config().database_path()).unwrap();
    let audit = store.audit_log(100).unwrap();
    assert!(audit
        .iter()
        .any(|a| a.user_id == "mallory" && a.outcome.starts_with("denied")));
    assert!(audit
        .iter()
        .any(|a| a.user_id == "bob" && a.outcome == "denied: missing decommission on staging"));
    assert!(audit
        .iter()
        .any(|a| a.user_id == "alice" && a.outcome.starts_with("malformed")));
    assert!(audit
        .iter()
        .any(|a| a.job_id == Some(1) && a.outcome == "ok: job #1 started"));
    drop(moto);
}
