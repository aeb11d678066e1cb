use super::*;

fn env(e: &str) -> EnvName {
    EnvName::parse(e).unwrap()
}

#[test]
fn every_env_command_parses() {
    let cases: Vec<(&str, Action)> = vec![
        ("staging commission", Action::Commission),
        ("staging deploy", Action::Deploy { roles: vec![] }),
        (
            "staging deploy api front",
            Action::Deploy {
                roles: vec!["api".into(), "front".into()],
            },
        ),
        (
            "staging deploy --roles api,front",
            Action::Deploy {
                roles: vec!["api".into(), "front".into()],
            },
        ),
        (
            "staging deploy --roles=knowledge",
            Action::Deploy {
                roles: vec!["knowledge".into()],
            },
        ),
        (
            "staging update",
            Action::Update {
                parameters: BTreeMap::new(),
            },
        ),
        (
            "staging update ApiInstanceType=t3.large",
            Action::Update {
                parameters: BTreeMap::from([("ApiInstanceType".into(), "t3.large".into())]),
            },
        ),
        (
            "staging plan",
            Action::Plan {
                parameters: BTreeMap::new(),
            },
        ),
        ("staging decommission", Action::Decommission),
        ("staging clean", Action::Clean),
        ("staging status", Action::Status),
        ("staging events", Action::Events),
        ("staging STATUS", Action::Status),
    ];
    for (text, action) in cases {
        assert_eq!(
            parse(text).unwrap(),
            Command::Env {
                env: env("staging"),
                action
            },
            "{text}"
        );
    }
}

#[test]
fn every_global_command_parses() {
    assert_eq!(parse("approve 7").unwrap(), Command::Approve { id: 7 });
    assert_eq!(
        parse("deny 7 not today").unwrap(),
        Command::Deny {
            id: 7,
            reason: Some("not today".into())
        }
    );
    assert_eq!(parse("deny 7").unwrap(), Command::Deny { id: 7, reason: None });
    assert_eq!(parse("schedules").unwrap(), Command::Schedules);
    assert_eq!(parse("envs").unwrap(), Command::Envs);
    assert_eq!(parse("jobs").unwrap(), Command::Jobs);
    assert_eq!(parse("job 12").unwrap(), Command::Job { id: 12 });
    assert_eq!(parse("job #12").unwrap(), Command::Job { id: 12 });
    assert_eq!(parse("cancel 3").unwrap(), Command::Cancel { id: 3 });
    assert_eq!(parse("whoami").unwrap(), Command::Whoami);
    assert_eq!(parse("help").unwrap(), Command::Help { topic: None });
    assert_eq!(
        parse("help deploy").unwrap(),
        Command::Help {
            topic: Some("deploy".into())
        }
    );
}

#[test]
fn errors_are_specific() {
    let cases = [
        ("", "no command given"),
        ("staging deplyo", "did you mean 'deploy'?"),
        ("staging decomission", "did you mean 'decommission'?"),
        ("deploy staging", "put the environment first: `staging deploy`"),
        ("Prod! deploy", "invalid environment name 'Prod!'"),
        ("a;b deploy", "contains ';'"),
        ("staging", "needs a command after it"),
        ("jbos", "did you mean 'jobs'?"),
        ("staging status now", "takes no arguments"),
        ("staging deploy --force", "unknown option '--force'"),
        ("staging deploy --roles", "needs a list"),
        ("staging deploy api;rm", "is not a role name"),
        ("staging update foo", "is not Parameter=value"),
        ("staging update A=1 A=2", "given twice"),
        ("staging update a-b=1", "not a parameter name"),
        ("job", "needs a number"),
        ("cancel x", "'x' is not a number"),
        ("envs now", "takes no arguments"),
        ("help deplo", "did you mean 'deploy'?"),
        ("approve", "needs a number"),
        ("approve 1 2", "takes one number"),
        ("aprove 1", "did you mean 'approve'?"),
    ];
    for (text, want) in cases {
        let e = parse(text).unwrap_err();
        assert!(e.to_string().contains(want), "{text:?}: {e}");
        assert!(e.to_string().contains("usage: "), "{text:?}: {e}");
    }
    let long = format!("{} deploy", "a".repeat(200));
    assert!(parse(&long).unwrap_err().message.contains("200 characters"));
}

#[test]
fn usage_is_per_command() {
    assert_eq!(usage(Some("deploy")), "<env> deploy [roles...]");
    assert!(usage(None).contains("commission"));
}
