//! Health checks after a deploy (`ansible.health_checks`): real `ansible-playbook` runs the
//! generated `uri` checks on local-connection hosts against a real HTTP server on loopback,
//! with the staging stack and its instances on the scripted fake AWS.
use crate::support;

use std::sync::{Arc, Mutex};

use argos::command::{Action, Version};
use argos::config::Config;
use argos::engine;
use argos::error::Error;
use argos::progress::Progress;
use argos::store::{JobState, NewJob, Store};
use support::fake_aws::{Ec2Image, FakeAws};
use support::http_server::{HttpServer, Response};
use support::{Recorder, TestProject};

const IMAGE_ID: &str = "ami-0a1b2c3d4e5f60718";
const RESOURCES: &[(&str, &str)] = &[("ApiInstance", "AWS::EC2::Instance")];

/// The inventory name of the `i`-th role's host that `support::add_staging_hosts` makes.
fn host(role: &str, i: usize) -> String {
    format!("argos-staging-{role}-i-0{i:016x}")
}

/// A project deploying `roles`, with `checks` (YAML lines under `ansible.health_checks`).
fn project(fake: &FakeAws, roles: &[&str], checks: &str) -> TestProject {
    let p = TestProject::new(&fake.endpoint_url(), "");
    let yaml = std::fs::read_to_string(&p.config_path).unwrap();
    let yaml = yaml.replacen(
        "ansible:\n",
        &format!("ansible:\n  roles: [{}]\n  health_checks:\n{checks}", roles.join(", ")),
        1,
    );
    std::fs::write(&p.config_path, yaml).unwrap();
    p
}

/// A fake AWS with the staging stack and one running host per role.
async fn staging(roles: &[&str], checks: &str) -> (FakeAws, TestProject, Recorder) {
    let fake = FakeAws::start().await;
    support::add_staging_hosts(&fake, roles);
    let project = project(&fake, roles, checks);
    let engine = project.engine().await;
    support::add_staging_stack(&fake, &engine, IMAGE_ID, &[], RESOURCES);
    let rec = Recorder::new(&engine, "staging", None);
    (fake, project, rec)
}

/// A real HTTP server answering every request with `status`; it records the paths asked.
async fn server(status: u16) -> (HttpServer, Arc<Mutex<Vec<String>>>) {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = asked.clone();
    let server = HttpServer::start(move |req| {
        log.lock().unwrap().push(format!("{} {}", req.method, req.path));
        Response::text(status, "")
    })
    .await
    .unwrap();
    (server, asked)
}

/// One check of `port`, no retries (each test's failure comes at once).
fn check(port: u16, extra: &str) -> String {
    format!("    api: [{{ path: /healthz, port: {port}, retries: 0{extra} }}]\n")
}

fn steps(events: &[Progress]) -> Vec<String> {
    events
        .iter()
        .filter_map(|p| match p {
            Progress::Step { name, detail } => Some(format!("{name}: {detail}")),
            _ => None,
        })
        .collect()
}

fn unhealthy(err: Error) -> String {
    match err {
        Error::Unhealthy(text) => text,
        other => panic!("not an unhealthy error: {other:?}"),
    }
}

#[tokio::test]
async fn a_healthy_deploy_says_so() {
    let (server, asked) = server(200).await;
    let (_fake, _project, mut rec) = staging(&["api"], &check(server.addr().port(), "")).await;

    let summary = engine::deploy(&rec.ctx, &[], &Default::default())
        .await
        .expect("healthy deploy");

    assert!(
        summary.details.iter().any(|d| d == "api: healthy on 1 host(s)"),
        "{summary:?}"
    );
    assert_eq!(
        *asked.lock().unwrap(),
        ["GET /healthz"],
        "the check asked the server once"
    );
    let steps = steps(&rec.events());
    assert!(
        steps.contains(&"health: api on 1 host(s), 1 check(s)".to_string()),
        "{steps:?}"
    );
}

#[tokio::test]
async fn a_wrong_status_fails_the_job_and_suggests_rollback() {
    let (server, _) = server(500).await;
    let (_fake, project, rec) = staging(&["api"], &check(server.addr().port(), "")).await;

    let err = engine::deploy(&rec.ctx, &[], &Default::default())
        .await
        .expect_err("unhealthy");

    let text = unhealthy(err);
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        format!(
            "unhealthy: api {} GET :{}/healthz → 500 (expected 200)",
            host("api", 0),
            server.addr().port()
        )
    );
    assert_eq!(
        lines.next().unwrap(),
        "`staging rollback` redeploys the last good commit"
    );
    let runs = project.dir.path().join("state/runs");
    assert_eq!(
        std::fs::read_dir(&runs).map_or(0, |d| d.count()),
        0,
        "the check's work folder is gone"
    );
}

#[tokio::test]
async fn every_host_of_the_role_is_checked_and_every_unhealthy_one_named() {
    let (server, asked) = server(500).await;
    let (fake, _project, rec) = staging(&["api"], &check(server.addr().port(), "")).await;
    fake.add_instance(support::fake_aws::Ec2Instance::running(
        "i-0second0api000001",
        &[
            ("App", "argos"),
            ("Env", "staging"),
            ("Group", "api"),
            ("Name", "argos-staging-api"),
        ],
    ));

    let text = unhealthy(
        engine::deploy(&rec.ctx, &[], &Default::default())
            .await
            .expect_err("unhealthy"),
    );

    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[1], "`staging rollback` redeploys the last good commit");
    let check = format!("GET :{}/healthz → 500 (expected 200)", server.addr().port());
    let mut named = vec![
        lines[0].strip_prefix("unhealthy: api ").unwrap(),
        lines[2].strip_prefix("also unhealthy: api ").unwrap(),
    ];
    named.sort();
    assert_eq!(
        named,
        [
            format!("{} {check}", host("api", 0)),
            format!("argos-staging-api-i-0second0api000001 {check}")
        ]
    );
    assert_eq!(asked.lock().unwrap().len(), 2, "one request from each host");
}

/// A git repository at `dir` with two commits; their SHAs, oldest first.
fn two_commits(dir: &std::path::Path) -> (String, String) {
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    std::fs::create_dir_all(dir).unwrap();
    git(&["init", "-q"]);
    let mut shas = Vec::new();
    for n in ["one", "two"] {
        std::fs::write(dir.join("version.txt"), n).unwrap();
        git(&["add", "version.txt"]);
        git(&["commit", "-q", "-m", n]);
        shas.push(git(&["rev-parse", "HEAD"]));
    }
    let next = shas.pop().unwrap();
    (shas.pop().unwrap(), next)
}

#[tokio::test]
async fn the_way_back_names_the_last_good_deploy_on_record() {
    // A plain `rollback` goes back to the good commit before the last good one; after an
    // unhealthy deploy (not on record as good) the way back is the last good one itself.
    let (server, _) = server(500).await;
    let fake = FakeAws::start().await;
    support::add_staging_hosts(&fake, &["api"]);
    let project = project(&fake, &["api"], &check(server.addr().port(), ""));
    // The sandbox hosts check the deployed commit out for real: from this repository.
    let app = project.dir.path().join("app");
    let (good, next) = two_commits(&app);
    let yaml = std::fs::read_to_string(&project.config_path).unwrap();
    let yaml = yaml.replacen(
        "  extra_vars:\n",
        &format!("  extra_vars:\n    app_repo: {}\n", app.display()),
        1,
    );
    std::fs::write(&project.config_path, yaml).unwrap();
    let store = Store::in_memory().unwrap();
    let deployed = Action::Deploy {
        roles: Vec::new(),
        version: Version {
            git_ref: Some("v1".into()),
            commit: Some(good.clone()),
        },
    };
    let job = NewJob {
        requester_id: "alice".into(),
        requester_name: "alice".into(),
        platform: argos::address::Surface::CONSOLE,
        channel: "ops".into(),
        env: "staging".into(),
        action: "deploy".into(),
        args: deployed.stored_args(),
        person: String::new(),
        break_glass: None,
    };
    let id = store.insert_job(&job, JobState::Succeeded).unwrap();
    let engine = project.engine().await.with_store(store);
    support::add_staging_stack(&fake, &engine, IMAGE_ID, &[], RESOURCES);
    let rec = Recorder::new(&engine, "staging", None);
    let now = Version {
        git_ref: Some("v2".into()),
        commit: Some(next),
    };

    let text = unhealthy(engine::deploy(&rec.ctx, &[], &now).await.expect_err("unhealthy"));

    assert_eq!(
        text.lines().nth(1).unwrap(),
        format!(
            "`staging rollback to {id}` redeploys {}, the last good deploy (job #{id})",
            &good[..8]
        )
    );

    // Redeploying that same commit unhealthy: going back means the good one before it.
    let same = Version {
        git_ref: Some("v1".into()),
        commit: Some(good),
    };
    let text = unhealthy(engine::deploy(&rec.ctx, &[], &same).await.expect_err("unhealthy"));
    assert_eq!(
        text.lines().nth(1).unwrap(),
        "`staging rollback` redeploys the last good commit"
    );
}

#[tokio::test]
async fn a_closed_port_is_connection_refused() {
    // A port that was just free: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_fake, _project, rec) = staging(&["api"], &check(port, "")).await;

    let text = unhealthy(
        engine::deploy(&rec.ctx, &[], &Default::default())
            .await
            .expect_err("unhealthy"),
    );

    assert_eq!(
        text.lines().next().unwrap(),
        format!(
            "unhealthy: api {} GET :{port}/healthz → connection refused (expected 200)",
            host("api", 0)
        )
    );
}

#[tokio::test]
async fn a_hanging_service_times_out() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });
    let (_fake, _project, rec) = staging(&["api"], &check(port, ", timeout_secs: 1")).await;

    let started = std::time::Instant::now();
    let text = unhealthy(
        engine::deploy(&rec.ctx, &[], &Default::default())
            .await
            .expect_err("unhealthy"),
    );

    assert_eq!(
        text.lines().next().unwrap(),
        format!(
            "unhealthy: api {} GET :{port}/healthz → timed out after 1 s (expected 200)",
            host("api", 0)
        )
    );
    assert!(started.elapsed().as_secs() < 60, "{:?}", started.elapsed());
    held.abort();
}

#[tokio::test]
async fn retries_wait_for_a_service_that_comes_up() {
    // Fails twice (a service still starting), then answers 200.
    let asked = Arc::new(Mutex::new(0u32));
    let count = asked.clone();
    let server = HttpServer::start(move |_| {
        let mut n = count.lock().unwrap();
        *n += 1;
        Response::text(if *n <= 2 { 503 } else { 200 }, "")
    })
    .await
    .unwrap();
    let checks = format!(
        "    api: [{{ path: /healthz, port: {}, retries: 3, delay_secs: 1 }}]\n",
        server.addr().port()
    );
    let (_fake, _project, rec) = staging(&["api"], &checks).await;

    let summary = engine::deploy(&rec.ctx, &[], &Default::default())
        .await
        .expect("healthy on the third try");

    assert!(summary.details.iter().any(|d| d == "api: healthy on 1 host(s)"));
    assert_eq!(*asked.lock().unwrap(), 3);
}

#[tokio::test]
async fn a_role_without_checks_is_not_checked() {
    let (server, asked) = server(200).await;
    let (_fake, _project, mut rec) = staging(&["api", "front"], &check(server.addr().port(), "")).await;

    let summary = engine::deploy(&rec.ctx, &[], &Default::default())
        .await
        .expect("deploy");

    assert_eq!(
        summary
            .details
            .iter()
            .filter(|d| d.contains("healthy"))
            .collect::<Vec<_>>(),
        ["api: healthy on 1 host(s)"]
    );
    assert_eq!(asked.lock().unwrap().len(), 1, "only api's host asked");
    let health: Vec<String> = steps(&rec.events())
        .into_iter()
        .filter(|s| s.starts_with("health:"))
        .collect();
    assert_eq!(health, ["health: api on 1 host(s), 1 check(s)"]);

    // Deploying front alone checks nothing: api was not deployed.
    let summary = engine::deploy(&rec.ctx, &["front".to_string()], &Default::default())
        .await
        .expect("deploy");
    assert!(!summary.details.iter().any(|d| d.contains("healthy")), "{summary:?}");
    assert_eq!(asked.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn commission_checks_health_after_its_deploy() {
    let (server, _) = server(503).await;
    let fake = FakeAws::start().await;
    fake.set_time_scale(200.0);
    fake.set_default_vpc(
        "vpc-0default000000001",
        "172.31.0.0/16",
        &[("subnet-0aaa1111bbbb2222c", "us-east-1a")],
    );
    fake.add_image(Ec2Image::owned(IMAGE_ID, "argos-image", &[("App", "argos")]));
    support::add_staging_hosts(&fake, &["api"]);
    let project = project(&fake, &["api"], &check(server.addr().port(), ""));
    let engine = project.engine().await;
    let rec = Recorder::new(&engine, "staging", None);

    let text = unhealthy(
        engine::commission(&rec.ctx, &Default::default())
            .await
            .expect_err("unhealthy"),
    );

    assert_eq!(
        text.lines().next().unwrap(),
        format!(
            "unhealthy: api {} GET :{}/healthz → 503 (expected 200)",
            host("api", 0),
            server.addr().port()
        )
    );
}

/// The error of loading a test config whose `ansible.health_checks` is `checks`.
fn refused(checks: &str) -> String {
    let p = TestProject::new("http://127.0.0.1:9", "");
    let yaml = std::fs::read_to_string(&p.config_path).unwrap();
    let yaml = yaml.replacen(
        "ansible:\n",
        &format!("ansible:\n  roles: [api, front]\n  health_checks:\n{checks}"),
        1,
    );
    std::fs::write(&p.config_path, yaml).unwrap();
    Config::load(&p.config_path).unwrap_err().to_string()
}

#[test]
fn bad_checks_are_refused_naming_the_key() {
    let cases = [
        (
            "    worker: [{ path: /healthz }]\n",
            "key `ansible.health_checks.worker`: role 'worker' is not in ansible.roles (api, front)",
        ),
        (
            "    api: [{ path: healthz }]\n",
            "key `ansible.health_checks.api[0].path`: must start with '/'",
        ),
        (
            "    api: [{ path: '/x{{ 1 }}' }]\n",
            "key `ansible.health_checks.api[0].path`: may not contain '{'",
        ),
        (
            "    api: [{ path: /a }, { path: /b, status: 600 }]\n",
            "key `ansible.health_checks.api[1].status`: must be an HTTP status, 100 to 599",
        ),
        (
            "    api: [{ path: /a, timeout_secs: 0 }]\n",
            "key `ansible.health_checks.api[0].timeout_secs`: must be 1 to 3600 (s)",
        ),
        (
            "    api: [{ path: /a, port: 0 }]\n",
            "key `ansible.health_checks.api[0].port`: must be 1 to 65535",
        ),
        (
            "    api: [{ path: /a, timeout_secs: 30, retries: 2 }, { path: /b, timeout_secs: 30, retries: 0 }]\n",
            "key `ansible.health_checks.api`: these checks may take up to 124 s (every attempt timing out), longer than timeouts.playbook_secs (120 s)",
        ),
    ];
    for (checks, want) in cases {
        let e = refused(checks);
        assert!(e.contains(want), "{checks}: {e}");
    }
    // A key the check does not know is the parser's error, with its line.
    let e = refused("    api: [{ path: /a, expect: 200 }]\n");
    assert!(e.contains("expect"), "{e}");
}
