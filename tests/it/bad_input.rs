//! Bad input gets a specific error and makes no AWS call: every case points a config at a
//! scripted fake AWS endpoint and checks afterwards that the fake saw nothing.
use crate::support;

use std::path::{Path, PathBuf};

use argos::engine;
use argos::error::Error;
use argos::names::EnvName;
use support::fake_aws::FakeAws;
use support::{Recorder, TestProject};

/// Runs the real binary; returns (exit code, stdout, stderr).
async fn argos_output(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_argos"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("ARGOS_CONFIG")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run argos");
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// Runs the real binary; returns (exit code, stderr).
async fn argos(config: &Path, args: &[&str]) -> (i32, String) {
    let (code, _, stderr) = argos_output(config, args).await;
    (code, stderr)
}

/// The last `error: ...` line the binary printed.
fn error_line(stderr: &str) -> &str {
    stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("error: "))
        .unwrap_or_else(|| panic!("no error line in: {stderr}"))
}

fn assert_no_calls(fake: &FakeAws) {
    assert!(fake.calls().is_empty(), "AWS was called: {:?}", fake.actions());
}

/// A copy of the repository's formations in a temp dir, and a project that uses it.
fn broken_formations(fake: &FakeAws, edit: impl FnOnce(&Path)) -> (TestProject, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(support::repo().join("formations")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    edit(dir.path());
    let project = TestProject::with_paths(
        &fake.endpoint_url(),
        "",
        &format!("  formations: {}", dir.path().display()),
    );
    (project, dir)
}

fn replace_in(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains(from), "{} has no {from:?}", file.display());
    std::fs::write(file, text.replacen(from, to, 1)).unwrap();
}

/// Line (1-based) of the first line of `file` containing `needle`.
fn line_of(file: &Path, needle: &str) -> usize {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .position(|l| l.contains(needle))
        .expect("needle present")
        + 1
}

#[test]
fn invalid_env_names_are_refused_by_the_parser() {
    let cases: [(String, &str); 5] = [
        (
            "Prod!".into(),
            "invalid environment name 'Prod!': it contains the uppercase letter 'P'",
        ),
        ("a;b".into(), "invalid environment name 'a;b': it contains ';'"),
        ("".into(), "invalid environment name '': it is empty"),
        ("a".repeat(200), "it is 200 characters long"),
        ("9lives".into(), "it must start with a letter"),
    ];
    for (raw, want) in cases {
        let err = EnvName::parse(&raw).expect_err(&raw).to_string();
        assert!(err.contains(want), "{raw:?}: {err}");
        assert!(
            err.contains("use lowercase letters, digits and single hyphens"),
            "{err}"
        );
        assert!(err.chars().count() < 220, "a long name is not echoed whole: {err}");
    }
    assert_eq!(EnvName::parse("qa-2").unwrap().as_str(), "qa-2");
}

#[tokio::test]
async fn invalid_and_unknown_envs_make_no_aws_call() {
    let fake = FakeAws::start().await;
    let project = TestProject::new(&fake.endpoint_url(), "");
    let long = "a".repeat(200);
    let cases: [(&str, &str); 4] = [
        ("Prod!", "invalid environment name 'Prod!'"),
        ("a;b", "invalid environment name 'a;b': it contains ';'"),
        (&long, "it is 200 characters long"),
        ("qa", "unknown environment 'qa'; configured: sandbox, staging"),
    ];
    for (env, want) in cases {
        let (code, stderr) = argos(&project.config_path, &[env, "commission"]).await;
        assert_eq!(code, 2, "{env}: {stderr}");
        assert!(error_line(&stderr).contains(want), "{env}: {stderr}");
        // The library refuses the same way.
        let engine = project.engine().await;
        match engine.target(env) {
            Err(Error::Invalid(msg)) => assert!(msg.contains(want), "{msg}"),
            Err(other) => panic!("{env}: {other:?}"),
            Ok(_) => panic!("{env} accepted"),
        }
    }
    assert_no_calls(&fake);
    // Each refusal is in the audit log, newest first.
    let store = argos::store::Store::open(&project.config().database_path()).unwrap();
    let audit = store.audit_log(10).unwrap();
    let refused: Vec<(&str, &str)> = audit.iter().map(|a| (a.command.as_str(), a.outcome.as_str())).collect();
    assert_eq!(refused.len(), 4, "{audit:#?}");
    assert_eq!(
        refused[0],
        (
            "qa commission",
            "refused: unknown environment 'qa'; configured: sandbox, staging"
        )
    );
    assert!(
        refused[1].0.starts_with("aaaa") && refused[1].0.chars().count() <= 500,
        "{:?}",
        refused[1]
    );
    assert!(
        refused[1].1.starts_with("malformed: invalid environment name"),
        "{:?}",
        refused[1]
    );
    assert_eq!(refused[3].0, "Prod! commission");
    assert!(
        refused[3].1.starts_with("malformed: invalid environment name 'Prod!'"),
        "{:?}",
        refused[3]
    );
    assert!(audit.iter().all(|a| a.platform == "cli"), "{audit:#?}");
}

#[tokio::test]
async fn malformed_template_json() {
    let fake = FakeAws::start().await;
    let (project, dir) = broken_formations(&fake, |d| {
        replace_in(&d.join("front.json"), "\"Resources\": {", "\"Resources\": {,");
    });
    let line = line_of(&dir.path().join("front.json"), "\"Resources\": {,");

    let (code, stderr) = argos(&project.config_path, &["staging", "commission"]).await;

    assert_eq!(code, 2, "{stderr}");
    let msg = error_line(&stderr);
    let file = dir.path().join("front.json");
    assert!(msg.starts_with(&format!("{}:{line}:", file.display())), "{msg}");
    // The library API says the same, and so does a plan.
    let engine = project.engine().await;
    let rec = Recorder::new(&engine, "staging", None);
    let err = engine::plan(&rec.ctx, &Default::default()).await.expect_err("broken");
    assert!(matches!(err, Error::Template(_)), "{err:?}");
    assert_eq!(err.to_string(), msg);
    assert_no_calls(&fake);
}

#[tokio::test]
async fn duplicate_key_inside_one_template() {
    let fake = FakeAws::start().await;
    let (project, dir) = broken_formations(&fake, |d| {
        // A second ApiSecurityGroup in the same file: JSON parsers keep the last one silently.
        replace_in(
            &d.join("api.json"),
            "\"Resources\": {",
            "\"Resources\": {\n    \"ApiSecurityGroup\": {\"Type\": \"AWS::EC2::SecurityGroup\", \"Properties\": {\"GroupDescription\": \"shadow\"}},",
        );
    });

    let (code, stderr) = argos(&project.config_path, &["staging", "commission"]).await;

    assert_eq!(code, 2, "{stderr}");
    let msg = error_line(&stderr);
    assert!(
        msg.contains(&dir.path().join("api.json").display().to_string()),
        "{msg}"
    );
    assert!(msg.contains("ApiSecurityGroup"), "{msg}");
    assert_no_calls(&fake);
}

#[tokio::test]
async fn logical_id_clash_across_files_names_both() {
    let fake = FakeAws::start().await;
    let (project, dir) = broken_formations(&fake, |d| {
        replace_in(
            &d.join("front.json"),
            "\"Resources\": {",
            "\"Resources\": {\n    \"ApiSecurityGroup\": {\"Type\": \"AWS::EC2::SecurityGroup\", \"Properties\": {\"GroupDescription\": \"clash\"}},",
        );
    });

    let (code, stderr) = argos(&project.config_path, &["staging", "commission"]).await;

    assert_eq!(code, 2, "{stderr}");
    let msg = error_line(&stderr);
    assert!(
        msg.starts_with("logical id 'ApiSecurityGroup' is defined twice"),
        "{msg}"
    );
    for f in ["api.json", "front.json"] {
        assert!(msg.contains(&dir.path().join(f).display().to_string()), "{f}: {msg}");
    }
    assert_no_calls(&fake);
}

#[tokio::test]
async fn dangling_ref_is_refused() {
    let fake = FakeAws::start().await;
    let (project, dir) = broken_formations(&fake, |d| {
        replace_in(&d.join("api.json"), "\"Ref\": \"VpcId\"", "\"Ref\": \"VpcIdd\"");
    });

    let (code, stderr) = argos(&project.config_path, &["staging", "plan"]).await;

    assert_eq!(code, 2, "{stderr}");
    let msg = error_line(&stderr);
    assert!(
        msg.starts_with(&dir.path().join("api.json").display().to_string()),
        "{msg}"
    );
    assert!(msg.contains("VpcIdd"), "{msg}");
    assert_no_calls(&fake);
}

#[tokio::test]
async fn missing_key_file_with_ssh_connection() {
    let fake = FakeAws::start().await;
    let keys = tempfile::tempdir().unwrap();
    let project = TestProject::with_paths(&fake.endpoint_url(), "", &format!("  keys: {}", keys.path().display()));
    let yaml = std::fs::read_to_string(&project.config_path).unwrap();
    assert!(yaml.contains("  connection: local\n"));
    std::fs::write(
        &project.config_path,
        yaml.replace("  connection: local\n", "  connection: ssh\n"),
    )
    .unwrap();
    let key = keys.path().join("argos.pem");

    for command in ["commission", "deploy"] {
        let (code, stderr) = argos(&project.config_path, &["staging", command]).await;
        assert_eq!(code, 2, "{command}: {stderr}");
        assert_eq!(
            error_line(&stderr),
            format!(
                "SSH key {} is missing: put the private key of the EC2 key pair there (see keys/README.md)",
                key.display()
            )
        );
    }
    // A key readable by others is refused too.
    std::fs::write(&key, "-----BEGIN OPENSSH PRIVATE KEY-----\n").unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let (code, stderr) = argos(&project.config_path, &["staging", "commission"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(error_line(&stderr).contains("has mode 644; it must be 600"), "{stderr}");
    assert_no_calls(&fake);
}

#[tokio::test]
async fn unknown_config_key_names_file_line_and_key() {
    let fake = FakeAws::start().await;
    let project = TestProject::new(&fake.endpoint_url(), "bogus_setting: 1\n");
    let line = line_of(&project.config_path, "bogus_setting");

    let (code, stderr) = argos(&project.config_path, &["staging", "status"]).await;

    assert_eq!(code, 2, "{stderr}");
    let msg = error_line(&stderr);
    let at = format!("{}:{line}:", project.config_path.display());
    assert!(msg.starts_with(&at), "{msg}");
    assert!(msg.contains("key `bogus_setting`"), "{msg}");
    assert!(msg.contains("unknown field"), "{msg}");
    // The library's loader gives the same structured error.
    let err = argos::config::Config::load(&project.config_path).expect_err("unknown key");
    assert_eq!(
        (err.line, err.key.as_deref()),
        (Some(line as u64), Some("bogus_setting"))
    );
    assert_no_calls(&fake);
}

#[tokio::test]
async fn wrong_type_in_config() {
    let fake = FakeAws::start().await;
    let project = TestProject::new(&fake.endpoint_url(), "");
    let yaml = std::fs::read_to_string(&project.config_path).unwrap();
    std::fs::write(
        &project.config_path,
        yaml.replace("poll_interval_ms: 40", "poll_interval_ms: fast"),
    )
    .unwrap();
    let line = line_of(&project.config_path, "poll_interval_ms: fast");

    let (code, stderr) = argos(&project.config_path, &["staging", "status"]).await;

    assert_eq!(code, 2, "{stderr}");
    let msg = error_line(&stderr);
    assert!(
        msg.starts_with(&format!("{}:{line}:", project.config_path.display())),
        "{msg}"
    );
    assert!(msg.contains("poll_interval_ms"), "{msg}");
    assert_no_calls(&fake);
}

#[tokio::test]
async fn missing_config_file() {
    let fake = FakeAws::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("nowhere.yaml");

    let (code, stderr) = argos(&path, &["staging", "status"]).await;

    assert_eq!(code, 2, "{stderr}");
    let msg = error_line(&stderr);
    assert!(
        msg.starts_with(&format!("{}: cannot read the config file:", path.display())),
        "{msg}"
    );
    let (code, _) = argos(&path, &["check"]).await;
    assert_eq!(code, 2);
    assert_no_calls(&fake);
}

#[tokio::test]
async fn cli_quotes_input_short_and_escaped() {
    let fake = FakeAws::start().await;
    let project = TestProject::new(&fake.endpoint_url(), "");
    let long = "a".repeat(100_000);
    let bell = format!("{long}\x07");
    let cases: [(Vec<&str>, String); 4] = [
        (vec![&long], format!("unknown command '{}…'", "a".repeat(59))),
        (
            vec!["staging", "\x1b[2J\x1b[H"],
            "unknown command '\\x1b[2J\\x1b[H'".into(),
        ),
        (vec!["help", "\x1b[2J"], "no help for '\\x1b[2J'".into()),
        (
            vec!["staging", "deploy", &bell],
            format!("'{}…' is not a role name", "a".repeat(59)),
        ),
    ];
    for (args, want) in cases {
        let (code, stderr) = argos(&project.config_path, &args).await;
        assert_eq!(code, 2, "{stderr}");
        assert_eq!(
            stderr.lines().next(),
            Some(format!("error: {want}").as_str()),
            "{stderr}"
        );
        assert!(
            stderr.chars().count() < 300,
            "{} chars: {stderr}",
            stderr.chars().count()
        );
        assert!(!stderr.contains(['\x1b', '\x07']), "{stderr:?}");
    }
    assert_no_calls(&fake);
}

#[tokio::test]
async fn cli_refuses_an_unknown_role_before_a_job_exists() {
    let fake = FakeAws::start().await;
    let project = TestProject::new(&fake.endpoint_url(), "");

    let (code, stderr) = argos(&project.config_path, &["staging", "deploy", "api", "nosuchrole"]).await;

    assert_eq!(code, 2, "{stderr}");
    assert_eq!(
        error_line(&stderr),
        "unknown role 'nosuchrole'; configured roles: knowledge, api, front, collector"
    );
    let (code, stderr) = argos(&project.config_path, &["staging", "deploy", "--roles", "web,db"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(
        error_line(&stderr),
        "unknown roles 'web', 'db'; configured roles: knowledge, api, front, collector"
    );
    // However many are typed, a few are named (found by tests/grammar_fuzz.rs: 300 names made
    // a reply longer than a chat message).
    let many: Vec<String> = (1..=300).map(|i| format!("r{i}")).collect();
    let mut args = vec!["staging", "deploy"];
    args.extend(many.iter().map(String::as_str));
    let (code, stderr) = argos(&project.config_path, &args).await;
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(
        error_line(&stderr),
        "unknown roles 'r1', 'r2', 'r3', 'r4', 'r5', and 295 more; configured roles: knowledge, api, front, collector"
    );
    let db = project.config().database_path();
    if db.exists() {
        let store = argos::store::Store::open(&db).unwrap();
        assert!(store.recent_jobs(10).unwrap().is_empty(), "no job row");
    }
    assert_no_calls(&fake);
}

#[tokio::test]
async fn cli_help_shows_the_grammar_and_each_command() {
    // Help needs no config.
    let nowhere = Path::new("/nonexistent/argos.yaml");
    let (code, all, _) = argos_output(nowhere, &["--help"]).await;
    assert_eq!(code, 0, "{all}");
    assert!(
        all.contains("Environment commands (argos <env> <command> [args]):"),
        "{all}"
    );
    for grammar in [
        "<env> commission [ref=<branch|tag|sha>]",
        "<env> deploy [roles...] [ref=<branch|tag|sha>]",
        "<env> update [Parameter=value...] [ref=<branch|tag|sha>] [--revert-drift]",
        "<env> rollback [to <job|sha|ref>]",
        "<env> history [n]",
        "<env> decommission",
        "envs",
        "help [command]",
    ] {
        assert!(all.contains(&format!("  {grammar}  ")), "{grammar}: {all}");
    }
    assert!(
        all.contains("In `argos console` and chat only: jobs, job <id>, cancel <id>"),
        "{all}"
    );
    let (code, help, _) = argos_output(nowhere, &["help"]).await;
    assert_eq!((code, help), (0, all), "`argos help` is `argos --help`");

    // One environment: every command on it.
    let (code, on_env, stderr) = argos_output(nowhere, &["staging", "--help"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        on_env.starts_with("Environment commands (argos <env> <command> [args]):\n  <env> commission "),
        "{on_env}"
    );

    // One command, three ways.
    let (code, deploy, stderr) = argos_output(nowhere, &["staging", "deploy", "--help"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        deploy.starts_with(
            "usage: argos <env> deploy [roles...] [ref=<branch|tag|sha>]\n\nrun the playbooks (all roles, or those named).\n"
        ),
        "{deploy}"
    );
    assert!(deploy.contains("`--roles a,b`"), "{deploy}");
    for other in [vec!["help", "deploy"], vec!["staging", "deploy", "api", "-h"]] {
        let (code, same, _) = argos_output(nowhere, &other).await;
        assert_eq!((code, &same), (0, &deploy), "{other:?}");
    }
    let (_, decommission, _) = argos_output(nowhere, &["help", "decommission"]).await;
    assert!(decommission.contains("`--yes` (-y) confirms instead"), "{decommission}");
    let (_, jobs, _) = argos_output(nowhere, &["jobs", "--help"]).await;
    assert!(jobs.starts_with("usage: argos jobs\n"), "{jobs}");
    assert!(
        jobs.contains("It runs in `argos console` or chat, where jobs live."),
        "{jobs}"
    );
    let (code, check, _) = argos_output(nowhere, &["help", "check"]).await;
    assert_eq!(code, 0);
    assert!(check.contains("Usage: argos check"), "{check}");

    let (code, stderr) = argos(nowhere, &["help", "deplyo"]).await;
    assert_eq!(code, 2);
    assert_eq!(
        stderr.lines().next(),
        Some("error: no help for 'deplyo'; did you mean 'deploy'?"),
        "{stderr}"
    );
}

/// Without `network.allowed_ssh_cidr`, `argos check` fails; commission, update and plan stop
/// before their first AWS call with the same words, not with CloudFormation's
/// `Missing parameter AllowedSshCidr` after a DescribeStacks, an image lookup and a CreateStack.
#[tokio::test]
async fn a_config_argos_check_fails_stops_commission_update_and_plan_before_aws() {
    let fake = FakeAws::start().await;
    let project = TestProject::new(&fake.endpoint_url(), "");
    replace_in(
        &project.config_path,
        &format!("network:\n  allowed_ssh_cidr: {}\n", support::SSH_CIDR),
        "",
    );
    let no_cidr = "no SSH CIDR (AllowedSshCidr has no default): set network.allowed_ssh_cidr to the addresses Ansible connects from, e.g. 203.0.113.7/32";
    let (code, stdout, _) = argos_output(&project.config_path, &["check"]).await;
    assert_eq!(code, 1, "{stdout}");
    for check in ["image build", "environment staging"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("FAIL {check:<16} {no_cidr}"))),
            "{check}: {stdout}"
        );
    }
    let (code, stderr) = argos(&project.config_path, &["staging", "commission"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(
        error_line(&stderr),
        format!("image build: {no_cidr}; environment staging: {no_cidr} (as `argos check` reports)")
    );
    for command in ["update", "plan"] {
        let (code, stderr) = argos(&project.config_path, &["staging", command]).await;
        assert_eq!(code, 2, "{command}: {stderr}");
        assert_eq!(
            error_line(&stderr),
            format!("environment staging: {no_cidr} (as `argos check` reports)"),
            "{command}"
        );
    }
    assert_no_calls(&fake);
}
