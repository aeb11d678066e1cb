//! What the chat benchmarks share (`bot.rs` on Discord, `slack.rs` on Slack): each phase runs
//! in a child process of its own and prints `RESULT key\tvalue` lines, which the parent prints
//! as one table; percentiles and milliseconds; patching the generated test config; and the
//! 10-minute stack update both `chat` phases run, so their figures compare.

use std::future::Future;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::fake_aws::{Change, Ec2Image, Ec2Instance, FakeAws, Op, StackScript};
use crate::support::TestProject;

/// One figure of a phase, for the parent's table.
pub fn result(key: &str, value: impl std::fmt::Display) {
    println!("RESULT {key}\t{value}");
}

/// The `p` quantile (0..=1) of sorted durations, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Rewrites one line of the generated test config.
pub fn patch(project: &TestProject, from: &str, to: &str) {
    let yaml = std::fs::read_to_string(&project.config_path).expect("config");
    assert!(yaml.contains(from), "{from:?} not in the test config");
    std::fs::write(&project.config_path, yaml.replacen(from, to, 1)).expect("write config");
}

/// A 10-scenario-minute update: 20 resources one after another (security groups in seconds,
/// instances in one to two minutes), then 2 removed in cleanup: 47 stack events.
pub fn ten_minute_update(stack: &str) -> (StackScript, Vec<Change>) {
    let mut updated: Vec<(String, &str, f64)> = Vec::new();
    for i in 0..6 {
        updated.push((format!("SecurityGroup{i}"), "AWS::EC2::SecurityGroup", 3.0 + i as f64));
    }
    for (i, d) in [45.0, 60.0, 75.0, 90.0, 55.0, 70.0, 40.0, 85.0].iter().enumerate() {
        updated.push((format!("Instance{i}"), "AWS::EC2::Instance", *d));
    }
    for (i, d) in [30.0, 12.0, 8.0, 10.0, 6.0, 5.0].iter().enumerate() {
        updated.push((format!("Misc{i}"), "AWS::SSM::Parameter", *d));
    }
    let removed = [
        ("OldWorker", "AWS::EC2::Instance"),
        ("OldWorkerSecurityGroup", "AWS::EC2::SecurityGroup"),
    ];
    // Cleanup and the stack's own events take 4.5 s; the resources fill the rest of 600 s.
    let sum: f64 = updated.iter().map(|u| u.2).sum();
    let factor = (600.0 - 4.5) / sum;
    let resources: Vec<(&str, &str)> = updated.iter().map(|u| (u.0.as_str(), u.1)).collect();
    let durations: Vec<f64> = updated.iter().map(|u| u.2 * factor).collect();
    let script = StackScript::update_with_cleanup(stack, &resources, &removed, &durations);
    let mut changes: Vec<Change> = resources
        .iter()
        .map(|r| Change::modify(r.0, r.1, "False", &["Properties"]))
        .collect();
    changes.extend(removed.iter().map(|r| Change::remove(r.0, r.1)));
    (script, changes)
}

/// Runs one phase's work on a multi-thread runtime (logging to stderr when `RUST_LOG` is set),
/// then drops whatever is still running (jobs a phase left, the fakes' servers).
pub fn block_on<F: Future>(work: F) -> F::Output {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let out = rt.block_on(work);
    rt.shutdown_background();
    out
}

/// The benchmark binary: `--phase NAME` runs that phase here (`run`); without it, each of
/// `phases` runs in a child process of its own (a clean process for each, its memory its own),
/// and their figures are printed as one table headed `title`, then `targets`.
pub fn main(title: &str, phases: &[&str], targets: &str, run: fn(&str)) {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--phase") {
        run(args.get(i + 1).map(String::as_str).unwrap_or(""));
        return;
    }
    let exe = std::env::current_exe().expect("current exe");
    let mut rows: Vec<(String, String)> = Vec::new();
    for phase in phases {
        let started = Instant::now();
        let out = Command::new(&exe).args(["--phase", phase]).output().expect("run phase");
        if !out.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
            panic!("phase {phase} failed");
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some((k, v)) = line.strip_prefix("RESULT ").and_then(|l| l.split_once('\t')) {
                rows.push((k.to_string(), v.to_string()));
            }
        }
        rows.push((
            format!("({phase} took)"),
            format!("{:.1} s", started.elapsed().as_secs_f64()),
        ));
    }
    let width = rows.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    println!("\n{title:<width$}  value");
    println!("{}", "-".repeat(width + 20));
    for (k, v) in rows {
        println!("{k:<width$}  {v}");
    }
    println!("\n{targets}");
}

/// The 10-minute job's project: the config's default pacing (edits and the watcher's polls)
/// compressed `k` times, `chat_yaml` (the platform's section and permissions) added, one
/// role to deploy, and a 600 s stack-update timeout.
pub fn compressed_project(aws_endpoint: &str, chat_yaml: &str, k: u32) -> TestProject {
    let d = argos::config::ChatSettings::default();
    let extra = format!(
        "{chat_yaml}chat:\n  edit_interval_ms: {}\n  edit_burst: {}\n  edit_refill_secs: {}\n  edits_per_second: {}\n",
        d.edit_interval_ms / k as u64,
        d.edit_burst,
        (d.edit_refill_secs / k as u64).max(1),
        d.edits_per_second * k,
    );
    let project = TestProject::new(aws_endpoint, &extra);
    let w = argos::config::WatchSettings::default();
    patch(
        &project,
        "poll_interval_ms: 40",
        &format!("poll_interval_ms: {}", w.poll_interval_ms / k as u64),
    );
    patch(
        &project,
        "max_poll_interval_ms: 120",
        &format!("max_poll_interval_ms: {}", w.max_poll_interval_ms / k as u64),
    );
    patch(&project, "stack_update_secs: 60", "stack_update_secs: 600");
    patch(&project, "ansible:\n", "ansible:\n  roles: [api]\n");
    project
}

/// The staging app stack with one api host, and [`ten_minute_update`] scripted as its next
/// change set. Returns the scenario's length in seconds and its number of stack events.
pub fn stage_ten_minute_update(aws: &FakeAws) -> (f64, usize) {
    let stack = "argos-staging";
    aws.set_default_vpc("vpc-1", "172.31.0.0/16", &[("subnet-1", "us-east-1a")]);
    aws.add_image(Ec2Image::owned("ami-0123", "argos-image", &[("App", "argos")]));
    aws.add_stack(
        stack,
        TINY_TEMPLATE,
        &[],
        &[("WebSecurityGroup", "AWS::EC2::SecurityGroup")],
    );
    aws.add_instance(Ec2Instance::running(
        "i-0000000000000001",
        &[
            ("App", "argos"),
            ("Env", "staging"),
            ("Group", "api"),
            ("Name", "argos-staging-api"),
        ],
    ));
    aws.set_outputs(stack, &[("DatabaseHost", "db.internal"), ("DatabasePort", "5432")]);
    let (script, changes) = ten_minute_update(stack);
    // Scenario seconds until the last step, and how many steps.
    let last_step = script.steps.iter().map(|s| s.at).fold(0.0, f64::max);
    let staged = (last_step, script.steps.len());
    aws.set_change_set(stack, changes);
    aws.script_next_for(stack, Op::ExecuteChangeSet, script);
    staged
}

/// The smallest template the fake stack answers with.
pub const TINY_TEMPLATE: &str =
    r#"{"Resources":{"WebSecurityGroup":{"Type":"AWS::EC2::SecurityGroup","Properties":{"GroupDescription":"web"}}}}"#;
