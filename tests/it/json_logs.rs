//! `ARGOS_LOG_FORMAT=json` through the real binary: every log line is a JSON object, a job's
//! lines carry its id and environment (the job's span), no secret reaches the log, and an
//! unknown format is refused at start. Jobs run on the console (the bot's jobs) and the CLI,
//! against the scripted fake AWS, which fails them with an error that quotes the test secrets.
use crate::support;

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use support::fake_aws::FakeAws;
use support::{TestProject, APP_SECRET, DB_PASSWORD};
use tokio::io::AsyncWriteExt;

const CONFIG: &str = r#"
chat:
  commands_per_minute: 120
  command_burst: 20
  edit_interval_ms: 20
permissions:
  roles:
    admins: { console_users: [alice] }
  rules:
    - role: admins
      environments: ["*"]
      actions: ["*"]
"#;

/// The argos binary on `project`, logging JSON at info level.
fn argos(project: &TestProject, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_argos"));
    cmd.arg("--config")
        .arg(&project.config_path)
        .args(args)
        .env("ARGOS_LOG_FORMAT", "json")
        .env("ARGOS_LOG", "info")
        .env("USER", "alice")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// The first AWS call of `staging plan` fails, and the error quotes both secrets (raw, and one
/// JSON-escaped as a JSON error body would carry it), as a careless service might.
fn fail_with_secrets(fake: &FakeAws) {
    let message = format!("User is not authorized; rejected password {DB_PASSWORD} for key \"{APP_SECRET}\"");
    fake.fail_next("DescribeStacks", 403, "AccessDenied", &message);
}

struct Output {
    stdout: String,
    stderr: String,
    code: i32,
}

async fn finished(mut child: tokio::process::Child, input: Option<&str>) -> Output {
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin.write_all(input.as_bytes()).await.unwrap();
    }
    let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .expect("argos ends")
        .unwrap();
    Output {
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
        code: out.status.code().unwrap_or(-1),
    }
}

/// Parses each log line as a JSON object with the formatter's fixed keys (an event may have
/// fields and no message).
fn log_lines<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<Value> {
    lines
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}"));
            assert!(
                v["timestamp"].is_string() && v["level"].is_string() && v["target"].is_string(),
                "{l}"
            );
            v
        })
        .collect()
}

/// The job span a line was logged in, if any: `{"name": "job", "job": 1, "env": ..., "action": ...}`.
fn job_span(line: &Value) -> Option<&Value> {
    line["spans"].as_array()?.iter().find(|s| s["name"] == "job")
}

/// The line logged with `message` in job `id`'s span on `env`.
fn job_line<'a>(lines: &'a [Value], message: &str, id: u64, env: &str) -> &'a Value {
    lines
        .iter()
        .find(|v| v["message"] == message && job_span(v).is_some_and(|s| s["job"] == id && s["env"] == env))
        .unwrap_or_else(|| panic!("no {message:?} line for job #{id} on {env}: {lines:#?}"))
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [DB_PASSWORD, APP_SECRET] {
        assert!(!text.contains(secret), "{what} carries a secret: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_job_logs_json_lines_with_its_id_and_environment_and_no_secret() {
    let fake = FakeAws::start().await;
    let project = TestProject::new(&fake.endpoint_url(), CONFIG);
    fail_with_secrets(&fake);

    let mut cmd = argos(&project, &["console", "--user", "alice"]);
    let child = cmd.stdin(Stdio::piped()).spawn().expect("argos starts");
    let out = finished(child, Some("staging plan\n")).await;

    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    // The job failed with the AWS error, masked in the status message too.
    assert!(
        out.stdout.contains("staging · plan · job #1") && out.stdout.contains("not authorized"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("[redacted]"), "{}", out.stdout);
    // The console writes nothing but log lines to stderr: every one is JSON.
    let lines = log_lines(out.stderr.lines());
    let started = job_line(&lines, "job started", 1, "staging");
    assert_eq!(job_span(started).unwrap()["action"], "plan", "{started}");
    assert_eq!(started["level"], "INFO", "{started}");
    let end = job_line(&lines, "job finished", 1, "staging");
    assert_eq!(end["state"], "failed", "{end}");
    let result = end["result"].as_str().unwrap_or_default();
    assert!(
        result.contains("not authorized") && result.contains("[redacted]"),
        "{end}"
    );
    assert_no_secret("stderr", &out.stderr);
    assert_no_secret("stdout", &out.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_job_logs_json_lines_with_its_id_and_environment_and_no_secret() {
    let fake = FakeAws::start().await;
    let project = TestProject::new(&fake.endpoint_url(), CONFIG);
    fail_with_secrets(&fake);

    let child = argos(&project, &["staging", "plan"])
        .stdin(Stdio::null())
        .spawn()
        .expect("argos starts");
    let out = finished(child, None).await;

    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    // The CLI's own output (progress, the error) shares stderr with the log: the log's lines
    // are the JSON objects, every one of them whole.
    let lines = log_lines(out.stderr.lines().filter(|l| l.starts_with('{')));
    let started = job_line(&lines, "job started", 1, "staging");
    assert_eq!(job_span(started).unwrap()["action"], "plan", "{started}");
    assert_eq!(started["requester"], "alice", "{started}");
    let end = job_line(&lines, "job finished", 1, "staging");
    assert_eq!(end["state"], "failed", "{end}");
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with("error: ") && l.contains("not authorized") && l.contains("[redacted]")),
        "{}",
        out.stderr
    );
    assert_no_secret("stderr", &out.stderr);
    assert_no_secret("stdout", &out.stdout);
}

#[tokio::test]
async fn the_default_stays_text_and_an_unknown_format_is_refused_at_start() {
    let fake = FakeAws::start().await;
    let project = TestProject::new(&fake.endpoint_url(), CONFIG);

    let child = argos(&project, &["envs"])
        .env("ARGOS_LOG_FORMAT", "yaml\x1b[2J")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let out = finished(child, None).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(
        out.stderr.trim_end(),
        "error: ARGOS_LOG_FORMAT='yaml\\x1b[2J' is not a log format: use `text` (the default) or `json`"
    );
    assert!(out.stdout.is_empty(), "nothing ran: {}", out.stdout);

    // Unset, the log is text: the same job's lines, not JSON.
    fail_with_secrets(&fake);
    let child = argos(&project, &["staging", "plan"])
        .env_remove("ARGOS_LOG_FORMAT")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let out = finished(child, None).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("job finished"))
        .unwrap_or_else(|| panic!("{}", out.stderr));
    assert!(!line.starts_with('{'), "{line}");
    assert!(line.contains("job{job=1 env=staging action=plan}"), "{line}");
    assert_no_secret("stderr", &out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_trace_level_the_sdks_lines_name_the_job_and_the_secrets_are_still_masked() {
    let fake = FakeAws::start().await;
    let project = TestProject::new(&fake.endpoint_url(), CONFIG);
    fail_with_secrets(&fake);

    let child = argos(&project, &["staging", "plan"])
        .env("ARGOS_LOG", "trace")
        .stdin(Stdio::null())
        .spawn()
        .expect("argos starts");
    let out = finished(child, None).await;

    assert_eq!(out.code, 1, "{}", out.stderr);
    let lines = log_lines(out.stderr.lines().filter(|l| l.starts_with('{')));
    // The SDK logs the response body, the secrets in it included, unredacted: the log's writer
    // masks them.
    let body = lines
        .iter()
        .find(|v| {
            v["target"].as_str().is_some_and(|t| t.starts_with("aws_smithy")) && v.to_string().contains("<Error>")
        })
        .unwrap_or_else(|| panic!("the SDK logged no response body: {lines:#?}"));
    assert!(body.to_string().contains("[redacted]"), "{body}");
    // Its lines are in its own spans, inside the job's.
    let span = job_span(body).unwrap_or_else(|| panic!("{body}"));
    assert_eq!(
        (&span["job"], &span["env"]),
        (&Value::from(1), &Value::from("staging")),
        "{body}"
    );
    job_line(&lines, "job finished", 1, "staging");
    assert_no_secret("stderr", &out.stderr);
}
