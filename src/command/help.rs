//! Usage text for every command, in one table that both the parser and `help` read.

/// One command's grammar and purpose.
pub struct CommandHelp {
    pub name: &'static str,
    pub grammar: &'static str,
    pub summary: &'static str,
    /// Whether it acts on one environment (and so is permission-checked per environment).
    pub per_env: bool,
    /// Whether an environment's policy may make it wait for a second person's approval.
    pub gated: bool,
    /// The action a permission rule grants for it (checked per environment), if any: most
    /// environment verbs are their own grant; `release` is granted with `hold`.
    pub grant: Option<&'static str>,
    /// What the command takes besides its grammar line, for the help of this one command.
    pub details: &'static [&'static str],
}

/// What `ref=` means, in the help of each command that deploys code.
const REF_DETAIL: &str = "ref=: the branch, tag or commit to deploy; default: the environment's `ref` (master).";

pub const COMMANDS: &[CommandHelp] = &[
    CommandHelp {
        name: "commission",
        grammar: "<env> commission [ref=<branch|tag|sha>]",
        summary: "bake the image if missing, create the stack, deploy",
        per_env: true,
        gated: true,
        grant: Some("commission"),
        details: &[REF_DETAIL],
    },
    CommandHelp {
        name: "deploy",
        grammar: "<env> deploy [roles...] [ref=<branch|tag|sha>]",
        summary: "run the playbooks (all roles, or those named)",
        per_env: true,
        gated: true,
        grant: Some("deploy"),
        details: &[
            "roles: the configured ones (ansible.roles), run in their configured order;",
            "name some to run only those, as words or as `--roles a,b`.",
            REF_DETAIL,
        ],
    },
    CommandHelp {
        name: "update",
        grammar: "<env> update [Parameter=value...] [ref=<branch|tag|sha>] [--revert-drift]",
        summary: "apply template and parameter changes, then deploy",
        per_env: true,
        gated: true,
        grant: Some("update"),
        details: &[
            "Parameter=value: template parameters to change; the others keep their values.",
            "The change set is shown first; the roles are deployed after it is applied.",
            REF_DETAIL,
            "--revert-drift (alone): undo the drift the last `drift` check found, with a change set",
            "in REVERT_DRIFT mode on the stack's current template and parameters; no code is deployed.",
        ],
    },
    CommandHelp {
        name: "rollback",
        grammar: "<env> rollback [to <job|sha|ref>]",
        summary: "redeploy the last good commit before the current one (or a chosen one)",
        per_env: true,
        gated: true,
        grant: Some("rollback"),
        details: &[
            "It names the commits it undoes, and warns when a migration changed between the two:",
            "a database schema does not roll back with the code.",
        ],
    },
    CommandHelp {
        name: "history",
        grammar: "<env> history [n]",
        summary: "the last deploys: ref, commit, who, when, result",
        per_env: true,
        gated: false,
        grant: Some("history"),
        details: &["n: how many (default 10, at most 50)."],
    },
    CommandHelp {
        name: "plan",
        grammar: "<env> plan [Parameter=value...]",
        summary: "preview what update would change",
        per_env: true,
        gated: false,
        grant: Some("plan"),
        details: &["Parameter=value: as for update. Nothing is changed: the change set is deleted."],
    },
    CommandHelp {
        name: "drift",
        grammar: "<env> drift",
        summary: "check whether the live resources still match the stack",
        per_env: true,
        gated: false,
        grant: Some("drift"),
        details: &[
            "It runs as a job under the environment's lock and changes nothing: each drifted",
            "resource with its changed properties, and the resources CloudFormation could not check.",
        ],
    },
    CommandHelp {
        name: "decommission",
        grammar: "<env> decommission",
        summary: "delete the environment's stack",
        per_env: true,
        gated: true,
        grant: Some("decommission"),
        details: &[
            "It asks first: type the environment's name. `--yes` (-y) confirms instead,",
            "as it must when not on a terminal.",
        ],
    },
    CommandHelp {
        name: "clean",
        grammar: "<env> clean",
        summary: "delete the image and its build instance",
        per_env: true,
        gated: true,
        grant: Some("clean"),
        details: &[
            "It asks first: type the environment's name. `--yes` (-y) confirms instead,",
            "as it must when not on a terminal.",
        ],
    },
    CommandHelp {
        name: "status",
        grammar: "<env> status",
        summary: "stack, instances, image, recent events",
        per_env: true,
        gated: false,
        grant: Some("status"),
        details: &[],
    },
    CommandHelp {
        name: "events",
        grammar: "<env> events",
        summary: "the latest stack events",
        per_env: true,
        gated: false,
        grant: Some("events"),
        details: &[],
    },
    CommandHelp {
        name: "hold",
        grammar: "<env> hold [reason] [for <duration>] [--warn]",
        summary: "hands off: only you may change the environment until you release it",
        per_env: true,
        gated: false,
        grant: Some("hold"),
        details: &[
            "for: how long (30m, 2h, 1d); default and maximum: holds.default and holds.max.",
            "--warn: others are only warned, and go ahead with --confirm.",
            "You are reminded before it lapses; its end is announced.",
        ],
    },
    CommandHelp {
        name: "release",
        grammar: "<env> release [--force]",
        summary: "end your hold (--force: anyone's, for those allowed to)",
        per_env: true,
        gated: false,
        grant: Some("hold"),
        details: &["--force needs the force-release permission; it is audited and announced."],
    },
    CommandHelp {
        name: "envs",
        grammar: "envs",
        summary: "list the configured environments",
        per_env: false,
        gated: false,
        grant: None,
        details: &[],
    },
    CommandHelp {
        name: "jobs",
        grammar: "jobs",
        summary: "list recent jobs",
        per_env: false,
        gated: false,
        grant: None,
        details: &[],
    },
    CommandHelp {
        name: "job",
        grammar: "job <id>",
        summary: "show one job",
        per_env: false,
        gated: false,
        grant: None,
        details: &[],
    },
    CommandHelp {
        name: "cancel",
        grammar: "cancel <id>",
        summary: "cancel a running job",
        per_env: false,
        gated: false,
        grant: None,
        details: &[],
    },
    CommandHelp {
        name: "approve",
        grammar: "approve <id>",
        summary: "approve a pending request (e.g. a decommission)",
        per_env: false,
        gated: false,
        grant: Some("approve"),
        details: &[],
    },
    CommandHelp {
        name: "deny",
        grammar: "deny <id> [reason]",
        summary: "deny a pending request, or withdraw your own",
        per_env: false,
        gated: false,
        grant: None,
        details: &[],
    },
    CommandHelp {
        name: "schedules",
        grammar: "schedules",
        summary: "list the cleanup schedules and the freezes, with their next runs and windows",
        per_env: false,
        gated: false,
        grant: None,
        details: &[],
    },
    CommandHelp {
        name: "freeze",
        grammar: "freeze <envs|all> for <duration> <reason>",
        summary: "refuse every change to the environments for a while",
        per_env: false,
        gated: false,
        grant: Some("freeze"),
        details: &[
            "envs: names separated by commas, or `all`. Changes during a freeze need",
            "--break-glass \"reason\" (the break-glass permission); audited and announced.",
        ],
    },
    CommandHelp {
        name: "unfreeze",
        grammar: "unfreeze <envs|all>",
        summary: "end the freezes on the environments",
        per_env: false,
        gated: false,
        grant: Some("freeze"),
        details: &["Configured freeze windows (freezes: in the config) are not ended by it."],
    },
    CommandHelp {
        name: "web",
        grammar: "web",
        summary: "a sign-in link for the read-only web page",
        per_env: false,
        gated: false,
        grant: None,
        details: &[
            "The link works once, for a few minutes (web.link_minutes), and opens a session that",
            "shows the environments you may `status`. The page changes nothing: act in chat.",
            "Only you see the link: a direct message or an answer only you can see in chat.",
        ],
    },
    CommandHelp {
        name: "whoami",
        grammar: "whoami",
        summary: "who you are and what you may run",
        per_env: false,
        gated: false,
        grant: None,
        details: &[],
    },
    CommandHelp {
        name: "help",
        grammar: "help [command]",
        summary: "this help",
        per_env: false,
        gated: false,
        grant: None,
        details: &[],
    },
];

/// The usage line of one command, or the short list of all.
pub fn usage(topic: Option<&str>) -> String {
    match topic.and_then(|t| COMMANDS.iter().find(|c| c.name == t)) {
        Some(c) if c.name != "help" => c.grammar.to_string(),
        _ => {
            let per_env: Vec<&str> = COMMANDS.iter().filter(|c| c.per_env).map(|c| c.name).collect();
            // Alternatives in brackets, as for the environment's verbs: the line stays short
            // enough for an error message as commands are added.
            let global: Vec<&str> = COMMANDS
                .iter()
                .filter(|c| !c.per_env && c.name != "help")
                .map(|c| c.name)
                .collect();
            format!(
                "<env> <{}> | <{}> | help [command]",
                per_env.join("|"),
                global.join("|")
            )
        }
    }
}
