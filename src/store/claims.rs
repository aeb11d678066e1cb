//! Chat-event claims and the outbox. Every replica may see the same chat event (Discord
//! delivers it to every session on a shard; Slack redelivers when an ack is late): the one
//! whose insert of the event's id lands answers it. The outbox carries messages that a
//! process without the chat connection (the CLI, another console) wants posted: a replica
//! serving the platform (or the channel) claims each once and delivers it.

use std::time::Duration;

use super::sql::{params, Value};
use super::{now, Context, Store, StoreResult};
use crate::address::ChannelAddress;

/// A message waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub id: u64,
    pub platform: String,
    pub channel: String,
    pub text: String,
    /// Buttons under it: (label, command).
    pub buttons: Vec<(String, String)>,
    /// The job whose approval request this is (its message id is recorded once posted).
    pub approval_job: Option<u64>,
}

impl OutboxMessage {
    /// Where it goes, read with the one parser for channel addresses.
    pub fn address(&self) -> Result<ChannelAddress, String> {
        ChannelAddress::from_key(&self.platform, &self.channel)
    }
}

impl Store {
    /// Claims a chat event for `replica`: true for exactly one caller per (platform, id).
    pub fn claim_event(&self, platform: &str, event_id: &str, replica: &str) -> StoreResult<bool> {
        self.with(|db| {
            db.execute(
                "INSERT INTO event_claims (platform, event_id, replica, claimed_ms) VALUES (?1, ?2, ?3, NOW_MS())
                 ON CONFLICT DO NOTHING",
                params![platform, event_id, replica],
            )
        })
        .map(|n| n == 1)
        .ctx("claim chat event")
    }

    /// Forgets claims older than `older` (platforms do not redeliver after minutes).
    pub fn prune_event_claims(&self, older: Duration) -> StoreResult<u64> {
        self.with(|db| {
            db.execute(
                "DELETE FROM event_claims WHERE claimed_ms < NOW_MS() - ?1",
                params![older.as_millis() as i64],
            )
        })
        .ctx("prune chat-event claims")
    }

    /// Queues a message for a platform and a channel as stored (a [`ChannelAddress::key`]).
    /// Callers with an address use [`Store::enqueue_to`], which cannot get the form wrong.
    pub fn enqueue_message(&self, platform: &str, channel: &str, text: &str) -> StoreResult<u64> {
        self.enqueue_raw(platform, channel, text, &[], None)
    }

    /// Queues a message for `to`, with buttons; `approval_job` ties it to that job's approval
    /// request. It is stored under the address's key, which the adapter serving that
    /// channel claims (`ChatPort::own_channel`, in the bot).
    pub fn enqueue_to(
        &self,
        to: &ChannelAddress,
        text: &str,
        buttons: &[(String, String)],
        approval_job: Option<u64>,
    ) -> StoreResult<u64> {
        self.enqueue_raw(to.platform().as_str(), &to.key(), text, buttons, approval_job)
    }

    /// Queues a message for `to` once per `key`: a second call with the same key (another
    /// replica, or a job taken over that announces its start again) queues nothing and
    /// returns false.
    pub fn enqueue_once(&self, to: &ChannelAddress, text: &str, key: &str) -> StoreResult<bool> {
        self.with(|db| {
            db.execute(
                "INSERT INTO outbox (platform, channel, text, created_at, buttons, dedup)
                 VALUES (?1, ?2, ?3, ?4, '[]', ?5) ON CONFLICT DO NOTHING",
                params![to.platform().as_str(), to.key().as_str(), text, now(), key],
            )
        })
        .map(|n| n == 1)
        .ctx("queue message once")
    }

    fn enqueue_raw(
        &self,
        platform: &str,
        channel: &str,
        text: &str,
        buttons: &[(String, String)],
        approval_job: Option<u64>,
    ) -> StoreResult<u64> {
        let buttons = serde_json::to_string(buttons).unwrap_or_else(|_| "[]".into());
        self.with(|db| {
            Ok(db
                .query_opt(
                    "INSERT INTO outbox (platform, channel, text, created_at, buttons, approval_job)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
                    params![platform, channel, text, now(), buttons.as_str(), approval_job],
                )?
                .map(|r| r.int(0) as u64)
                .unwrap_or(0))
        })
        .ctx("queue message")
    }

    /// Claims undelivered messages for the platforms in `platforms` or the channels in
    /// `channels` (a console serves only its own channel). Messages claimed by a replica that
    /// died before delivering them are claimed again.
    pub fn claim_outbox(
        &self,
        replica: &str,
        platforms: &[&str],
        channels: &[&str],
    ) -> StoreResult<Vec<OutboxMessage>> {
        if platforms.is_empty() && channels.is_empty() {
            return Ok(Vec::new());
        }
        let mut values: Vec<Value> = vec![replica.into()];
        let mut list = |items: &[&str]| -> String {
            let marks: Vec<String> = items
                .iter()
                .map(|i| {
                    values.push((*i).into());
                    format!("?{}", values.len())
                })
                .collect();
            if marks.is_empty() {
                "NULL".into()
            } else {
                marks.join(", ")
            }
        };
        let (p, c) = (list(platforms), list(channels));
        self.tx(|db| {
            db.execute(
                "UPDATE outbox SET claimed_by = NULL WHERE delivered_at IS NULL AND claimed_by IS NOT NULL
                 AND claimed_by NOT IN (SELECT id FROM replicas WHERE expires_ms >= NOW_MS())",
                &[],
            )?;
            // `claimed_by IS NULL` in the outer condition too: PostgreSQL re-checks it on the
            // newest row version after waiting for a competitor's row lock.
            let rows = db.query(
                &format!(
                    "UPDATE outbox SET claimed_by = ?1 WHERE claimed_by IS NULL AND delivered_at IS NULL AND id IN (
                         SELECT id FROM outbox WHERE claimed_by IS NULL AND delivered_at IS NULL
                         AND (platform IN ({p}) OR channel IN ({c})) ORDER BY id LIMIT 20)
                     RETURNING id, platform, channel, text, buttons, approval_job"
                ),
                &values,
            )?;
            let mut out: Vec<OutboxMessage> = rows
                .iter()
                .map(|r| OutboxMessage {
                    id: r.int(0) as u64,
                    platform: r.text(1),
                    channel: r.text(2),
                    text: r.text(3),
                    buttons: serde_json::from_str(&r.text(4)).unwrap_or_default(),
                    approval_job: r.opt_int(5).map(|j| j as u64),
                })
                .collect();
            out.sort_by_key(|m| m.id);
            Ok(out)
        })
        .ctx("claim outbox messages")
    }

    pub fn mark_delivered(&self, id: u64) -> StoreResult<()> {
        self.with(|db| db.execute("UPDATE outbox SET delivered_at = ?2 WHERE id = ?1", params![id, now()]))
            .ctx("mark message delivered")?;
        Ok(())
    }
}
