use super::*;

fn env(e: &str) -> EnvName {
    EnvName::parse(e).unwrap()
}

#[test]
fn every_env_command_parses() {
    let cases: Vec<(&str, Action)> = vec![
        (
            "staging commission",
            Action::Commission {
                version: Default::default(),
            },
        ),
        (
            "staging deploy",
            Action::Deploy {
                roles: vec![],
                version: Default::default(),
            },
        ),
        (
            "staging deploy api front",
            Action::Deploy {
                roles: vec!["api".into(), "front".into()],
                version: Default::default(),
            },
        ),
        (
            "staging deploy --roles api,front",
            Action::Deploy {
                roles: vec!["api".into(), "front".into()],
                version: Default::default(),
            },
        ),
        (
            "staging deploy --roles=knowledge",
            Action::Deploy {
                roles: vec!["knowledge".into()],
                version: Default::default(),
            },
        ),
        (
            "staging update",
            Action::Update {
                parameters: BTreeMap::new(),
                version: Default::default(),
                revert_drift: false,
            },
        ),
        (
            "staging update ApiInstanceType=t3.large",
            Action::Update {
                parameters: BTreeMap::from([("ApiInstanceType".into(), "t3.large".into())]),
                version: Default::default(),
                revert_drift: false,
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
                action,
                options: EnvOptions::default(),
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
    assert_eq!(parse("web").unwrap(), Command::Web);
    assert_eq!(
        parse("web now").unwrap_err().message,
        "`web` takes no arguments (got 'now')"
    );
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
    assert_eq!(usage(Some("deploy")), "<env> deploy [roles...] [ref=<branch|tag|sha>]");
    assert!(usage(None).contains("commission"));
    assert!(
        usage(None).ends_with("|web|whoami> | help [command]"),
        "{}",
        usage(None)
    );
}

#[test]
fn quoted_input_is_short_and_escaped() {
    // One long word: quoted once, cut, whatever the surface adds around it.
    let long = "a".repeat(100_000);
    for text in [
        long.clone(),
        format!("staging {long}"),
        format!("staging status {long}"),
        format!("job {long}"),
        format!("help {long}"),
        format!("staging deploy --{long}"),
        format!("staging deploy {long};"),
        format!("staging update {long}"),
        format!("staging update {long}-x=1"),
        format!("deploy {long}"),
    ] {
        let shown = parse(&text).unwrap_err().to_string();
        assert!(shown.chars().count() < 300, "{} chars: {shown}", shown.chars().count());
        assert!(
            shown.contains(&format!("{}…", "a".repeat(50))) || text.starts_with("deploy"),
            "{shown}"
        );
    }
    assert_eq!(
        parse(&long).unwrap_err().message,
        format!("unknown command '{}…'", "a".repeat(59))
    );
    // Escape sequences are shown, not sent to the terminal.
    let cases = [
        ("staging \x1b[2J\x1b[H", "unknown command '\\x1b[2J\\x1b[H'"),
        ("\x1b[2J\x1b[H", "unknown command '\\x1b[2J\\x1b[H'"),
        (
            "staging status \x1b[31m",
            "`status` takes no arguments (got '\\x1b[31m')",
        ),
        ("cancel \x07", "'\\x07' is not a number"),
        ("help \x1b]0;pwned\x07", "no help for '\\x1b]0;pwned\\x07'"),
        ("staging deploy --\u{9b}2J", "unknown option '--\\x9b2J'"),
        ("staging update \u{202e}x", "'\\u{202e}x' is not Parameter=value"),
    ];
    for (text, want) in cases {
        let e = parse(text).unwrap_err();
        assert_eq!(e.message, want, "{text:?}");
        assert!(
            !e.to_string().chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}: {e}"
        );
    }
    // A deny reason is kept, shortened and escaped the same way.
    let Command::Deny { reason: Some(r), .. } = parse(&format!("deny 3 \x1b[2J {long}")).unwrap() else {
        panic!("a deny with a reason")
    };
    assert!(r.starts_with("\\x1b[2J aaa") && r.ends_with('…'), "{r}");
    assert_eq!(r.chars().count(), REASON_MAX_CHARS);
}

#[test]
fn actions_are_stored_and_read_back_in_the_job_row_format() {
    let parameters: BTreeMap<String, String> = [("WorkerCount".to_string(), "3".to_string())].into();
    let cases = vec![
        (
            Action::Commission {
                version: Default::default(),
            },
            "{}",
        ),
        (
            Action::Deploy {
                roles: vec!["api".into()],
                version: Default::default(),
            },
            r#"{"roles":["api"]}"#,
        ),
        (
            Action::Update {
                parameters: parameters.clone(),
                version: Default::default(),
                revert_drift: false,
            },
            r#"{"parameters":{"WorkerCount":"3"}}"#,
        ),
        (Action::Plan { parameters }, r#"{"parameters":{"WorkerCount":"3"}}"#),
        (Action::Decommission, "{}"),
        (Action::Clean, "{}"),
        (Action::Status, "{}"),
        (Action::Events, "{}"),
    ];
    for (action, stored) in cases {
        assert_eq!(action.stored_args(), stored, "{action:?}");
        assert_eq!(Action::from_stored(action.verb(), stored), Ok(action.clone()));
    }
    // Rows written before a field existed, or with no arguments at all, still read.
    assert_eq!(
        Action::from_stored("deploy", ""),
        Ok(Action::Deploy {
            roles: vec![],
            version: Default::default()
        })
    );
}

#[test]
fn a_stored_action_that_cannot_be_read_says_why() {
    let unknown = Action::from_stored("promote", "{}").unwrap_err();
    assert!(
        unknown.contains("`promote`") && unknown.contains("unknown variant"),
        "{unknown}"
    );
    let junk = Action::from_stored("deploy", "[1,2]").unwrap_err();
    assert_eq!(junk, "the stored arguments of `deploy` are not a JSON object");
    let bad = Action::from_stored("deploy", r#"{"roles":"api"}"#).unwrap_err();
    assert!(bad.contains("cannot be read"), "{bad}");
}

#[test]
fn actions_a_rule_may_grant_are_the_commands_grants_and_the_options() {
    // Each environment verb is its own grant, but `release` comes with `hold` and `scale`
    // with `update`.
    let mut want: Vec<&str> = env_verbs()
        .into_iter()
        .filter(|v| !["release", "scale"].contains(v))
        .collect();
    want.extend(["approve", "freeze", "break-glass", "force-release"]);
    assert_eq!(actions(), want);
}

#[test]
fn every_action_has_its_row_in_the_command_table() {
    let every = [
        Action::Commission {
            version: Default::default(),
        },
        Action::Deploy {
            roles: vec![],
            version: Default::default(),
        },
        Action::Update {
            parameters: BTreeMap::new(),
            version: Default::default(),
            revert_drift: false,
        },
        Action::Plan {
            parameters: BTreeMap::new(),
        },
        Action::Decommission,
        Action::Clean,
        Action::Status,
        Action::Events,
        Action::Rollback {
            to: None,
            version: Default::default(),
        },
        Action::History { count: 10 },
        Action::Drift,
        Action::Scale { workers: 2 },
    ];
    // Holds are environment verbs without an engine action.
    let action_verbs = env_verbs()
        .into_iter()
        .filter(|v| !["hold", "release"].contains(v))
        .count();
    assert_eq!(every.len(), action_verbs, "an action is missing from this list");
    for action in every {
        let row = COMMANDS
            .iter()
            .find(|c| c.name == action.verb())
            .expect("a row per verb");
        assert!(row.per_env, "{}", row.name);
        assert_eq!(row.gated, action.mutates(), "{}: gated and mutates disagree", row.name);
    }
    // The one action nobody types: the bot's lookout starts it.
    assert!(!COMMANDS.iter().any(|c| c.name == Action::Lifecycle.verb()));
    assert!(parse("staging lifecycle").is_err());
}

#[test]
fn scale_takes_a_number_of_workers_and_is_granted_and_approved_as_update() {
    let Command::Env { action, .. } = parse("staging scale workers=3").unwrap() else {
        panic!("an environment command");
    };
    assert_eq!(action, Action::Scale { workers: 3 });
    assert_eq!(action.grant(), "update");
    assert!(action.mutates() && action.is_job() && !action.destroys());
    assert_eq!(
        parse("staging scale WORKERS=0")
            .ok()
            .map(|c| matches!(c, Command::Env { .. })),
        Some(true)
    );
    assert_eq!(
        Action::from_stored("scale", &action.stored_args()).unwrap(),
        action,
        "stored as {{\"workers\":3}}"
    );
    for (text, message) in [
        ("staging scale", "`scale` needs the number of workers: `workers=N`"),
        (
            "staging scale workers=21",
            "'21' is not a number of workers from 0 to 20",
        ),
        (
            "staging scale workers=-1",
            "'-1' is not a number of workers from 0 to 20",
        ),
        (
            "staging scale workers=two",
            "'two' is not a number of workers from 0 to 20",
        ),
        ("staging scale 3", "'3' is not workers=N"),
        (
            "staging scale api=3",
            "`scale` changes workers only: 'api=3' is not workers=N",
        ),
        (
            "staging scale workers=1 workers=2",
            "`scale` takes only workers=N (got 'workers=2')",
        ),
    ] {
        let e = parse(text).unwrap_err();
        assert_eq!(e.message, message, "{text}");
        assert_eq!(e.usage, "<env> scale workers=<n>", "{text}");
    }
    // The lifecycle job runs under the lock, changes no version, and passes holds and freezes.
    assert!(Action::Lifecycle.is_job() && !Action::Lifecycle.mutates());
    assert_eq!(Action::Lifecycle.grant(), "lifecycle");
}

#[test]
fn a_ref_rollback_and_history_parse_and_bad_ones_are_refused() {
    let deploy = parse("staging deploy api ref=feature-x").unwrap();
    assert_eq!(
        deploy,
        Command::Env {
            env: EnvName::parse("staging").unwrap(),
            action: Action::Deploy {
                roles: vec!["api".into()],
                version: Version {
                    git_ref: Some("feature-x".into()),
                    commit: None
                },
            },
            options: EnvOptions::default(),
        }
    );
    assert_eq!(
        parse("staging deploy --ref v1.2.0").unwrap(),
        parse("staging deploy ref=v1.2.0").unwrap()
    );
    assert!(matches!(
        parse("staging commission ref=v1.0.0").unwrap(),
        Command::Env { action: Action::Commission { version }, .. } if version.git_ref.as_deref() == Some("v1.0.0")
    ));
    assert!(matches!(
        parse("staging update Size=2 ref=main").unwrap(),
        Command::Env { action: Action::Update { parameters, version, .. }, .. }
            if parameters.len() == 1 && version.git_ref.as_deref() == Some("main")
    ));
    assert!(matches!(
        parse("staging rollback").unwrap(),
        Command::Env {
            action: Action::Rollback { to: None, .. },
            ..
        }
    ));
    assert!(matches!(
        parse("staging rollback to #12").unwrap(),
        Command::Env { action: Action::Rollback { to: Some(t), .. }, .. } if t == "#12"
    ));
    assert!(matches!(
        parse("staging history 5").unwrap(),
        Command::Env {
            action: Action::History { count: 5 },
            ..
        }
    ));
    for (bad, says) in [
        (
            "staging deploy ref=--upload-pack=x",
            "is not a branch, tag or commit name",
        ),
        ("staging deploy ref=a..b", "is not a branch, tag or commit name"),
        ("staging deploy ref=x ref=y", "ref= is given twice"),
        ("staging commission api", "`commission` takes only ref="),
        ("staging rollback v1", "`rollback` takes `to <job|sha|ref>`"),
        ("staging rollback to", "needs a job number"),
        ("staging history 0", "is not a number from 1 to 50"),
        ("staging history 51", "is not a number from 1 to 50"),
    ] {
        let e = parse(bad).unwrap_err();
        assert!(e.message.contains(says), "{bad}: {}", e.message);
    }
}

#[test]
fn a_version_is_stored_with_its_action_and_old_rows_still_read() {
    let pinned = Action::Deploy {
        roles: vec![],
        version: Version {
            git_ref: Some("v1.2.0".into()),
            commit: Some("e6c1bb7aa0".into()),
        },
    };
    assert_eq!(
        pinned.stored_args(),
        r#"{"commit":"e6c1bb7aa0","roles":[],"ref":"v1.2.0"}"#
    );
    assert_eq!(Action::from_stored("deploy", &pinned.stored_args()).unwrap(), pinned);
    // Rows written before versions existed.
    assert_eq!(
        Action::from_stored("commission", "{}").unwrap(),
        Action::Commission {
            version: Version::default()
        }
    );
    assert_eq!(
        Action::from_stored("deploy", r#"{"roles":["api"]}"#).unwrap().version(),
        Some(&Version::default())
    );
    assert_eq!(pinned.version().unwrap().describe().unwrap(), "v1.2.0 @ e6c1bb7a");
}

#[test]
fn drift_is_a_bare_preview_that_runs_under_the_lock() {
    let Ok(Command::Env { env, action, .. }) = parse("staging drift") else {
        panic!("staging drift parses")
    };
    assert_eq!(env.as_str(), "staging");
    assert_eq!(action, Action::Drift);
    assert!(action.is_job(), "it waits for the environment's lock");
    assert!(!action.mutates(), "holds, freezes and approvals do not stop it");
    assert_eq!(Action::from_stored("drift", &action.stored_args()), Ok(Action::Drift));
    assert_eq!(
        parse("staging drift now").unwrap_err().message,
        "`drift` takes no arguments (got 'now')"
    );
    assert_eq!(
        parse("staging drift --confirm").unwrap_err().message,
        "`drift` changes nothing: --break-glass and --confirm are for commands that do"
    );
}

#[test]
fn update_revert_drift_stands_alone_and_a_mistyped_option_is_named() {
    let Ok(Command::Env { action, .. }) = parse("staging update --revert-drift") else {
        panic!("not parsed")
    };
    assert_eq!(
        action,
        Action::Update {
            parameters: BTreeMap::new(),
            version: Default::default(),
            revert_drift: true,
        }
    );
    assert_eq!(action.verb(), "update", "the approval policy and grant of update apply");
    assert!(action.mutates());
    assert_eq!(action.version(), None, "it deploys no code");
    assert_eq!(action.stored_args(), r#"{"revert_drift":true,"parameters":{}}"#);
    assert_eq!(Action::from_stored("update", r#"{"revert_drift":true}"#), Ok(action));
    // A plain update stores what it stored before the option existed.
    assert_eq!(
        Action::from_stored("update", "{}").unwrap().stored_args(),
        r#"{"parameters":{}}"#
    );

    let usage = "usage: <env> update [Parameter=value...] [ref=<branch|tag|sha>] [--revert-drift]";
    for (text, message) in [
        (
            "staging update --revert-drif",
            "unknown option '--revert-drif'; did you mean '--revert-drift'?",
        ),
        ("staging update --revert", "unknown option '--revert' (update takes --revert-drift)"),
        (
            "staging update --revert-drift WorkerCount=3",
            "`update --revert-drift` takes nothing else (got 'WorkerCount=3'): it reverts to the stack's current template and parameters",
        ),
        (
            "staging update ref=main --revert-drift",
            "`update --revert-drift` takes nothing else (got 'ref=main'): it reverts to the stack's current template and parameters",
        ),
    ] {
        let e = parse(text).unwrap_err();
        assert_eq!(e.to_string(), format!("{message}\n{usage}"), "{text}");
    }
    // `--ref X` is still a ref, with or without the new option around.
    assert!(parse("staging update --ref main").is_ok());
}
