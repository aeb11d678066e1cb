//! Holds and freezes, the rules the bot and the CLI share: who a requester is for a hold (a
//! person, across surfaces), what a job's start checks (the store's holds and freezes, and
//! the configured freeze windows now), taking and releasing holds within the configured
//! limits, freezing, and the hold a rollback leaves behind. The texts are the callers'.

use std::time::Duration;

use crate::command::{EnvOptions, EnvSelection};
use crate::config::Config;
use crate::people::People;
use crate::permissions::Identity;
use crate::store::{
    last_ending, Checks, FreezeRecord, HoldOutcome, HoldRecord, JobRecord, NewFreeze, NewHold, Refusal, ReleaseOutcome,
    Store, StoreResult,
};

/// Who someone is for holds: the same person on every surface they are known on.
pub fn person_of(people: &People, who: &Identity) -> String {
    people.person(who.platform, &who.user_id).to_string()
}

/// The configured freeze window covering `env` now (the one that lifts last), as the store's
/// checks take it.
pub fn scheduled_freeze(config: &Config, env: &str) -> Option<FreezeRecord> {
    let (f, w) = crate::config::freezes::active_for(&config.settings.freezes, env, crate::clock::now())?;
    Some(configured(config, f, w))
}

/// A configured freeze's window as a freeze record: named after the freeze, covering the
/// configured environments its patterns match.
pub fn configured(
    config: &Config,
    f: &crate::config::FreezeSettings,
    w: crate::config::freezes::Window,
) -> FreezeRecord {
    FreezeRecord {
        id: None,
        name: f.name.clone(),
        envs: config
            .settings
            .environments
            .keys()
            .filter(|e| f.applies_to(e))
            .cloned()
            .collect(),
        reason: f.reason.clone(),
        by_name: None,
        starts_at: w.start,
        ends_at: w.end,
        ended_at: None,
        ended_by: None,
    }
}

/// The freeze in force on `env` that ends last: `stored` (the store's) or a configured one.
pub fn freeze_in_force(stored: Option<FreezeRecord>, config: &Config, env: &str) -> Option<FreezeRecord> {
    last_ending(stored, scheduled_freeze(config, env))
}

/// What a job's start checks besides the store's own rows.
pub fn checks(config: &Config, env: &str, confirmed: bool) -> Checks {
    Checks {
        confirmed,
        scheduled_freeze: scheduled_freeze(config, env),
    }
}

/// Whether a change of `person` to `env` would be refused now: read before an approval is
/// requested, so nobody approves what cannot run. The start decides again, under the lock.
pub fn precheck(
    store: &Store,
    config: &Config,
    env: &str,
    person: &str,
    options: &EnvOptions,
) -> StoreResult<Option<Refusal>> {
    let checks = checks(config, env, options.confirm);
    store.refusal_now(env, person, options.break_glass.is_some(), &checks)
}

/// Why a hold cannot be asked for as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldProblem {
    UnknownEnv(String),
    /// Longer than `holds.max`.
    TooLong {
        asked: Duration,
        max: Duration,
    },
}

/// A hold as asked for, before it is taken.
pub struct HoldRequest<'a> {
    pub who: &'a Identity,
    /// Where it was asked (the holder's reminder goes there).
    pub channel: &'a str,
    pub env: &'a str,
    pub reason: &'a str,
    pub duration: Option<Duration>,
    pub warn: bool,
}

/// Takes (or renews) a hold within the configured limits.
pub fn take(
    store: &Store,
    config: &Config,
    people: &People,
    ask: &HoldRequest<'_>,
) -> Result<StoreResult<HoldOutcome>, HoldProblem> {
    let (env, _) = config.environment(ask.env).map_err(HoldProblem::UnknownEnv)?;
    let times = config.settings.holds.checked_times();
    let duration = ask.duration.unwrap_or(times.default);
    if duration > times.max {
        return Err(HoldProblem::TooLong {
            asked: duration,
            max: times.max,
        });
    }
    let person = person_of(people, ask.who);
    let hold = NewHold {
        env: env.to_string(),
        person: person.clone(),
        holder_name: ask.who.display_name.clone(),
        platform: ask.who.platform,
        channel: ask.channel.to_string(),
        reason: ask.reason.to_string(),
        warn: ask.warn,
        duration,
    };
    let same = |job: &JobRecord| -> bool {
        job.person == person
            || people.same_person((job.platform, &job.requester_id), (ask.who.platform, &ask.who.user_id))
    };
    Ok(store.take_hold(&hold, &same))
}

/// Ends `who`'s hold on `env` (anyone's with `force`; the caller checked the permission).
pub fn release(store: &Store, people: &People, who: &Identity, env: &str, force: bool) -> StoreResult<ReleaseOutcome> {
    store.release_hold(env, &person_of(people, who), &who.display_name, force)
}

/// The environments a freeze or unfreeze names, checked against the config: `None` for
/// all of them, else the names (an unknown one is refused, naming the configured ones).
pub fn selected(config: &Config, envs: &EnvSelection) -> Result<Option<Vec<String>>, String> {
    match envs {
        EnvSelection::All => Ok(None),
        EnvSelection::Only(names) => names
            .iter()
            .map(|n| config.environment(n.as_str()).map(|(e, _)| e.to_string()))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
    }
}

/// Records an ad-hoc freeze by `who` (the caller checked the permission on every environment).
pub fn freeze(
    store: &Store,
    people: &People,
    who: &Identity,
    envs: Option<Vec<String>>,
    duration: Duration,
    reason: &str,
) -> StoreResult<FreezeRecord> {
    store.freeze(&NewFreeze {
        envs: envs.unwrap_or_default(),
        reason: reason.to_string(),
        person: person_of(people, who),
        by_name: who.display_name.clone(),
        duration,
    })
}

/// The commit the environment ran before `job`: its last good deploy before it.
pub fn previous_commit(store: &Store, job: &JobRecord) -> Option<String> {
    store
        .good_deploys(&job.env, 10)
        .ok()?
        .into_iter()
        .find(|d| d.id < job.id && d.sha.is_some())
        .and_then(|d| d.sha)
}

/// One environment as `envs` shows it: where one can deploy.
pub struct EnvState {
    pub name: String,
    /// The job holding its lock.
    pub running: Option<u64>,
    /// Its last deploy.
    pub last: Option<JobRecord>,
    pub hold: Option<HoldRecord>,
    /// The freeze in force that lifts last (stored or configured).
    pub freeze: Option<FreezeRecord>,
}

/// Every configured environment's state, for `envs` in chat, the console and the CLI.
pub fn env_states(store: &Store, config: &Config) -> Vec<EnvState> {
    let locks = store.held_locks().unwrap_or_default();
    let holds = store.active_holds().unwrap_or_default();
    let freezes = store.active_freezes().unwrap_or_default();
    config
        .settings
        .environments
        .keys()
        .map(|name| {
            let stored = freezes
                .iter()
                .filter(|f| f.covers(name))
                .max_by_key(|f| f.ends_at)
                .cloned();
            EnvState {
                name: name.clone(),
                running: locks.iter().find(|l| &l.env == name).and_then(|l| l.job_id),
                last: store.deploys(name, 1).ok().and_then(|d| d.into_iter().next()),
                hold: holds.iter().find(|h| &h.env == name).cloned(),
                freeze: freeze_in_force(stored, config, name),
            }
        })
        .collect()
}

/// After a successful rollback, the environment is held by who rolled back ("rolled back
/// from <sha>") for `holds.max`, unless `holds.after_rollback` is off. `from` is the commit
/// that ran before. None when no hold was taken (off, or someone else holds it meanwhile).
pub fn after_rollback(
    store: &Store,
    config: &Config,
    people: &People,
    job: &JobRecord,
    from: Option<&str>,
) -> Option<HoldRecord> {
    let settings = &config.settings.holds;
    if !settings.after_rollback {
        return None;
    }
    let who = Identity::named(job.platform, &job.requester_id);
    let who = Identity {
        display_name: job.requester_name.clone(),
        ..who
    };
    let reason = match from {
        Some(sha) => format!("rolled back from {}", crate::command::short_sha(sha)),
        None => "rolled back".to_string(),
    };
    let ask = HoldRequest {
        who: &who,
        channel: &job.channel,
        env: &job.env,
        reason: &reason,
        duration: Some(settings.checked_times().max),
        warn: false,
    };
    match take(store, config, people, &ask) {
        Ok(Ok(HoldOutcome::Taken(h) | HoldOutcome::Renewed(h))) => Some(h),
        Ok(Ok(_)) => None,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot hold the environment after a rollback");
            None
        }
        Err(_) => None,
    }
}
