//! Several roles in one run (a deploy): each role's progress and report of its own, in order,
//! and a failed role stops the run before the next role starts, while its own other hosts
//! finish its playbook (as when each role was a run of its own).
use super::*;

/// A run of roles `web` (hosts web-1, web-2) then `db` (db-1), each a playbook of its own.
fn two_roles(dir: &Path, web_tasks: &str, db_tasks: &str) -> PlaybookRun {
    let python = support::repo().join(".venv/bin/python");
    let group = |hosts: &[&str]| -> serde_json::Value {
        let hosts: serde_json::Map<String, serde_json::Value> = hosts
            .iter()
            .map(|h| (h.to_string(), serde_json::json!({"ansible_host": "127.0.0.1"})))
            .collect();
        serde_json::json!({ "hosts": hosts })
    };
    let inventory = serde_json::json!({"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": python},
        "children": {"web": group(&["web-1", "web-2"]), "db": group(&["db-1"])}
    }});
    let db = dir.join("db.yml");
    std::fs::write(&db, format!("- hosts: db\n  gather_facts: false\n  tasks:\n{db_tasks}")).unwrap();
    let mut run = run_for(dir, playbook(dir, "web.yml", web_tasks), Duration::from_secs(60));
    run.inventory_json = inventory.to_string();
    run.then = vec![ansible::RolePlaybook {
        role: "db".into(),
        playbook: db,
    }];
    run
}

const TOUCH: &str = "    - name: Leave a mark\n      ansible.builtin.file: {path: \"{{ out }}/{{ inventory_hostname }}\", state: directory}\n";

/// The started and finished events, in order: (role, hosts or ok).
fn milestones(events: &[Progress]) -> Vec<String> {
    events
        .iter()
        .filter_map(|p| match p {
            Progress::Playbook(PlaybookEvent::Started { role, hosts }) => Some(format!("start {role} {hosts}")),
            Progress::Playbook(PlaybookEvent::Finished {
                role,
                ok,
                tasks,
                changed,
                ..
            }) => Some(format!("end {role} ok={ok} tasks={tasks} changed={changed}")),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn roles_in_one_run_report_each_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let run = two_roles(dir.path(), TOUCH, TOUCH);
    let (tx, mut rx) = ProgressTx::channel();
    let reports = ansible::run_roles(&run, &Redactor::default(), &tx, &CancellationToken::new())
        .await
        .expect("both roles succeed");
    let roles: Vec<(&str, usize, usize, Vec<String>)> = reports
        .iter()
        .map(|(role, r)| (role.as_str(), r.tasks, r.changed, r.hosts.clone()))
        .collect();
    assert_eq!(
        roles,
        [
            ("web", 1, 2, vec!["web-1".to_string(), "web-2".to_string()]),
            ("db", 1, 1, vec!["db-1".to_string()])
        ]
    );
    assert_eq!(
        milestones(&drain(&mut rx)),
        [
            "start web 2",
            "end web ok=true tasks=1 changed=2",
            "start db 1",
            "end db ok=true tasks=1 changed=1"
        ]
    );
    for host in ["web-1", "web-2", "db-1"] {
        assert!(dir.path().join("out").join(host).is_dir(), "{host} was configured");
    }
}

#[tokio::test]
async fn a_failed_role_stops_the_run_before_the_next_role() {
    let dir = tempfile::tempdir().unwrap();
    let web = format!(
        "    - name: Break on purpose\n      ansible.builtin.fail: {{msg: no space left}}\n      when: inventory_hostname == 'web-1'\n{TOUCH}"
    );
    let run = two_roles(dir.path(), &web, TOUCH);
    let (tx, mut rx) = ProgressTx::channel();
    let err = ansible::run_roles(&run, &Redactor::default(), &tx, &CancellationToken::new())
        .await
        .expect_err("the web role fails");
    assert_eq!(
        err.to_string(),
        "task 'Break on purpose' failed on host web-1: no space left"
    );
    assert_eq!(
        milestones(&drain(&mut rx)),
        ["start web 2", "end web ok=false tasks=2 changed=1"],
        "the db role never started"
    );
    assert!(
        dir.path().join("out/web-2").is_dir(),
        "the failed role's other host finished its playbook"
    );
    assert!(!dir.path().join("out/web-1").exists());
    assert!(!dir.path().join("out/db-1").exists(), "the next role did not run");
    assert!(!dir.path().join("work").exists(), "the run's folder is removed");
}

#[tokio::test]
async fn a_broken_playbook_after_the_first_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let run = two_roles(dir.path(), TOUCH, "    - name: [unclosed\n");
    let (tx, mut rx) = ProgressTx::channel();
    let err = ansible::run_roles(&run, &Redactor::default(), &tx, &CancellationToken::new())
        .await
        .expect_err("db.yml cannot be read");
    let text = err.to_string();
    assert!(text.starts_with("playbook db.yml failed (exit "), "{text}");
    // Ansible reads a playbook when its turn comes: web ran first.
    assert!(dir.path().join("out/web-1").is_dir());
    assert_eq!(
        milestones(&drain(&mut rx)),
        [
            "start web 2",
            "end web ok=true tasks=1 changed=2",
            "start db 1",
            "end db ok=false tasks=0 changed=0"
        ]
    );
}
