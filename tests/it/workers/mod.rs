//! Workers that configure themselves at launch: the lifecycle hooks answered on the scripted
//! fake AWS (which holds a new worker in `Pending:Wait`, as moto does not) with the real
//! `ansible-playbook` on local-connection hosts, `scale` end to end, and on moto the group and
//! its hooks after a commission.
use crate::support;

mod launch;
mod moto;
mod scale;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use argos::bot::port::ChatEvent;
use argos::bot::Bot;
use argos::command::{Action, Version};
use argos::permissions::Identity;
use argos::store::{JobRecord, LeaseSettings, NewJob, StartOutcome, Store};
use support::chat::{Posted, RecordingPort};
use support::fake_aws::{Ec2Image, FakeAws};
use support::TestProject;

pub const STACK: &str = "argos-staging";
pub const GROUP: &str = "argos-staging-WorkerAutoScalingGroup-1A2B3C4D5E6F";
pub const IMAGE_ID: &str = "ami-0a1b2c3d4e5f60718";
/// The commit the last good deploy of staging recorded.
pub const DEPLOYED: &str = "4f2a9c1e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a39";
pub const LONG: Duration = Duration::from_secs(60);

const CONFIG: &str = r#"
defaults:
  announce: "console:ops"
chat:
  commands_per_minute: 120
  command_burst: 50
permissions:
  roles:
    admins: { console_users: [alice] }
    updaters: { console_users: [uma] }
    deployers: { console_users: [bob] }
  rules:
    - role: admins
      environments: ["*"]
      actions: ["*"]
    - role: updaters
      environments: [staging]
      actions: [update, status]
    - role: deployers
      environments: [staging]
      actions: [deploy, status]
approvals:
  policies:
    - environments: ["*"]
      actions: ["*"]
      approvers: 0
"#;

/// The worker playbook the tests run for real (local connection): it waits `worker_sleep`
/// seconds, fails when `worker_fail` is set, and records the commit it was given in
/// `<sandbox_dir>/<inventory host>.configured`. The drain playbook records the drain.
const WORKER_PLAYBOOK: &str = r#"---
- name: Configure a worker (test)
  hosts: worker
  gather_facts: false
  tasks:
    - name: Take the time a real configuration takes
      ansible.builtin.wait_for:
        timeout: "{{ worker_sleep | default(0) | int }}"
      when: (worker_sleep | default(0) | int) > 0
    - name: Check the settings
      ansible.builtin.fail:
        msg: "the worker settings are incomplete"
      when: (worker_fail | default('')) != ''
    - name: Record the configuration
      ansible.builtin.lineinfile:
        path: "{{ sandbox_dir }}/{{ inventory_hostname }}.configured"
        line: "{{ app_commit | default('none') }}"
        create: true
"#;

const DRAIN_PLAYBOOK: &str = r#"---
- name: Drain a worker (test)
  hosts: worker
  gather_facts: false
  tasks:
    - name: Stop taking tasks
      ansible.builtin.lineinfile:
        path: "{{ sandbox_dir }}/{{ inventory_hostname }}.drained"
        line: "drained"
        create: true
"#;

/// The fake, the project (its own playbooks, `extra_vars` added, the lookout off: each test
/// runs its rounds) and the staging stack with a worker group that has both hooks.
pub async fn world(extra_vars: &[(&str, &str)], extra_yaml: &str) -> (FakeAws, TestProject) {
    let fake = FakeAws::start().await;
    fake.set_time_scale(200.0);
    fake.set_default_vpc(
        "vpc-0default000000001",
        "172.31.0.0/16",
        &[("subnet-0aaa1111bbbb2222c", "us-east-1a")],
    );
    fake.add_image(Ec2Image::owned(IMAGE_ID, "argos-image", &[("App", "argos")]));
    let yaml =
        format!("{CONFIG}workers:\n  poll_secs: 0\n  heartbeat_secs: 1\n  drain_playbook: worker-drain\n{extra_yaml}");
    let project = TestProject::new(&fake.endpoint_url(), &yaml);
    let playbooks = project.dir.path().join("playbooks");
    std::fs::create_dir_all(&playbooks).unwrap();
    std::fs::write(playbooks.join("worker.yml"), WORKER_PLAYBOOK).unwrap();
    std::fs::write(playbooks.join("worker-drain.yml"), DRAIN_PLAYBOOK).unwrap();
    std::fs::create_dir_all(project.hosts_dir()).unwrap();
    let mut config = std::fs::read_to_string(&project.config_path).unwrap();
    config = config.replacen(
        &format!("playbooks: {}", support::TEST_PLAYBOOKS),
        &format!("playbooks: {}", playbooks.display()),
        1,
    );
    for (k, v) in extra_vars {
        config = config.replacen("  extra_vars:\n", &format!("  extra_vars:\n    {k}: \"{v}\"\n"), 1);
    }
    std::fs::write(&project.config_path, config).unwrap();
    let engine = project.engine().await;
    support::add_staging_hosts(&fake, &[]);
    support::add_staging_stack(
        &fake,
        &engine,
        IMAGE_ID,
        &[("WorkerCount", "1"), ("EnableBroker", "true")],
        &[("WorkerAutoScalingGroup", "AWS::AutoScaling::AutoScalingGroup")],
    );
    fake.add_worker_group(STACK, "staging", GROUP, true);
    (fake, project)
}

/// A bot on the project's store with a recording console port.
pub async fn bot(project: &TestProject) -> (Bot, Arc<RecordingPort>) {
    let store = Store::open(&project.config().database_path()).unwrap();
    let bot = Bot::new(project.engine().await, store);
    let port = RecordingPort::new();
    bot.add_port(port.clone());
    (bot, port)
}

/// Records a finished, good deploy of staging at [`DEPLOYED`]: the commit a new worker gets.
pub fn record_deploy(store: &Store) {
    let action = Action::Deploy {
        roles: vec![],
        version: Version {
            git_ref: Some("main".into()),
            commit: Some(DEPLOYED.into()),
        },
    };
    let job = new_job("deploy", &action.stored_args(), "alice");
    let StartOutcome::Started { id, token } = store.start_job(&job, "earlier", lease()).unwrap() else {
        panic!("staging is free");
    };
    store
        .finish_and_release(id, token, argos::store::JobState::Succeeded, "deployed")
        .unwrap();
}

pub fn new_job(verb: &str, args: &str, who: &str) -> NewJob {
    NewJob {
        requester_id: who.into(),
        requester_name: who.into(),
        platform: argos::address::Surface::CONSOLE,
        channel: "ops".into(),
        env: "staging".into(),
        action: verb.into(),
        args: args.into(),
        person: format!("console:{who}"),
        break_glass: None,
    }
}

pub fn lease() -> LeaseSettings {
    LeaseSettings {
        lease: Duration::from_millis(1000),
        heartbeat: Duration::from_millis(200),
    }
}

/// Waits until job `id` has ended; returns it.
pub async fn ended(store: &Store, id: u64) -> JobRecord {
    support::replicas::poll_until(&format!("job #{id} to end"), LONG, || {
        store.job(id).ok().flatten().filter(|j| j.state.is_finished())
    })
    .await
}

/// What the worker playbook recorded on `instance` (none: it never ran there).
pub fn configured(project: &TestProject, instance: &str) -> Option<String> {
    std::fs::read_to_string(host_file(project, instance, "configured")).ok()
}

pub fn host_file(project: &TestProject, instance: &str, what: &str) -> PathBuf {
    project
        .hosts_dir()
        .join(format!("argos-staging-worker-{instance}.{what}"))
}

/// Texts sent to the console's channels.
pub fn sent(port: &RecordingPort) -> Vec<String> {
    port.posted()
        .into_iter()
        .filter_map(|p| match p {
            Posted::Sent { text, .. } => Some(text),
            Posted::Edited { .. } => None,
        })
        .collect()
}

pub fn said(name: &str, text: &str) -> ChatEvent {
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
