//! The app role stops a deploy before pip when upstream's requirements cannot install on the
//! host, with the reason as the first line (real `ansible-playbook`, the role's own tasks, a
//! local-connection host and a checkout that is only a requirements.txt).
use crate::support;
use crate::upstream_argos;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use argos::ansible::{self, PlaybookRun};
use argos::progress::ProgressTx;
use argos::redact::Redactor;
use tokio_util::sync::CancellationToken;

/// Runs the app role's requirements check against a checkout holding `requirements`.
async fn check(requirements: &str) -> (Result<(), String>, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let checkout = dir.path().join("checkout");
    std::fs::create_dir_all(&checkout).unwrap();
    std::fs::write(checkout.join("requirements.txt"), requirements).unwrap();
    // The role is found next to the playbook, as in playbooks/.
    std::os::unix::fs::symlink(support::repo().join("playbooks/roles"), dir.path().join("roles")).unwrap();
    let playbook = dir.path().join("check.yml");
    std::fs::write(
        &playbook,
        "- hosts: web\n  gather_facts: false\n  tasks:\n    - name: Check the requirements\n      ansible.builtin.include_role:\n        name: app\n        tasks_from: requirements\n",
    )
    .unwrap();
    let python = support::repo().join(".venv/bin/python");
    let inventory = serde_json::json!({"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": python},
        "children": {"web": {"hosts": {"web-1": {"ansible_host": "127.0.0.1"}}}}
    }});
    let run = PlaybookRun {
        command: support::repo().join(".venv/bin/ansible-playbook"),
        playbook,
        role: "web".into(),
        then: Vec::new(),
        inventory_json: inventory.to_string(),
        extra_vars: BTreeMap::from([("app_dir".to_string(), display(&checkout))]),
        private_key: None,
        ssh: Default::default(),
        timeout: Duration::from_secs(120),
        workdir: dir.path().join("work"),
        log: Some(dir.path().join("run.log")),
    };
    let (tx, _rx) = ProgressTx::channel();
    let started = Instant::now();
    let result = ansible::run(&run, &Redactor::default(), &tx, &CancellationToken::new()).await;
    (result.map(|_| ()).map_err(|e| e.to_string()), started.elapsed())
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

#[tokio::test]
async fn upstreams_requirements_stop_the_deploy_with_the_reason_first() {
    let (result, took) = check(&upstream_argos::REQUIREMENTS_THAT_FAIL.join("\n")).await;
    let err = result.expect_err("the check stops the deploy");
    let first = err.lines().next().unwrap();
    assert!(
        first.starts_with(
            "task 'Stop when the requirements cannot install' failed on host web-1: the app's requirements.txt cannot install with Python 3."
        ),
        "{err}"
    );
    assert!(
        first.contains("kombu==3.0.21 (imports uuid._uuid_generate_random"),
        "{first}"
    );
    assert!(first.contains("and 2 more"), "{first}");
    assert!(
        first.contains("What a team must decide before the app installs"),
        "{first}"
    );
    // Not a hang on a dead git:// host: the check reads a file.
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

#[tokio::test]
async fn requirements_that_install_pass_the_check() {
    let (result, _) =
        check("# current pins\nFlask==3.0.3\ncelery==5.4.0\nkombu>=5.3\n\ngit+https://github.com/nltk/nltk.git\n")
            .await;
    assert_eq!(result, Ok(()));
}
