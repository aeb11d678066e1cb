//! After a deploy: each deployed role's HTTP checks (`ansible.health_checks`), run on the
//! role's own hosts through Ansible, so that they reach what the deploy reached (hosts in a
//! private subnet included) and ask the service on its loopback. A failed check fails the job
//! with `unhealthy: <role> <host> <check> → <what happened> (expected <status>)` and the way
//! back (`<env> rollback`).

use std::collections::BTreeMap;

use serde_json::json;

use crate::ansible;
use crate::cloud::instances::InstanceInfo;
use crate::command::{short_sha, Version};
use crate::config::HealthCheck;
use crate::engine::deploy::playbook_run;
use crate::engine::{versions, Ctx};
use crate::error::{Error, Result};
use crate::progress::{HostStatus, PlaybookEvent, Progress, ProgressTx};

/// The file name of a role's generated check playbook, and the role its progress is shown
/// under: `api-health`.
fn run_name(role: &str) -> String {
    format!("{role}-health")
}

/// Checks every role of `roles` that has checks, on its hosts among `running`, in the order
/// given; stops at the first unhealthy role. Returns one summary line per checked role.
/// `version` is what the deploy put there (the way back names what was there before).
pub(crate) async fn check_deployed(
    ctx: &Ctx,
    roles: &[String],
    running: &[InstanceInfo],
    version: &Version,
) -> Result<Vec<String>> {
    let configured = &ctx.config().settings.ansible.health_checks;
    let mut lines = Vec::new();
    for role in roles {
        let Some(checks) = configured.get(role).filter(|c| !c.is_empty()) else {
            continue;
        };
        let hosts: Vec<InstanceInfo> = running.iter().filter(|i| i.group() == role).cloned().collect();
        ctx.progress.step(
            "health",
            format!("{role} on {} host(s), {} check(s)", hosts.len(), checks.len()),
        );
        check_role(ctx, role, checks, &hosts, version).await?;
        lines.push(format!("{role}: healthy on {} host(s)", hosts.len()));
    }
    Ok(lines)
}

/// Runs one role's checks as a generated playbook in the run's private folder.
async fn check_role(
    ctx: &Ctx,
    role: &str,
    checks: &[HealthCheck],
    hosts: &[InstanceInfo],
    version: &Version,
) -> Result<()> {
    let name = run_name(role);
    let mut run = playbook_run(ctx, role, hosts, BTreeMap::new())?;
    run.role = name.clone();
    run.workdir = ansible::new_run_dir(&ctx.config().state_dir(), &name);
    run.playbook = run.workdir.join(format!("{name}.yml"));
    write_playbook(&run.workdir, &run.playbook, checks)?;

    // The run's events go on to the job as they come; the failed checks among them are kept,
    // because they say which host and which check, which the run's error text only paraphrases.
    let (tee, mut events) = ProgressTx::channel();
    let workdir = run.workdir.clone();
    let playbook = async move {
        let result = ansible::run(&run, &ctx.engine.redactor, &tee, &ctx.cancel).await;
        drop(tee); // ends the forwarding below
        result
    };
    let forward = async {
        let mut failed = Vec::new();
        while let Some(p) = events.recv().await {
            if let Progress::Playbook(PlaybookEvent::HostResult {
                task,
                host,
                status: HostStatus::Failed,
                message,
                ..
            }) = &p
            {
                failed.push((task.clone(), host.clone(), message.clone().unwrap_or_default()));
            }
            ctx.progress.emit(p);
        }
        failed
    };
    let (result, failed) = tokio::join!(playbook, forward);
    // `ansible::run` removes the folder; this is for a run refused before it started.
    let _ = std::fs::remove_dir_all(&workdir);
    let unhealthy: Vec<String> = failed
        .iter()
        .filter_map(|(task, host, message)| {
            let check = checks.iter().find(|c| task_name(c) == *task)?;
            Some(unhealthy_line(role, host, check, message))
        })
        .collect();
    match (result, unhealthy.split_first()) {
        (Err(Error::Playbook(_)), Some((first, others))) => {
            let mut text = format!("{first}\n{}", rollback_hint(ctx, version));
            for other in others {
                text.push_str(&format!("\nalso {other}"));
            }
            Err(Error::Unhealthy(text))
        }
        (result, _) => result.map(|_| ()),
    }
}

/// The way back after an unhealthy deploy: the last good deploy on record (what ran before
/// this one), named by its job so the hint says exactly what `rollback` will redeploy.
fn rollback_hint(ctx: &Ctx, version: &Version) -> String {
    let env = &ctx.target.env;
    let last_good = versions::current(&ctx.engine, env.as_str())
        .ok()
        .flatten()
        .and_then(|job| Some((job.id, job.sha?)));
    match last_good {
        Some((id, sha)) if version.commit.as_deref() != Some(sha.as_str()) => format!(
            "`{env} rollback to {id}` redeploys {}, the last good deploy (job #{id})",
            short_sha(&sha)
        ),
        _ => format!("`{env} rollback` redeploys the last good commit"),
    }
}

/// The task of one check, unique within a role's playbook; failures are matched back by it.
fn task_name(check: &HealthCheck) -> String {
    format!("{} (expected {})", check.label(), check.status)
}

/// `unhealthy: api argos-staging-api-i-0… GET :8000/healthz → 500 (expected 200)`.
fn unhealthy_line(role: &str, host: &str, check: &HealthCheck, message: &str) -> String {
    format!(
        "unhealthy: {role} {host} {} → {} (expected {})",
        check.label(),
        what_happened(message, check.timeout_secs),
        check.status
    )
}

/// What `ansible.builtin.uri` says went wrong, said shortly: the status the service answered,
/// `timed out after N s`, `connection refused`, or the module's own words.
///
/// The module's failures read `Status code was <n> and not [<expected>]: <detail>`, with
/// -1 when no answer came (then the detail says why: `Request failed: <urlopen error [Errno
/// 111] Connection refused>`, `Connection failure: timed out`).
fn what_happened(message: &str, timeout_secs: u64) -> String {
    let message = message.trim();
    let Some(rest) = message.strip_prefix("Status code was ") else {
        return message.lines().next().unwrap_or("failed").to_string();
    };
    let (code, detail) = rest.split_once(" and not ").unwrap_or((rest, ""));
    if let Ok(status) = code.trim().parse::<u16>() {
        return status.to_string();
    }
    // `[200]: Request failed: ...`: the expected codes are said elsewhere in the line.
    let detail = detail.split_once(": ").map_or(detail, |(_, d)| d).trim();
    let lower = detail.to_lowercase();
    if lower.contains("timed out") {
        format!("timed out after {timeout_secs} s")
    } else if lower.contains("connection refused") {
        "connection refused".to_string()
    } else if detail.is_empty() {
        "no answer".to_string()
    } else {
        detail.to_string()
    }
}

/// Writes the role's check playbook (JSON, which Ansible reads as YAML: no quoting to get
/// wrong). Each check is one `uri` task against the host's loopback; redirects are not
/// followed, so the status is the service's own answer.
fn write_playbook(dir: &std::path::Path, file: &std::path::Path, checks: &[HealthCheck]) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let io = |e: std::io::Error| Error::Io(format!("cannot write {}: {e}", file.display()));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    let tasks: Vec<serde_json::Value> = checks
        .iter()
        .map(|c| {
            json!({
                "name": task_name(c),
                "ansible.builtin.uri": {
                    "url": format!("http://127.0.0.1:{}{}", c.port, c.path),
                    "method": "GET",
                    "status_code": [c.status],
                    "timeout": c.timeout_secs,
                    "follow_redirects": "none",
                },
                "register": "argos_health",
                "until": "argos_health is succeeded",
                "retries": c.retries,
                "delay": c.delay_secs,
            })
        })
        .collect();
    let playbook = json!([{
        "name": "Health checks",
        "hosts": "all",
        "gather_facts": false,
        "tasks": tasks,
    }]);
    std::fs::write(file, serde_json::to_string_pretty(&playbook).expect("json")).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(port: u16, path: &str) -> HealthCheck {
        serde_saphyr::from_str(&format!("path: {path}\nport: {port}\ntimeout_secs: 3\n")).unwrap()
    }

    #[test]
    fn a_wrong_status_is_named() {
        let m = "Status code was 500 and not [200]: HTTP Error 500: Internal Server Error";
        assert_eq!(what_happened(m, 3), "500");
        assert_eq!(
            unhealthy_line("api", "web-1", &check(8000, "/healthz"), m),
            "unhealthy: api web-1 GET :8000/healthz → 500 (expected 200)"
        );
    }

    #[test]
    fn no_answer_says_why() {
        let refused =
            "Status code was -1 and not [200]: Request failed: <urlopen error [Errno 111] Connection refused>";
        assert_eq!(what_happened(refused, 3), "connection refused");
        let timed_out = "Status code was -1 and not [200]: Connection failure: timed out";
        assert_eq!(what_happened(timed_out, 3), "timed out after 3 s");
        let urlopen = "Status code was -1 and not [200]: Request failed: <urlopen error timed out>";
        assert_eq!(what_happened(urlopen, 7), "timed out after 7 s");
        let closed = "Status code was -1 and not [200]: Connection failure: connection was closed before a valid response was received: ''";
        assert_eq!(
            what_happened(closed, 3),
            "Connection failure: connection was closed before a valid response was received: ''"
        );
    }

    #[test]
    fn another_failure_is_passed_on() {
        assert_eq!(
            what_happened("MODULE FAILURE\nSee stdout/stderr for the exact error", 3),
            "MODULE FAILURE"
        );
    }
}
