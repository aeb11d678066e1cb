//! Notices about an environment that are not a reply: holds taken and ended, freezes,
//! reminders. Each goes through the outbox with a key, so a notice that several replicas
//! (or a restarted one) queue is posted once, by whichever replica serves the channel.
//! [`watch`] is the periodic half: reminders before a hold lapses, and the ends of holds
//! and freezes that nobody ended by hand, found by any live replica.

use crate::address::{ChannelAddress, Surface};
use crate::bot::port::ChatEvent;
use crate::bot::{announcements, messages, Inner};
use crate::config::Config;
use crate::redact::Redactor;
use crate::store::{HoldRecord, Store};

/// Queues `text` once per `key` for `to`.
fn queue_with(store: &Store, redactor: &Redactor, to: &ChannelAddress, text: &str, key: &str) {
    // One message per channel: a notice for several environments announced in one channel
    // is posted there once.
    let key = format!("{key}@{}:{}", to.platform().as_str(), to.key());
    if let Err(e) = store.enqueue_once(to, &redactor.redact(text), &key) {
        tracing::warn!(error = %e, "cannot queue a notice");
    }
}

fn queue(inner: &Inner, to: &ChannelAddress, text: &str, key: &str) {
    queue_with(&inner.store, &inner.engine.redactor, to, text, key);
}

/// Posts `text` once to `env`'s announce channel (nothing when it has none), from any
/// process (the CLI too), through [`crate::bot::announcements`].
pub(crate) fn post_with(store: &Store, config: &Config, env: &str, text: &str, key: &str) {
    post_unless_asked_in(store, config, env, text, key, None);
}

fn post_unless_asked_in(
    store: &Store,
    config: &Config,
    env: &str,
    text: &str,
    key: &str,
    asked_in: Option<&ChannelAddress>,
) {
    // One message per channel: a notice about several environments announced in one channel
    // is posted there once.
    if let Ok(Some(to)) = announcements::channel_of(config, env) {
        let key = format!("{key}@{to}");
        announcements::announce(store, config, env, text, &key, asked_in);
    }
}

/// [`post`] for a command's own notice: nothing more where it was asked in the announce
/// channel itself (the reply is there already).
pub(crate) fn post_answering(inner: &Inner, ev: &ChatEvent, env: &str, text: &str, key: &str) {
    let asked_in = announcements::asked_in(ev.identity.platform, &ev.channel);
    post_unless_asked_in(&inner.store, &inner.engine.config, env, text, key, asked_in.as_ref());
}

/// [`post_with`] from the bot.
pub(crate) fn post(inner: &Inner, env: &str, text: &str, key: &str) {
    post_with(&inner.store, &inner.engine.config, env, text, key);
}

/// The environments a freeze covers (all configured ones when it names none).
pub(crate) fn covered(config: &Config, envs: &[String]) -> Vec<String> {
    if envs.is_empty() {
        config.settings.environments.keys().cloned().collect()
    } else {
        envs.to_vec()
    }
}

/// Where a hold's holder hears about it: the channel it was taken in (none from the CLI).
fn holder_channel(h: &HoldRecord) -> Option<ChannelAddress> {
    match h.platform {
        Surface::Cli => None,
        Surface::Chat(p) => ChannelAddress::from_key(p.as_str(), &h.channel).ok(),
    }
}

/// Posts to the holder's channel and the environment's announce channel (once where they
/// are the same channel).
fn tell_holder_and_channel(inner: &Inner, h: &HoldRecord, text: &str, key: &str) {
    if let Some(to) = holder_channel(h) {
        queue(inner, &to, text, key);
    }
    post(inner, &h.env, text, key);
}

/// One round of the periodic half; any replica may run it, each notice goes out once.
pub(crate) fn watch(inner: &Inner) {
    let times = inner.engine.config.settings.holds.checked_times();
    for h in inner.store.holds_to_remind(times.remind_before).unwrap_or_default() {
        if matches!(inner.store.claim_reminder(h.id), Ok(true)) {
            match holder_channel(&h) {
                Some(to) => queue(
                    inner,
                    &to,
                    &messages::hold_reminder(&h),
                    &format!("hold-{}-remind", h.id),
                ),
                None => post(
                    inner,
                    &h.env,
                    &messages::hold_reminder(&h),
                    &format!("hold-{}-remind", h.id),
                ),
            }
        }
    }
    for h in inner.store.lapsed_holds().unwrap_or_default() {
        if matches!(inner.store.end_lapsed_hold(h.id), Ok(true)) {
            let ended = HoldRecord {
                released_at: Some(h.ends_at),
                ..h
            };
            let text = messages::announced::hold_ended(&ended);
            tell_holder_and_channel(inner, &ended, &text, &format!("hold-{}-end", ended.id));
        }
    }
    configured_freezes(inner);
    // Freezes that ran to their end: the key makes each end one message, whoever sees it.
    let recent = std::time::Duration::from_secs(3600);
    for f in inner.store.freezes_ended_within(recent).unwrap_or_default() {
        let id = f.id.unwrap_or(0);
        for env in covered(&inner.engine.config, &f.envs) {
            post(
                inner,
                &env,
                &messages::announced::freeze_ended(&f),
                &format!("freeze-{id}-end"),
            );
        }
    }
}

/// How long after a configured window starts (or ends) it is still announced: a replica that
/// comes up later says nothing about it.
const LATE: chrono::Duration = chrono::Duration::minutes(30);

/// The configured freeze windows that started or ended lately, announced once each.
fn configured_freezes(inner: &Inner) {
    let config = &inner.engine.config;
    let now = crate::clock::now();
    for f in &config.settings.freezes {
        if let Some(w) = crate::config::freezes::active_at(f, now).filter(|w| now - w.start < LATE) {
            let record = crate::holds::configured(config, f, w);
            let key = format!("freeze-{}-{}-start", f.name, w.start.timestamp());
            for env in &record.envs {
                post(inner, env, &messages::announced::frozen(&record), &key);
            }
        }
        // The window that held a while ago, if it is over now.
        if let Some(w) = crate::config::freezes::active_at(f, now - LATE).filter(|w| w.end <= now) {
            let record = crate::holds::configured(config, f, w);
            let key = format!("freeze-{}-{}-end", f.name, w.start.timestamp());
            for env in &record.envs {
                post(inner, env, &messages::announced::freeze_ended(&record), &key);
            }
        }
    }
}
