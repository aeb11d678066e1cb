//! Ansible over real SSH: a loopback sshd from the harness (`tests/it/support/sshd.rs`), the
//! client key in the test's `keys/` (mode 0600), host keys recorded per environment and
//! checked. Deploys go through the scripted fake AWS with hosts at 127.0.0.1; the bake goes
//! through moto with the build instance's private address in a 127.0.0.0/24 subnet. All
//! traffic stays on loopback.
use crate::support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use argos::ansible::{self, ssh::SshOptions, PlaybookRun};
use argos::cloud::ec2::Params;
use argos::engine::{self, Engine};
use argos::error::Error;
use argos::progress::{Progress, ProgressTx};
use argos::redact::Redactor;
use support::fake_aws::{Ec2Instance, FakeAws};
use support::sshd::Sshd;
use support::{Recorder, TestProject};
use tokio_util::sync::CancellationToken;

const IMAGE_ID: &str = "ami-0a1b2c3d4e5f60718";
const API_ID: &str = "i-0aaaa1111bbbb2222";
const API_HOST: &str = "argos-staging-api-i-0aaaa1111bbbb2222";

/// Writes where the run came from: `$SSH_CONNECTION` is set only in a session sshd opened.
const PLAYBOOK: &str = r#"- name: Prove the run went over SSH
  hosts: all
  gather_facts: false
  tasks:
    - name: Record the SSH connection
      ansible.builtin.shell: 'printf "%s" "$SSH_CONNECTION" > {{ out }}/{{ inventory_hostname }}.ssh'
      changed_when: true
"#;

/// A project that reaches its hosts over SSH on `port` as the harness's user, with the
/// harness's keys folder and playbooks of its own (`api.yml`, `image.yml`). `paths` and
/// `network` add keys under those sections.
fn ssh_project(endpoint: &str, sshd: &Sshd, port: u16, paths: &str, network: &str) -> TestProject {
    let project = TestProject::with_paths(endpoint, "", &format!("  keys: {}\n{paths}", sshd.keys.display()));
    let dir = project.dir.path();
    let playbooks = dir.join("playbooks");
    let out = dir.join("out");
    std::fs::create_dir_all(&playbooks).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    for role in ["api", "image"] {
        std::fs::write(playbooks.join(format!("{role}.yml")), PLAYBOOK).unwrap();
    }
    // The sandbox group_vars, logging in as whoever runs the tests (the sshd's only user).
    let vars = std::fs::read_to_string(support::repo().join("config/sandbox/group_vars.yml")).unwrap();
    let vars = vars.replace("instance_user: ubuntu", &format!("instance_user: {}", sshd.user));
    std::fs::write(dir.join("group_vars.yml"), vars).unwrap();

    let yaml = std::fs::read_to_string(&project.config_path).unwrap();
    let yaml = yaml
        .replacen(
            "  group_vars: config/sandbox/group_vars.yml",
            &format!("  group_vars: {}", dir.join("group_vars.yml").display()),
            1,
        )
        .replacen(
            &format!("  playbooks: {}", support::TEST_PLAYBOOKS),
            &format!("  playbooks: {}", playbooks.display()),
            1,
        )
        .replacen(
            "  connection: local",
            &format!("  connection: ssh\n  ssh_port: {port}\n  roles: [api]"),
            1,
        )
        .replacen(
            "  extra_vars:\n",
            &format!("  extra_vars:\n    out: {}\n", out.display()),
            1,
        )
        .replacen("network:\n", &format!("network:\n{network}"), 1)
        .replacen("timeouts:\n", "timeouts:\n  ssh_ready_secs: 30\n", 1);
    std::fs::write(&project.config_path, yaml).unwrap();
    project
}

fn marker(project: &TestProject, host: &str) -> PathBuf {
    project.dir.path().join("out").join(format!("{host}.ssh"))
}

fn known_hosts(project: &TestProject, scope: &str) -> PathBuf {
    project
        .dir
        .path()
        .join("state/ssh")
        .join(format!("known_hosts.{scope}"))
}

/// The fake AWS with staging's stack and one running api host at 127.0.0.1.
async fn fake_with_api_host() -> FakeAws {
    let fake = FakeAws::start().await;
    fake.set_time_scale(200.0);
    let mut host = Ec2Instance::running(
        API_ID,
        &[
            ("App", "argos"),
            ("Env", "staging"),
            ("Group", "api"),
            ("Name", "argos-staging-api"),
        ],
    );
    host.private_ip = Some("127.0.0.1".into());
    host.public_ip = None;
    fake.add_instance(host);
    fake.set_outputs(
        "argos-staging",
        &[
            ("DatabaseHost", "db.internal"),
            ("DatabasePort", "5432"),
            ("KnowledgeHost", ""),
        ],
    );
    fake
}

async fn deploy_api(engine: &Engine) -> Result<argos::engine::Summary, Error> {
    let rec = Recorder::new(engine, "staging", None);
    engine::deploy(&rec.ctx, &["api".to_string()], &Default::default()).await
}

/// (a) A deploy's playbook runs over real SSH, with the key from `keys/`, and the host key
/// is recorded under the instance id in the environment's own known_hosts file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_runs_its_playbook_over_real_ssh() {
    let sshd = Sshd::start().await;
    let fake = fake_with_api_host().await;
    let project = ssh_project(&fake.endpoint_url(), &sshd, sshd.port, "", "");
    let engine = project.engine().await;
    support::add_staging_stack(&fake, &engine, IMAGE_ID, &[], &[]);

    let summary = deploy_api(&engine)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
    assert_eq!(summary.hosts, [API_HOST]);
    let session = std::fs::read_to_string(marker(&project, API_HOST)).expect("the task ran");
    let fields: Vec<&str> = session.split_whitespace().collect();
    assert_eq!(fields.len(), 4, "SSH_CONNECTION={session}");
    assert_eq!(fields[0], "127.0.0.1");
    assert_eq!(fields[2..], ["127.0.0.1", &sshd.port.to_string()]);
    assert!(sshd.log().contains("Accepted publickey for"), "{}", sshd.log());

    let recorded = std::fs::read_to_string(known_hosts(&project, "staging")).unwrap();
    assert!(
        recorded
            .lines()
            .any(|l| l.starts_with(&format!("{API_ID} ssh-ed25519 "))),
        "{recorded}"
    );
    let mode = std::fs::metadata(known_hosts(&project, "staging"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

/// (e) The same instance answering with another host key is refused, with the remedy, and
/// no task runs on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_host_key_is_refused() {
    let mut sshd = Sshd::start().await;
    let fake = fake_with_api_host().await;
    let project = ssh_project(&fake.endpoint_url(), &sshd, sshd.port, "", "");
    let engine = project.engine().await;
    support::add_staging_stack(&fake, &engine, IMAGE_ID, &[], &[]);
    deploy_api(&engine)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
    std::fs::remove_file(marker(&project, API_HOST)).unwrap();

    // Same address, same port, another key: to ssh, another machine.
    sshd.stop();
    sshd.new_host_key();
    sshd.launch().await;
    let err = deploy_api(&engine).await.expect_err("a changed host key is refused");
    let first = err.to_string().lines().next().unwrap_or_default().to_string();
    let file = known_hosts(&project, "staging");
    assert!(
        first.starts_with(&format!(
            "host {API_HOST} unreachable: its SSH host key is not the one recorded for {API_ID} in {}",
            file.display()
        )),
        "{first}"
    );
    assert!(
        first.contains(&format!("ssh-keygen -R {API_ID} -f {}", file.display())),
        "{first}"
    );
    assert!(!marker(&project, API_HOST).exists(), "nothing ran on the impostor");
}

/// (c) A closed port: the first line names the host, unreachable, within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_host_is_reported_first_and_quickly() {
    let sshd = Sshd::prepare(); // keys only: nothing listens on its port
    let fake = fake_with_api_host().await;
    let project = ssh_project(&fake.endpoint_url(), &sshd, sshd.port, "", "");
    let engine = project.engine().await;
    support::add_staging_stack(&fake, &engine, IMAGE_ID, &[], &[]);

    let started = Instant::now();
    let err = deploy_api(&engine).await.expect_err("nothing listens");
    let first = err.to_string().lines().next().unwrap_or_default().to_string();
    assert!(first.starts_with(&format!("host {API_HOST} unreachable: ")), "{first}");
    assert!(first.contains("Connection refused"), "{first}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}

/// (c) A port that accepts but never speaks SSH is given up after the connect timeout, not
/// waited on for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_host_times_out_within_the_connect_timeout() {
    let sshd = Sshd::prepare();
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let run = direct_run(dir.path(), &sshd, port, Duration::from_secs(2));
    let started = Instant::now();
    let err = ansible::run(
        &run,
        &Redactor::default(),
        &ProgressTx::discard(),
        &CancellationToken::new(),
    )
    .await
    .expect_err("no banner, no run");
    let first = err.to_string().lines().next().unwrap_or_default().to_string();
    assert!(first.starts_with("host web-1 unreachable: "), "{first}");
    assert!(first.to_lowercase().contains("timed out"), "{first}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    hold.abort();
}

/// A run built by hand (no engine) against 127.0.0.1:`port`, as the harness's user.
fn direct_run(dir: &Path, sshd: &Sshd, port: u16, connect_timeout: Duration) -> PlaybookRun {
    std::fs::write(dir.join("site.yml"), PLAYBOOK).unwrap();
    std::fs::create_dir_all(dir.join("out")).unwrap();
    let inventory = serde_json::json!({"all": {
        "vars": {"ansible_user": sshd.user, "ansible_port": port.to_string(),
                 "ansible_python_interpreter": support::repo().join(".venv/bin/python")},
        "children": {"web": {"hosts": {"web-1": {"ansible_host": "127.0.0.1"}}}}}});
    PlaybookRun {
        command: support::repo().join(".venv/bin/ansible-playbook"),
        playbook: dir.join("site.yml"),
        role: "web".into(),
        then: Vec::new(),
        inventory_json: inventory.to_string(),
        extra_vars: BTreeMap::from([("out".to_string(), dir.join("out").display().to_string())]),
        private_key: Some(sshd.client_key()),
        ssh: SshOptions {
            known_hosts: Some(dir.join("ssh/known_hosts.test")),
            connect_timeout,
        },
        timeout: Duration::from_secs(120),
        workdir: dir.join("work"),
        log: None,
    }
}

/// (d) A key that group or others can read is refused with the remedy before anything starts:
/// by the engine, and by the runner itself (its program here only leaves a trace if started).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readable_key_is_refused_before_ansible_starts() {
    let sshd = Sshd::start().await;
    let key = sshd.client_key();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();

    let fake = fake_with_api_host().await;
    let project = ssh_project(&fake.endpoint_url(), &sshd, sshd.port, "", "");
    let engine = project.engine().await;
    support::add_staging_stack(&fake, &engine, IMAGE_ID, &[], &[]);
    let err = deploy_api(&engine).await.expect_err("a 0644 key is refused");
    let msg = err.to_string();
    assert!(msg.contains(&key.display().to_string()) && msg.contains("644"), "{msg}");
    assert!(msg.contains("chmod 600"), "{msg}");
    assert!(!project.dir.path().join("state/runs").exists(), "no run was prepared");

    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("started");
    let fake_ansible = dir.path().join("ansible-playbook");
    std::fs::write(&fake_ansible, format!("#!/bin/sh\ntouch {}\n", trace.display())).unwrap();
    std::fs::set_permissions(&fake_ansible, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut run = direct_run(dir.path(), &sshd, sshd.port, Duration::from_secs(5));
    run.command = fake_ansible;
    let err = ansible::run(
        &run,
        &Redactor::default(),
        &ProgressTx::discard(),
        &CancellationToken::new(),
    )
    .await
    .expect_err("a 0644 key is refused");
    let first = err.to_string();
    assert!(
        first.starts_with(&format!(
            "SSH key {} has mode 644: group or others can read it",
            key.display()
        )),
        "{first}"
    );
    assert!(!trace.exists(), "ansible-playbook was not started");
    assert!(!sshd.log().contains("Accepted publickey"), "no login happened");
}

/// (b) The bake's readiness probe waits for sshd (started only after the probe began), then
/// the image playbook runs over SSH and the image is made. moto stands in for AWS; the build
/// instance's private address is 127.0.0.1 in a 127.0.0.0/24 subnet of a VPC made for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bake_waits_for_sshd_then_provisions_over_ssh() {
    let moto = support::moto::Moto::start().await;
    let mut sshd = Sshd::prepare();
    // The VPC first, with a plain engine; then the project that names it.
    let probe = TestProject::new(&moto.url, "");
    let probe_engine = probe.engine().await;
    let aws = &probe_engine.aws;
    let vpc = Params::new().set("CidrBlock", "127.0.0.0/16");
    let vpc = support::ec2::call(aws, "CreateVpc", vpc).await;
    let vpc_id = vpc.text(&["vpc", "vpcId"]).expect("a VPC id").to_string();
    let subnet = Params::new().set("VpcId", &vpc_id).set("CidrBlock", "127.0.0.0/24");
    let subnet = support::ec2::call(aws, "CreateSubnet", subnet).await;
    let subnet_id = subnet.text(&["subnet", "subnetId"]).expect("a subnet id").to_string();

    let formations = tempfile::tempdir().unwrap();
    copy_formations(formations.path());
    let project = ssh_project(
        &moto.url,
        &sshd,
        sshd.port,
        &format!("  formations: {}\n", formations.path().display()),
        &format!("  vpc_id: {vpc_id}\n  subnet_id: {subnet_id}\n"),
    );
    let engine = project.engine().await;
    let (image_template, _) = engine.templates().expect("templates");
    let mut rec = Recorder::new(&engine, "staging", None);
    let ctx = rec.ctx.clone();
    let bake = tokio::spawn(async move { engine::get_or_bake_image(&ctx, &image_template, &Default::default()).await });

    // Wait until the probe is under way, let it find nothing for a while, then start sshd.
    let mut events: Vec<Progress> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !events
        .iter()
        .any(|p| matches!(p, Progress::Step { name, .. } if name == "wait for ssh"))
    {
        assert!(Instant::now() < deadline && !bake.is_finished(), "no probe: {events:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        events.extend(rec.events());
    }
    let probing = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!bake.is_finished(), "the probe waits while nothing listens");
    sshd.launch().await;
    let image = bake.await.unwrap().unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
    assert!(probing.elapsed() >= Duration::from_millis(1500));
    assert!(image.id.starts_with("ami-"), "{image:?}");
    events.extend(rec.events());
    let step = events
        .iter()
        .find_map(|p| match p {
            Progress::Step { name, detail } if name == "wait for ssh" => Some(detail.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(step, format!("127.0.0.1:{}", sshd.port));
    assert!(events
        .iter()
        .any(|p| matches!(p, Progress::Info { message } if message.starts_with("ssh answered after"))));

    // The image playbook ran in an SSH session, and the builder's key went to its own file.
    let out = project.dir.path().join("out");
    let sessions: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert!(
        sessions[0].ends_with(&format!("127.0.0.1 {}", sshd.port)),
        "{sessions:?}"
    );
    let recorded = std::fs::read_to_string(known_hosts(&project, "image")).unwrap();
    assert!(
        recorded.starts_with("i-"),
        "keyed by the build instance's id: {recorded}"
    );
    assert!(!known_hosts(&project, "staging").exists());
}

/// The repository's templates, with the build instance given the private address 127.0.0.1.
fn copy_formations(to: &Path) {
    let from = support::repo().join("formations");
    for e in std::fs::read_dir(&from).unwrap().flatten() {
        if e.path().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
    let path = to.join("image.json");
    let mut t: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let resources = t["Resources"].as_object_mut().unwrap();
    let instance = resources
        .values_mut()
        .find(|r| r["Type"] == "AWS::EC2::Instance")
        .expect("image.json has an instance");
    instance["Properties"]["PrivateIpAddress"] = "127.0.0.1".into();
    std::fs::write(&path, serde_json::to_string_pretty(&t).unwrap()).unwrap();
}
