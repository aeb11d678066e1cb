//! Announcements in an environment's announce channel (`environments.<env>.announce`): the
//! start and end of every mutating job, approval requests and break-glass runs from the CLI,
//! and whatever else concerns everyone working on an environment (holds, freezes). The bot,
//! the console and the CLI all announce through here. A message goes through the outbox,
//! queued once per key, so replicas (or a job taken over) that announce the same thing post
//! it once; the replica serving the channel delivers it.

use std::time::Duration;

use crate::address::{ChannelAddress, Surface};
use crate::bot::messages;
use crate::command::Action;
use crate::config::Config;
use crate::store::{JobRecord, JobState, Store};

/// What became of an announcement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announced {
    /// Queued in the outbox for the announce channel.
    Queued,
    /// Another process (or an earlier run of this job) queued it already under the same key.
    AlreadyQueued,
    /// The environment has no announce channel (or is not configured).
    NoChannel,
    /// It was asked in the announce channel itself, where its own messages already are.
    AskedThere,
    /// The store refused it; logged (redacted), never fatal to what is announced.
    Failed(String),
}

/// Where `env`'s announcements go; `Ok(None)` when nowhere. A bad address is refused when the
/// config is loaded, so `Err` only comes from a config built some other way.
pub fn channel_of(config: &Config, env: &str) -> Result<Option<ChannelAddress>, String> {
    let Ok((_, settings)) = config.environment(env) else {
        return Ok(None);
    };
    settings
        .announce
        .as_deref()
        .map(ChannelAddress::parse)
        .transpose()
        .map_err(|e| format!("environments.{env}.announce: {e}"))
}

/// The channel something was asked in, as an address (none for the CLI, which posts nothing).
/// `channel` is stored as jobs store it: [`ChannelAddress::key`].
pub fn asked_in(surface: Surface, channel: &str) -> Option<ChannelAddress> {
    ChannelAddress::from_key(surface.chat()?.as_str(), channel).ok()
}

/// Announces `text` in `env`'s announce channel, once per `key` (whoever calls with the same
/// key later queues nothing), unless it was asked in that very channel (`asked_in`): there
/// its own messages already say it.
pub fn announce(
    store: &Store,
    config: &Config,
    env: &str,
    text: &str,
    key: &str,
    asked_in: Option<&ChannelAddress>,
) -> Announced {
    let to = match target(config, env, asked_in) {
        Ok(to) => to,
        Err(not) => return not,
    };
    let text = config.redactor().redact(text);
    match store.enqueue_once(&to, &text, key) {
        Ok(true) => Announced::Queued,
        Ok(false) => Announced::AlreadyQueued,
        Err(e) => failed(config, env, key, &e.to_string()),
    }
}

/// Announces an approval request with its buttons, tied to `job` (the request's message is
/// edited with each decision once posted). One process files a request once: no key.
pub fn request(
    store: &Store,
    config: &Config,
    env: &str,
    text: &str,
    buttons: &[(String, String)],
    job: u64,
) -> Announced {
    let to = match target(config, env, None) {
        Ok(to) => to,
        Err(not) => return not,
    };
    let text = config.redactor().redact(text);
    match store.enqueue_to(&to, &text, buttons, Some(job)) {
        Ok(_) => Announced::Queued,
        Err(e) => failed(config, env, &format!("job-{job}-request"), &e.to_string()),
    }
}

/// The address to post to, or why nothing is posted.
fn target(config: &Config, env: &str, asked_in: Option<&ChannelAddress>) -> Result<ChannelAddress, Announced> {
    match channel_of(config, env) {
        Ok(None) => Err(Announced::NoChannel),
        Ok(Some(to)) if asked_in == Some(&to) => Err(Announced::AskedThere),
        Ok(Some(to)) => Ok(to),
        Err(e) => Err(failed(config, env, "", &e)),
    }
}

fn failed(config: &Config, env: &str, key: &str, error: &str) -> Announced {
    let error = config.redactor().redact(error);
    tracing::warn!(env = %env, key = %key, error = %error, "cannot queue the announcement");
    Announced::Failed(error)
}

/// A job as its announcements tell it.
#[derive(Debug, Clone, Copy)]
pub struct JobFacts<'a> {
    pub id: u64,
    pub env: &'a str,
    pub action: &'a Action,
    /// Who asked for it (a display name).
    pub who: &'a str,
    pub surface: Surface,
    /// The channel it was asked in, as jobs store it.
    pub channel: &'a str,
}

impl<'a> JobFacts<'a> {
    pub fn of(job: &'a JobRecord, action: &'a Action) -> JobFacts<'a> {
        JobFacts {
            id: job.id,
            env: &job.env,
            action,
            who: &job.requester_name,
            surface: job.platform,
            channel: &job.channel,
        }
    }

    fn announce(&self, store: &Store, config: &Config, text: &str, what: &str) -> Announced {
        if !self.action.mutates() {
            return Announced::NoChannel;
        }
        let key = format!("job-{}-{what}", self.id);
        announce(
            store,
            config,
            self.env,
            text,
            &key,
            asked_in(self.surface, self.channel).as_ref(),
        )
    }
}

/// Announces a mutating job's start (once: a resumed job's second call queues nothing).
pub fn job_started(store: &Store, config: &Config, job: &JobFacts) -> Announced {
    let version = job.action.version().and_then(|v| v.describe());
    let text = messages::job_started_announcement(
        job.id,
        job.env,
        job.action.verb(),
        version.as_deref(),
        job.who,
        job.surface,
    );
    job.announce(store, config, &text, "start")
}

/// Announces a mutating job's end: its state, the first line of its result (an error's root
/// cause, already redacted) and how long it took.
pub fn job_ended(
    store: &Store,
    config: &Config,
    job: &JobFacts,
    state: JobState,
    result: &str,
    took: Duration,
) -> Announced {
    let first = result.lines().find(|l| !l.trim().is_empty()).unwrap_or_default();
    let text = messages::job_ended_announcement(job.id, job.env, job.action.verb(), state, first, took);
    job.announce(store, config, &text, "end")
}

/// Announces the end of a job recorded in the store that ended without its owner (a CLI run
/// whose process died): `state` with `reason`, timed from its start.
pub fn job_ended_without_owner(store: &Store, config: &Config, job: &JobRecord, state: JobState, reason: &str) {
    let Ok(action) = Action::from_stored(&job.action, &job.args) else {
        return;
    };
    let took = job
        .started_at
        .and_then(|s| (chrono::Utc::now() - s).to_std().ok())
        .unwrap_or_default();
    job_ended(store, config, &JobFacts::of(job, &action), state, reason, took);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(text: &str) -> ChannelAddress {
        ChannelAddress::parse(text).unwrap()
    }

    #[test]
    fn the_channel_a_job_was_asked_in_compares_with_the_announce_address() {
        // Jobs store a console channel with its prefix, other platforms' as their ids.
        assert_eq!(
            asked_in(Surface::CONSOLE, "console:carol"),
            Some(address("console:carol"))
        );
        assert_eq!(
            asked_in(Surface::DISCORD, "112233445566778899"),
            Some(address("discord:112233445566778899"))
        );
        assert_eq!(
            asked_in(Surface::SLACK, "C0123ABCDEF"),
            Some(address("slack:C0123ABCDEF"))
        );
        assert_ne!(
            asked_in(Surface::CONSOLE, "console:alice"),
            Some(address("console:carol"))
        );
        // The same id on another platform is another channel.
        assert_ne!(
            asked_in(Surface::SLACK, "C0123ABCDEF"),
            asked_in(Surface::DISCORD, "C0123ABCDEF")
        );
        // The CLI posts nothing: it is never asked in a channel.
        assert_eq!(asked_in(Surface::Cli, "cli:ops1"), None);
    }

    #[test]
    fn job_announcements_are_one_line_each() {
        let start = messages::job_started_announcement(
            7,
            "staging",
            "deploy",
            Some("main @ 1a2b3c4d"),
            "carol",
            Surface::SLACK,
        );
        assert_eq!(
            start,
            "▶️ **staging deploy** (main @ 1a2b3c4d) · job #7 · started by carol from Slack"
        );
        let took = Duration::from_secs(75);
        let end = |state, detail| messages::job_ended_announcement(7, "staging", "deploy", state, detail, took);
        assert_eq!(
            end(JobState::Succeeded, "deployed"),
            "✅ **staging deploy** · job #7 · succeeded in 1m 15s"
        );
        assert_eq!(
            end(JobState::Failed, "stack argos-staging is ROLLBACK_COMPLETE"),
            "❌ **staging deploy** · job #7 · failed after 1m 15s: stack argos-staging is ROLLBACK_COMPLETE"
        );
        assert_eq!(
            end(JobState::Cancelled, "cancelled"),
            "🛑 **staging deploy** · job #7 · cancelled after 1m 15s"
        );
        assert!(end(JobState::Interrupted, "the CLI process that ran it stopped")
            .starts_with("⚠️ **staging deploy** · job #7 · interrupted after 1m 15s: the CLI"));
        // A name with a line break stays on one line.
        let odd = messages::job_started_announcement(7, "staging", "clean", None, "eve\nmallory", Surface::CONSOLE);
        assert!(!odd.contains('\n'), "{odd}");
    }
}
