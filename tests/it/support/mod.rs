//! Test harness shared by the integration tests: the local moto server, the scripted fake AWS
//! endpoint, and a throwaway project configuration that points at this repository's templates
//! and playbooks but keeps every file it writes in a temporary directory.

pub mod chat;
pub mod ec2;
pub mod fake_aws;
pub mod fake_discord;
pub mod fake_discord_limits;
pub mod fake_slack;
pub mod git_daemon;
pub mod http_server;
pub mod moto;
pub mod moto_iam;
pub mod postgres;
pub mod replicas;
pub mod sshd;
pub mod world;

use std::path::{Path, PathBuf};

use argos::config::Config;
use argos::engine::{Ctx, Engine};
use argos::progress::{Progress, ProgressTx};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The SSH CIDR every test project allows (the templates have no default).
pub const SSH_CIDR: &str = "198.51.100.7/32";

/// The secrets the sandbox playbooks need; fixed values so redaction can be asserted.
pub const DB_PASSWORD: &str = "test-db-password-5f2c";
pub const APP_SECRET: &str = "test-app-secret-9d1e";

pub fn set_test_secrets() {
    std::env::set_var("ARGOS_DB_PASSWORD", DB_PASSWORD);
    std::env::set_var("ARGOS_APP_SECRET_KEY", APP_SECRET);
}

/// The tests' default playbooks: the sandbox's plays, variables and checks with only the code
/// checkout and the deployed marker (why: tests/it/playbooks/README.md).
pub const TEST_PLAYBOOKS: &str = "tests/it/playbooks";
/// The sandbox playbooks, which render every file a real deploy writes.
pub const SANDBOX_PLAYBOOKS: &str = "config/sandbox/playbooks";

/// A temporary project: config file, state directory and sandbox host directory.
pub struct TestProject {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

impl TestProject {
    /// Writes a config that sends AWS calls to `endpoint` and runs the test playbooks
    /// ([`TEST_PLAYBOOKS`]) with the local connection. `extra` is appended to the YAML (top-level keys).
    pub fn new(endpoint: &str, extra: &str) -> TestProject {
        Self::with_paths(endpoint, extra, "")
    }

    /// Like [`TestProject::new`], with extra keys under `paths:` (e.g. another formations dir).
    pub fn with_paths(endpoint: &str, extra: &str, paths: &str) -> TestProject {
        Self::write(endpoint, extra, paths, None)
    }

    /// Like [`TestProject::new`], deploying only `roles` (`ansible.roles`; the product's default
    /// is four). Each role is one real `ansible-playbook` run per deploy, so a test that shows
    /// the same thing with fewer roles runs faster.
    pub fn with_roles(endpoint: &str, extra: &str, roles: &[&str]) -> TestProject {
        Self::write(endpoint, extra, "", Some(roles))
    }

    fn write(endpoint: &str, extra: &str, paths: &str, roles: Option<&[&str]>) -> TestProject {
        let roles = roles
            .map(|r| format!("  roles: [{}]\n", r.join(", ")))
            .unwrap_or_default();
        set_test_secrets();
        let dir = tempfile::tempdir().expect("temp dir");
        let root = repo();
        let state = dir.path().join("state");
        let hosts = dir.path().join("hosts");
        // The sandbox's group_vars: base_ami names an SSM parameter moto knows.
        let yaml = format!(
            r#"paths:
  root: {root}
  state: {state}
  group_vars: config/sandbox/group_vars.yml
{paths}
network:
  allowed_ssh_cidr: {SSH_CIDR}

aws:
  region: us-east-1
  endpoint_url: {endpoint}
  local_credentials: true
  retry_initial_backoff_ms: 5
  max_attempts: 4
  requests_per_second: 200
  burst: 50
store:
  lease_ms: 1000
  heartbeat_ms: 200
watch:
  poll_interval_ms: 40
  max_poll_interval_ms: 120
timeouts:
  stack_create_secs: 60
  stack_update_secs: 60
  stack_delete_secs: 60
  image_available_secs: 60
  change_set_secs: 30
  playbook_secs: 120
ansible:
  command: .venv/bin/ansible-playbook
  playbooks: {TEST_PLAYBOOKS}
  connection: local
  address: private
  python_interpreter: tests/it/support/module_python/python
  extra_vars:
    sandbox_dir: {hosts}
{roles}environments:
  staging: {{plain_http: true}}
  sandbox: {{plain_http: true}}
{extra}"#,
            root = root.display(),
            state = state.display(),
            hosts = hosts.display(),
        );
        let config_path = dir.path().join("argos.yaml");
        std::fs::write(&config_path, yaml).expect("write config");
        TestProject { dir, config_path }
    }

    /// Sets the store lease and heartbeat (the base config has 1000 ms and 200 ms, so tests of
    /// takeovers run fast). A test that takes nothing over may take a longer lease, so that a
    /// heartbeat held up a second on a loaded machine does not cost it its own job.
    pub fn set_lease(&self, lease_ms: u64, heartbeat_ms: u64) {
        let yaml = std::fs::read_to_string(&self.config_path).expect("read config");
        let yaml = yaml
            .replacen("  lease_ms: 1000\n", &format!("  lease_ms: {lease_ms}\n"), 1)
            .replacen("  heartbeat_ms: 200\n", &format!("  heartbeat_ms: {heartbeat_ms}\n"), 1);
        std::fs::write(&self.config_path, yaml).expect("write config");
        assert_eq!(self.config().settings.store.lease_ms, lease_ms, "the lease is set");
    }

    /// Runs the sandbox playbooks ([`SANDBOX_PLAYBOOKS`]) instead of the test ones, for a test
    /// about what a deploy writes (settings, units, manifests).
    pub fn sandbox_playbooks(self) -> TestProject {
        let yaml = std::fs::read_to_string(&self.config_path).expect("read config");
        let from = format!("  playbooks: {TEST_PLAYBOOKS}\n");
        assert!(yaml.contains(&from), "the config names the test playbooks");
        let yaml = yaml.replacen(&from, &format!("  playbooks: {SANDBOX_PLAYBOOKS}\n"), 1);
        std::fs::write(&self.config_path, yaml).expect("write config");
        self
    }

    pub fn config(&self) -> Config {
        Config::load(&self.config_path).expect("test config loads")
    }

    pub fn hosts_dir(&self) -> PathBuf {
        self.dir.path().join("hosts")
    }

    pub async fn engine(&self) -> Engine {
        Engine::new(self.config()).await
    }
}

/// Running instances of staging for `roles`, tagged the way the stack tags them, and the stack
/// outputs deploy reads: what a deploy needs from AWS.
pub fn add_staging_hosts(fake: &fake_aws::FakeAws, roles: &[&str]) {
    for (i, role) in roles.iter().enumerate() {
        let name = format!("argos-staging-{role}");
        fake.add_instance(fake_aws::Ec2Instance::running(
            &format!("i-0{i:016x}"),
            &[("App", "argos"), ("Env", "staging"), ("Group", role), ("Name", &name)],
        ));
    }
    fake.set_outputs(
        "argos-staging",
        &[
            ("DatabaseHost", "db.internal"),
            ("DatabasePort", "5432"),
            ("KnowledgeHost", "172.31.9.9"),
        ],
    );
}

/// Creates the staging stack, already CREATE_COMPLETE, from the repository's merged template
/// with real-looking parameters (`extra` adds or overrides some).
pub fn add_staging_stack(
    fake: &fake_aws::FakeAws,
    engine: &Engine,
    image_id: &str,
    extra: &[(&str, &str)],
    resources: &[(&str, &str)],
) -> String {
    let (_, app) = engine.templates().expect("templates");
    let mut params = vec![
        ("AppName", "argos"),
        ("EnvName", "staging"),
        ("KeyName", "argos"),
        ("ImageId", image_id),
        ("VpcId", "vpc-0default000000001"),
        ("SubnetId", "subnet-0aaa1111bbbb2222c"),
        ("DatabasePassword", "old-secret"),
    ];
    params.extend_from_slice(extra);
    fake.add_stack("argos-staging", &app.body, &params, resources)
}

/// Gives `project`'s staging one worker (with the broker they need) and the broker's password
/// as a value in its own group_vars, not from the process's environment, which every test of
/// this binary shares.
pub fn enable_workers(project: &TestProject) {
    let config = std::fs::read_to_string(&project.config_path).unwrap();
    let with_workers = "  staging: {plain_http: true, parameters: { WorkerCount: \"1\", EnableBroker: \"true\" }}\n";
    let config = config.replacen("  staging: {plain_http: true}\n", with_workers, 1);
    assert!(config.contains(with_workers), "the test config's staging line moved");
    let vars = std::fs::read_to_string(repo().join("config/sandbox/group_vars.yml")).unwrap();
    let vars = vars.replacen(
        "broker_password: \"{{ lookup('env', 'ARGOS_BROKER_PASSWORD') }}\"",
        "broker_password: \"workers-test-broker\"",
        1,
    );
    let vars_path = project.dir.path().join("group_vars.yml");
    std::fs::write(&vars_path, vars).unwrap();
    let config = config.replacen(
        "group_vars: config/sandbox/group_vars.yml",
        &format!("group_vars: {}", vars_path.display()),
        1,
    );
    std::fs::write(&project.config_path, config).unwrap();
}

/// An operation context that records every progress event.
pub struct Recorder {
    pub ctx: Ctx,
    rx: UnboundedReceiver<Progress>,
}

impl Recorder {
    pub fn new(engine: &Engine, env: &str, log: Option<&Path>) -> Recorder {
        let (progress, rx) = ProgressTx::channel();
        let ctx = Ctx {
            engine: engine.clone(),
            target: engine.target(env).expect("valid env"),
            progress,
            cancel: CancellationToken::new(),
            log: log.map(Path::to_path_buf),
        };
        Recorder { ctx, rx }
    }

    /// Every event emitted so far.
    pub fn events(&mut self) -> Vec<Progress> {
        let mut out = Vec::new();
        while let Ok(p) = self.rx.try_recv() {
            out.push(p);
        }
        out
    }
}

/// One HTTP/1.1 GET to a loopback server (the health endpoints); returns the status code,
/// the content type and the body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: argos\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("an answer in time")
        .unwrap();
    let raw = String::from_utf8(raw).expect("utf-8");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .unwrap_or("")
        .to_string();
    (status, content_type, body.to_string())
}

/// The value of the series `name{labels}` in an OpenMetrics text, 0 when absent.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// `argos-staging` on the scripted fake with an update that takes 30 (scaled) seconds: a job
/// that is certainly still running while a test acts (a cancel, a queued job, a freeze).
pub fn slow_staging_update(fake: &fake_aws::FakeAws) {
    use fake_aws::{Change, Op, StackScript};
    const TEMPLATE: &str = r#"{"Resources": {"ApiEc2Instance": {"Type": "AWS::EC2::Instance", "Properties": {}}}}"#;
    fake.add_stack(
        "argos-staging",
        TEMPLATE,
        &[],
        &[("ApiEc2Instance", "AWS::EC2::Instance")],
    );
    fake.set_default_vpc("vpc-1", "172.31.0.0/16", &[("subnet-1", "us-east-1a")]);
    fake.set_change_set(
        "argos-staging",
        vec![Change::modify(
            "ApiEc2Instance",
            "AWS::EC2::Instance",
            "False",
            &["Properties"],
        )],
    );
    fake.script_next_for(
        "argos-staging",
        Op::ExecuteChangeSet,
        StackScript::update_with_cleanup(
            "argos-staging",
            &[("ApiEc2Instance", "AWS::EC2::Instance")],
            &[],
            &[30.0],
        ),
    );
}

/// Runs the `argos` binary on the project as the operating-system user `user`, with no input;
/// its output (stdout then stderr) and exit code.
pub async fn run_cli(project: &TestProject, user: &str, args: &[&str]) -> (String, i32) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_argos"))
        .arg("--config")
        .arg(&project.config_path)
        .args(args)
        .env("USER", user)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("argos runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (text, out.status.code().unwrap_or(-1))
}
