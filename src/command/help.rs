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
        details: &[REF_DETAIL],
    },
    CommandHelp {
        name: "deploy",
        grammar: "<env> deploy [roles...] [ref=<branch|tag|sha>]",
        summary: "run the playbooks (all roles, or those named)",
        per_env: true,
        gated: true,
        details: &[
            "roles: the configured ones (ansible.roles), run in their configured order;",
            "name some to run only those, as words or as `--roles a,b`.",
            REF_DETAIL,
        ],
    },
    CommandHelp {
        name: "update",
        grammar: "<env> update [Parameter=value...] [ref=<branch|tag|sha>]",
        summary: "apply template and parameter changes, then deploy",
        per_env: true,
        gated: true,
        details: &[
            "Parameter=value: template parameters to change; the others keep their values.",
            "The change set is shown first; the roles are deployed after it is applied.",
            REF_DETAIL,
        ],
    },
    CommandHelp {
        name: "rollback",
        grammar: "<env> rollback [to <job|sha|ref>]",
        summary: "redeploy the last good commit before the current one (or a chosen one)",
        per_env: true,
        gated: true,
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
        details: &["n: how many (default 10, at most 50)."],
    },
    CommandHelp {
        name: "plan",
        grammar: "<env> plan [Parameter=value...]",
        summary: "preview what update would change",
        per_env: true,
        gated: false,
        details: &["Parameter=value: as for update. Nothing is changed: the change set is deleted."],
    },
    CommandHelp {
        name: "decommission",
        grammar: "<env> decommission",
        summary: "delete the environment's stack",
        per_env: true,
        gated: true,
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
        details: &[],
    },
    CommandHelp {
        name: "events",
        grammar: "<env> events",
        summary: "the latest stack events",
        per_env: true,
        gated: false,
        details: &[],
    },
    CommandHelp {
        name: "envs",
        grammar: "envs",
        summary: "list the configured environments",
        per_env: false,
        gated: false,
        details: &[],
    },
    CommandHelp {
        name: "jobs",
        grammar: "jobs",
        summary: "list recent jobs",
        per_env: false,
        gated: false,
        details: &[],
    },
    CommandHelp {
        name: "job",
        grammar: "job <id>",
        summary: "show one job",
        per_env: false,
        gated: false,
        details: &[],
    },
    CommandHelp {
        name: "cancel",
        grammar: "cancel <id>",
        summary: "cancel a running job",
        per_env: false,
        gated: false,
        details: &[],
    },
    CommandHelp {
        name: "approve",
        grammar: "approve <id>",
        summary: "approve a pending request (e.g. a decommission)",
        per_env: false,
        gated: false,
        details: &[],
    },
    CommandHelp {
        name: "deny",
        grammar: "deny <id> [reason]",
        summary: "deny a pending request, or withdraw your own",
        per_env: false,
        gated: false,
        details: &[],
    },
    CommandHelp {
        name: "schedules",
        grammar: "schedules",
        summary: "list the cleanup schedules and their next runs",
        per_env: false,
        gated: false,
        details: &[],
    },
    CommandHelp {
        name: "whoami",
        grammar: "whoami",
        summary: "who you are and what you may run",
        per_env: false,
        gated: false,
        details: &[],
    },
    CommandHelp {
        name: "help",
        grammar: "help [command]",
        summary: "this help",
        per_env: false,
        gated: false,
        details: &[],
    },
];

/// The usage line of one command, or the short list of all.
pub fn usage(topic: Option<&str>) -> String {
    match topic.and_then(|t| COMMANDS.iter().find(|c| c.name == t)) {
        Some(c) if c.name != "help" => c.grammar.to_string(),
        _ => "<env> <commission|deploy|update|plan|decommission|clean|status|events> | envs | jobs | job <id> | cancel <id> | whoami | help [command]".to_string(),
    }
}
