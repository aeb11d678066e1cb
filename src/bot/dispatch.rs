//! The dispatcher routes, and decides nothing else: every command goes through the per-user
//! rate limit → parse → the gate its command declares (who may ask) → its `command_<verb>`
//! handler in `bot::handlers`. Every outcome, allowed or denied, is written to the audit log;
//! user errors are shown verbatim, internal errors as a generic line plus a log entry.

use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};

use crate::bot::handlers::{audit_read, env, hold, info, jobs, web};
use crate::bot::port::{ChatEvent, PrivateReply, Reply};
use crate::bot::{approval_flow, messages, Inner};
use crate::command::{self, Command, Gate};

pub(crate) async fn handle(inner: &Arc<Inner>, ev: ChatEvent) -> Option<Reply> {
    // Replies quote what was typed; a secret someone pasted is masked as in the audit log.
    let redact = |text: &str| inner.engine.redactor.redact(text);
    Some(match answer(inner, ev).await? {
        Reply::Public(text) => Reply::Public(redact(&text)),
        Reply::Private(p) => Reply::Private(PrivateReply {
            text: redact(&p.text),
            what: p.what,
        }),
    })
}

async fn answer(inner: &Arc<Inner>, ev: ChatEvent) -> Option<Reply> {
    let who = &ev.identity;
    let key = format!("{}:{}", who.platform, who.user_id);
    if let Err(not_until) = inner.limiter.check_key(&key) {
        let wait = not_until.wait_time_from(DefaultClock::default().now()).as_secs().max(1);
        audit_read(inner, &ev, "rate limited", None);
        return Some(Reply::Public(messages::rate_limited(wait)));
    }
    let cmd = match command::parse(&ev.text) {
        Ok(c) => c,
        Err(e) => {
            audit_read(inner, &ev, &format!("malformed: {}", e.message), None);
            return Some(Reply::Public(messages::usage_error(&e.to_string())));
        }
    };
    match cmd.gate() {
        // A rule is checked by the handler, which knows the environment and the verb.
        Gate::Anyone | Gate::Rule => {}
        Gate::KnownUser => {
            if !inner.perms.is_known(who) {
                audit_read(inner, &ev, "denied: no role", None);
                return Some(Reply::Public(messages::denied_unknown_user()));
            }
        }
    }
    let public = match cmd {
        Command::Env { env, action, options } => env::command_env(inner, &ev, env, action, options).await,
        Command::Hold {
            env,
            reason,
            duration,
            warn,
        } => Some(hold::command_hold(inner, &ev, env, &reason, duration, warn)),
        Command::Release { env, force } => Some(hold::command_release(inner, &ev, env, force)),
        Command::Freeze { envs, duration, reason } => Some(hold::command_freeze(inner, &ev, &envs, duration, &reason)),
        Command::Unfreeze { envs } => Some(hold::command_unfreeze(inner, &ev, &envs)),
        Command::Approve { id } => approval_flow::approve(inner, &ev, id).await,
        Command::Deny { id, reason } => approval_flow::deny(inner, &ev, id, reason).await,
        Command::Help { topic } => Some(info::command_help(inner, &ev, topic.as_deref())),
        Command::Whoami => Some(info::command_whoami(inner, &ev)),
        Command::Envs => Some(info::command_envs(inner, &ev)),
        Command::Schedules => Some(info::command_schedules(inner, &ev)),
        Command::Jobs => Some(jobs::command_jobs(inner, &ev)),
        Command::Job { id } => Some(jobs::command_job(inner, &ev, id)),
        Command::Cancel { id } => Some(jobs::command_cancel(inner, &ev, id)),
        // The only private answer: a sign-in link is for its asker's eyes.
        Command::Web => return Some(web::command_web(inner, &ev)),
    };
    public.map(Reply::Public)
}
