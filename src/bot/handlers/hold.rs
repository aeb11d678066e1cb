//! `<env> hold`, `<env> release`, `freeze` and `unfreeze`: taking an environment out of
//! others' hands, or out of everyone's, for a while. The rules are [`crate::holds`]'; this
//! file checks permissions, audits, announces and answers.

use std::time::Duration;

use super::{audit, audit_read, internal};
use crate::bot::messages;
use crate::bot::notices;
use crate::bot::port::ChatEvent;
use crate::bot::Inner;
use crate::command::EnvSelection;
use crate::holds::{self, HoldProblem, HoldRequest};
use crate::names::EnvName;
use crate::permissions::Decision;
use crate::store::{HoldOutcome, ReleaseOutcome};

/// Refuses (audited) unless `ev`'s sender may `grant` on `env`.
fn allowed(inner: &Inner, ev: &ChatEvent, env: &str, grant: &str) -> Result<(), String> {
    match inner.perms.check(&ev.identity, env, grant) {
        Decision::Allowed => Ok(()),
        Decision::Denied { missing } => {
            audit_read(inner, ev, &format!("denied: missing {missing}"), None);
            Err(messages::denied(&missing))
        }
    }
}

pub(crate) fn command_hold(
    inner: &Inner,
    ev: &ChatEvent,
    env: EnvName,
    reason: &str,
    duration: Option<Duration>,
    warn: bool,
) -> String {
    if let Err(reply) = allowed(inner, ev, env.as_str(), "hold") {
        return reply;
    }
    let ask = HoldRequest {
        who: &ev.identity,
        channel: &ev.channel,
        env: env.as_str(),
        reason,
        duration,
        warn,
    };
    let outcome = match holds::take(&inner.store, &inner.engine.config, inner.perms.people(), &ask) {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return internal(inner, ev, &e.to_string()),
        Err(HoldProblem::UnknownEnv(e)) => {
            audit_read(inner, ev, &format!("refused: {e}"), None);
            return messages::unknown_env(&e);
        }
        Err(HoldProblem::TooLong { asked, max }) => {
            audit_read(inner, ev, "refused: longer than holds.max", None);
            return messages::hold_too_long(asked, max);
        }
    };
    match outcome {
        HoldOutcome::Taken(h) => {
            audit(
                inner,
                ev,
                &format!("ok: hold #{} until {}", h.id, h.ends_at.to_rfc3339()),
                None,
            );
            notices::post_answering(
                inner,
                ev,
                &h.env,
                &messages::announced::hold_taken(&h),
                &format!("hold-{}-start", h.id),
            );
            messages::hold_taken(&h)
        }
        HoldOutcome::Renewed(h) => {
            audit(
                inner,
                ev,
                &format!("ok: hold #{} renewed until {}", h.id, h.ends_at.to_rfc3339()),
                None,
            );
            messages::hold_renewed(&h)
        }
        HoldOutcome::HeldBy(h) => {
            audit(inner, ev, &format!("refused: held by {}", h.holder_name), None);
            messages::held_by_other(&h)
        }
        HoldOutcome::Busy(job) => {
            audit(inner, ev, &format!("busy: job #{} running", job.id), None);
            messages::hold_busy(env.as_str(), &job)
        }
    }
}

pub(crate) fn command_release(inner: &Inner, ev: &ChatEvent, env: EnvName, force: bool) -> String {
    if let Err(reply) = allowed(inner, ev, env.as_str(), "hold") {
        return reply;
    }
    if let Err(e) = inner.engine.config.environment(env.as_str()) {
        audit_read(inner, ev, &format!("refused: {e}"), None);
        return messages::unknown_env(&e);
    }
    if force {
        if let Err(reply) = allowed(inner, ev, env.as_str(), "force-release") {
            return reply;
        }
    }
    let outcome = match holds::release(&inner.store, inner.perms.people(), &ev.identity, env.as_str(), force) {
        Ok(o) => o,
        Err(e) => return internal(inner, ev, &e.to_string()),
    };
    match outcome {
        ReleaseOutcome::Released(h) => {
            let forced = h.person != holds::person_of(inner.perms.people(), &ev.identity);
            let what = if forced { "forced release" } else { "released" };
            audit(inner, ev, &format!("ok: hold #{} {what}", h.id), None);
            notices::post_answering(
                inner,
                ev,
                &h.env,
                &messages::announced::hold_ended(&h),
                &format!("hold-{}-end", h.id),
            );
            messages::released(&h, &ev.identity.display_name)
        }
        ReleaseOutcome::NotHeld => {
            audit_read(inner, ev, "ok: not held", None);
            messages::not_held(env.as_str())
        }
        ReleaseOutcome::NotYours(h) => {
            audit(inner, ev, &format!("refused: held by {}", h.holder_name), None);
            messages::not_your_hold(&h)
        }
    }
}

/// The environments named, each checked for `freeze` permission: `Ok(None)` for all.
fn freeze_scope(inner: &Inner, ev: &ChatEvent, envs: &EnvSelection) -> Result<Option<Vec<String>>, String> {
    let config = &inner.engine.config;
    let scope = holds::selected(config, envs).map_err(|e| {
        audit_read(inner, ev, &format!("refused: {e}"), None);
        messages::unknown_env(&e)
    })?;
    let names: Vec<String> = match &scope {
        Some(names) => names.clone(),
        None => config.settings.environments.keys().cloned().collect(),
    };
    for env in &names {
        allowed(inner, ev, env, "freeze")?;
    }
    Ok(scope)
}

pub(crate) fn command_freeze(
    inner: &Inner,
    ev: &ChatEvent,
    envs: &EnvSelection,
    duration: Duration,
    reason: &str,
) -> String {
    let scope = match freeze_scope(inner, ev, envs) {
        Ok(s) => s,
        Err(reply) => return reply,
    };
    let f = match holds::freeze(
        &inner.store,
        inner.perms.people(),
        &ev.identity,
        scope,
        duration,
        reason,
    ) {
        Ok(f) => f,
        Err(e) => return internal(inner, ev, &e.to_string()),
    };
    let id = f.id.unwrap_or(0);
    audit(
        inner,
        ev,
        &format!("ok: freeze #{id} until {}", f.ends_at.to_rfc3339()),
        None,
    );
    for env in notices::covered(&inner.engine.config, &f.envs) {
        notices::post_answering(
            inner,
            ev,
            &env,
            &messages::announced::frozen(&f),
            &format!("freeze-{id}-start"),
        );
    }
    messages::frozen(&f)
}

pub(crate) fn command_unfreeze(inner: &Inner, ev: &ChatEvent, envs: &EnvSelection) -> String {
    let scope = match freeze_scope(inner, ev, envs) {
        Ok(s) => s,
        Err(reply) => return reply,
    };
    let ended = match inner
        .store
        .unfreeze(&scope.unwrap_or_default(), &ev.identity.display_name)
    {
        Ok(e) => e,
        Err(e) => return internal(inner, ev, &e.to_string()),
    };
    let ids: Vec<String> = ended.iter().map(|f| f.name.clone()).collect();
    audit(inner, ev, &format!("ok: unfroze [{}]", ids.join(", ")), None);
    for f in &ended {
        let id = f.id.unwrap_or(0);
        for env in notices::covered(&inner.engine.config, &f.envs) {
            notices::post_answering(
                inner,
                ev,
                &env,
                &messages::announced::freeze_ended(f),
                &format!("freeze-{id}-end"),
            );
        }
    }
    messages::unfrozen(&ended)
}
