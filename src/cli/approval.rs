//! Approvals from the CLI: an action that needs approval in chat needs it here too. The CLI
//! files the request (announced with Approve / Deny buttons in the environment's channel by
//! the bot, through the outbox), prints its id and waits for the decision, or exits at once
//! with `--no-wait` (running the command again picks the same request up). `--break-glass
//! "reason"` skips the approval; it is audited and announced.

use std::time::Duration;

use crate::address::Surface;
use crate::approvals::life::{self, VoidReason, Witness};
use crate::approvals::{self, Requirement};
use crate::bot::announcements::{self, Announced};
use crate::command::Action;
use crate::engine::{Ctx, Engine};
use crate::progress::ProgressTx;
use crate::store::{ApprovalState, Choice, JobState};

use super::job::{CliJob, Session};
use super::{EXIT_FAILED, EXIT_USAGE};

/// How often the CLI looks at the request while it waits.
const POLL: Duration = Duration::from_secs(1);

/// What the CLI does about approval.
#[derive(Debug, Clone, Default)]
pub struct ApprovalOptions {
    /// File the request and exit instead of waiting for the decision.
    pub no_wait: bool,
    /// Run without approval, for this reason (audited and announced).
    pub break_glass: Option<String>,
}

/// The operator's command moved the request: audited under the OS user, like the command.
struct ByOperator<'a> {
    session: &'a Session,
    command: &'a str,
}

impl Witness for ByOperator<'_> {
    fn record(&self, outcome: &str, job: u64) {
        self.session.audit(self.command, outcome, Some(job));
    }
}

/// The CLI tells its operator when an approval request or a break-glass run reaches nobody.
fn warn_unannounced(env: &str, announced: Announced) {
    match announced {
        Announced::NoChannel => {
            eprintln!("warning: environments.{env}.announce is not set: nobody in chat is told")
        }
        Announced::Failed(e) => eprintln!("warning: cannot queue the announcement: {e}"),
        Announced::Queued | Announced::AlreadyQueued | Announced::AskedThere => {}
    }
}

/// A break-glass run: audited, announced, then a job like any other.
pub(crate) fn break_glass(session: &Session, engine: &Engine, env: &str, action: &Action, reason: &str) {
    // The reason is the operator's own text: kept short and with control characters shown.
    let reason = crate::names::shorten(reason, 200);
    let reason = reason.as_str();
    let command = format!("{env} {}", action.verb());
    session.audit(&command, &format!("break-glass: {reason}"), None);
    let text = crate::bot::messages::break_glass_announcement(
        &session.user,
        &command,
        Surface::Cli,
        Some(&crate::names::hostname()),
        reason,
    );
    // This process announces it once: keyed by the process, which runs one command.
    let key = format!("break-glass-{}", session.replica.id);
    let announced = announcements::announce(&session.store, &engine.config, env, &text, &key, None);
    warn_unannounced(env, announced);
}

/// Files (or finds) the approval request and waits for its decision. `Ok` holds the job,
/// running under its environment's lock; `Err` the exit code and the last line to print.
pub(crate) async fn gate(
    session: Session,
    engine: &Engine,
    env: &str,
    action: &Action,
    req: Requirement,
    opts: &ApprovalOptions,
) -> Result<CliJob, (i32, String)> {
    let command = format!("{env} {}", action.verb());
    let id = match earlier_request(&session, env, action) {
        Some(id) => {
            eprintln!("approval request #{id} for `{command}` is on file");
            id
        }
        None => file_request(&session, engine, env, action, &req).await?,
    };
    let mut waited = false;
    loop {
        let a = session
            .store
            .approval_for_job(id)
            .map_err(|e| (EXIT_FAILED, e.to_string()))?
            .ok_or((EXIT_FAILED, format!("approval request #{id} vanished")))?;
        let by = ByOperator {
            session: &session,
            command: &command,
        };
        match a.state {
            ApprovalState::Pending if life::is_due(&a) => {
                life::expire(&session.store, &a, &by);
            }
            ApprovalState::Pending if opts.no_wait => {
                session.replica.retire();
                return Err((
                    0,
                    format!("approval request #{id} is waiting; run `argos {command}` again once it is approved"),
                ));
            }
            ApprovalState::Pending => {
                if !waited {
                    eprintln!(
                        "waiting for {} approval(s) of request #{id} (ctrl-c stops waiting; the request stays)",
                        a.needed
                    );
                    waited = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = tokio::signal::ctrl_c() => {
                        session.replica.retire();
                        return Err((130, format!("stopped waiting; request #{id} stays open")));
                    }
                }
            }
            // Started: this operator's earlier run claimed it but found the environment busy.
            ApprovalState::Approved | ApprovalState::Started => {
                let by_names: Vec<&str> = a
                    .votes
                    .iter()
                    .filter(|v| v.decision == Choice::Approve)
                    .map(|v| v.user_name.as_str())
                    .collect();
                // A requester's own vote never counts.
                let people = crate::people::People::new(&engine.config.settings.people);
                let own = [people.vote_id(Surface::Cli, &session.user), session.user.clone()];
                if life::approved_by_any_of(&a, &own) {
                    life::void(&session.store, &a, VoidReason::ApprovedByRequester, &by);
                    session.replica.retire();
                    return Err((
                        EXIT_FAILED,
                        format!("request #{id} was approved by {} who requested it: someone else has to approve; nothing was done", session.user),
                    ));
                }
                eprintln!("request #{id} approved by {}", by_names.join(", "));
                // Bound to the plan: if what would happen changed, the approval is void.
                if !life::plan_holds(&plan_ctx(engine, env)?, action, &a).await {
                    life::void(&session.store, &a, VoidReason::PlanChanged, &by);
                    session.replica.retire();
                    return Err((
                        EXIT_FAILED,
                        format!("the plan changed since request #{id} was approved; nothing was done: run the command again"),
                    ));
                }
                // The environment's lock, not this claim, decides who runs it; the claim keeps
                // a bot from starting it too.
                if a.state == ApprovalState::Approved {
                    life::claim_start(&session.store, &a);
                }
                return CliJob::start_approved(session, id, env, command);
            }
            ended @ (ApprovalState::Denied | ApprovalState::Expired | ApprovalState::Void) => {
                let why = life::denial(&a);
                session.replica.retire();
                return Err((
                    EXIT_FAILED,
                    format!("approval request #{id} was {ended}{why}; nothing was done"),
                ));
            }
        }
    }
}

/// A request this user filed earlier for the same command that is still open or approved.
fn earlier_request(session: &Session, env: &str, action: &Action) -> Option<u64> {
    let args = action.stored_args();
    session
        .store
        .recent_jobs(200)
        .ok()?
        .into_iter()
        .filter(|j| {
            j.platform == Surface::Cli
                && j.requester_id == session.user
                && j.env == env
                && j.action == action.verb()
                && j.args == args
                && j.state == JobState::Queued
        })
        .find(|j| {
            session.store.approval_for_job(j.id).ok().flatten().is_some_and(|a| {
                matches!(
                    a.state,
                    ApprovalState::Pending | ApprovalState::Approved | ApprovalState::Started
                )
            })
        })
        .map(|j| {
            // This process waits for it now.
            let _ = session.store.set_job_owner(j.id, &session.replica.id);
            j.id
        })
}

/// What a plan is worked out in: the environment's target, no progress, no log.
fn plan_ctx(engine: &Engine, env: &str) -> Result<Ctx, (i32, String)> {
    let target = engine.target(env).map_err(|e| (EXIT_USAGE, e.to_string()))?;
    Ok(Ctx {
        engine: engine.clone(),
        target,
        progress: ProgressTx::discard(),
        cancel: Default::default(),
        log: None,
    })
}

async fn file_request(
    session: &Session,
    engine: &Engine,
    env: &str,
    action: &Action,
    req: &Requirement,
) -> Result<u64, (i32, String)> {
    let command = format!("{env} {}", action.verb());
    let plan = approvals::plan(&plan_ctx(engine, env)?, action)
        .await
        .map_err(|e| (EXIT_FAILED, e.redacted(&engine.redactor).to_string()))?;
    let new = session.new_job(env, action, None);
    let by = ByOperator {
        session,
        command: &command,
    };
    let filed = life::file(&session.store, &new, &session.replica.id, &plan, req, &by)
        .map_err(|e| (EXIT_FAILED, e.to_string()))?;
    let (id, expires) = (filed.job, filed.expires);
    let who = if req.roles.is_empty() {
        format!("anyone allowed to approve on {env}")
    } else {
        format!("role {}", req.roles.join(" or "))
    };
    let text = format!(
        "🔐 **Approval needed** · job #{id} · {command} requested by {} from the CLI\n{}\nNeeds {} approval(s) from {who}. Expires at {}.",
        session.user,
        plan.text,
        req.approvers,
        expires.format("%H:%M UTC")
    );
    let buttons = [
        ("Approve".to_string(), format!("approve {id}")),
        ("Deny".to_string(), format!("deny {id}")),
    ];
    let announced = announcements::request(&session.store, &engine.config, env, &text, &buttons, id);
    warn_unannounced(env, announced);
    eprintln!("{}", text.replace("**", ""));
    eprintln!("approval request #{id} filed: approvers answer with `approve {id}` or the buttons in chat");
    Ok(id)
}
