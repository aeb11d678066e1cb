//! Pushed stack events: what the events queue's consumer stored, kept by stack and operation
//! (the client request token Argos set on the call), so that whichever replica owns a job reads
//! its stack's events here, also after a takeover; and the per-account lease that lets one
//! replica at a time long-poll the queue (a dead one's lease runs out and another takes it).

use std::time::Duration;

use super::sql::params;
use super::{parse_time, Context, Store, StoreResult};
use crate::progress::StackEvent;

/// One stored event, with its arrival order (`seq`) in the store.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredStackEvent {
    pub seq: i64,
    pub token: String,
    pub event: StackEvent,
}

impl Store {
    /// Stores events as they came off the queue (each with the operation's client request
    /// token, empty when CloudFormation had none); an event whose id is already stored is a
    /// redelivery and drops. Returns how many were new. One transaction: the caller deletes
    /// the messages from the queue only after this returns.
    pub fn store_stack_events(&self, events: &[(StackEvent, String)]) -> StoreResult<usize> {
        self.tx(|db| {
            let mut new = 0;
            for (e, token) in events {
                let at = e
                    .timestamp
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                    .unwrap_or_default();
                new += db.execute(
                    "INSERT INTO stack_events (event_id, stack_id, stack_name, token, at, logical_id, physical_id,
                         resource_type, status, reason, stored_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, NOW_MS())
                     ON CONFLICT DO NOTHING",
                    params![
                        &e.event_id,
                        &e.stack_id,
                        &e.stack_name,
                        token,
                        at,
                        &e.logical_id,
                        &e.physical_id,
                        &e.resource_type,
                        &e.status,
                        e.reason.clone()
                    ],
                )? as usize;
            }
            Ok(new)
        })
        .ctx("store stack events")
        .inspect(|new| {
            if *new > 0 {
                self.stack_events_written.send_modify(|n| *n += 1);
            }
        })
    }

    /// Changes whenever this process stores new stack events (a watcher waits on it between
    /// its looks at the store).
    pub fn stack_events_written(&self) -> tokio::sync::watch::Receiver<u64> {
        self.stack_events_written.subscribe()
    }

    /// The events of one operation on `stack_id` (by its client request token) stored after
    /// `after_seq`, ordered by event time (they may arrive out of order).
    pub fn stack_events_since(
        &self,
        stack_id: &str,
        token: &str,
        after_seq: i64,
    ) -> StoreResult<Vec<StoredStackEvent>> {
        self.with(|db| {
            db.query(
                "SELECT seq, token, event_id, stack_id, stack_name, at, logical_id, physical_id, resource_type,
                     status, reason
                 FROM stack_events WHERE stack_id = ?1 AND token = ?2 AND seq > ?3 ORDER BY at, seq",
                params![stack_id, token, after_seq],
            )
        })
        .map(|rows| {
            rows.iter()
                .map(|r| StoredStackEvent {
                    seq: r.int(0),
                    token: r.text(1),
                    event: StackEvent {
                        event_id: r.text(2),
                        stack_id: r.text(3),
                        stack_name: r.text(4),
                        timestamp: parse_time(&r.text(5)),
                        logical_id: r.text(6),
                        physical_id: r.text(7),
                        resource_type: r.text(8),
                        status: r.text(9),
                        reason: r.opt_text(10),
                    },
                })
                .collect()
        })
        .ctx("read stack events")
    }

    /// Forgets events stored longer ago than `older` (operations end within hours).
    pub fn prune_stack_events(&self, older: Duration) -> StoreResult<u64> {
        self.with(|db| {
            db.execute(
                "DELETE FROM stack_events WHERE stored_ms < NOW_MS() - ?1",
                params![older.as_millis() as i64],
            )
        })
        .ctx("prune stack events")
    }

    /// Takes or renews the lease on `account`'s long poll for `owner`: true when `owner` holds
    /// it now (it was free, expired, or already `owner`'s). Times are the database's clock.
    pub fn claim_event_poll(&self, account: &str, owner: &str, lease: Duration) -> StoreResult<bool> {
        let lease_ms = lease.as_millis().min(i64::MAX as u128) as i64;
        self.with(|db| {
            db.query_opt(
                "INSERT INTO event_pollers (account, owner, expires_ms) VALUES (?1, ?2, NOW_MS() + ?3)
                 ON CONFLICT (account) DO UPDATE SET owner = excluded.owner, expires_ms = excluded.expires_ms
                 WHERE event_pollers.owner = excluded.owner OR event_pollers.expires_ms < NOW_MS()
                 RETURNING owner",
                params![account, owner, lease_ms],
            )
        })
        .map(|row| row.is_some())
        .ctx("claim the events queue's poll")
    }

    /// Gives the poll up at once (a clean stop), if `owner` holds it.
    pub fn release_event_poll(&self, account: &str, owner: &str) -> StoreResult<()> {
        self.with(|db| {
            db.execute(
                "UPDATE event_pollers SET expires_ms = 0 WHERE account = ?1 AND owner = ?2",
                params![account, owner],
            )
        })
        .map(|_| ())
        .ctx("release the events queue's poll")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, at: &str, logical: &str, status: &str) -> StackEvent {
        StackEvent {
            event_id: id.into(),
            stack_name: "argos-staging".into(),
            stack_id: "arn:aws:cloudformation:us-east-1:1:stack/argos-staging/x".into(),
            timestamp: parse_time(at),
            logical_id: logical.into(),
            physical_id: String::new(),
            resource_type: "AWS::EC2::SecurityGroup".into(),
            status: status.into(),
            reason: None,
        }
    }

    #[test]
    fn a_redelivered_event_drops_and_events_come_back_in_event_time_order() {
        let s = Store::in_memory().unwrap();
        let late = event("e2", "2026-01-01T00:00:05Z", "Web", "CREATE_COMPLETE");
        let early = event("e1", "2026-01-01T00:00:01Z", "Web", "CREATE_IN_PROGRESS");
        let other_op = event("e3", "2026-01-01T00:00:02Z", "Web", "DELETE_IN_PROGRESS");
        let t = "argos-job7-create".to_string();
        assert_eq!(s.store_stack_events(&[(late.clone(), t.clone())]).unwrap(), 1);
        assert_eq!(
            s.store_stack_events(&[
                (early.clone(), t.clone()),
                (late.clone(), t.clone()),
                (other_op, "other".into())
            ])
            .unwrap(),
            2,
            "the redelivered e2 drops"
        );
        let got = s.stack_events_since(&late.stack_id, &t, 0).unwrap();
        let ids: Vec<&str> = got.iter().map(|e| e.event.event_id.as_str()).collect();
        assert_eq!(ids, ["e1", "e2"]);
        assert_eq!(got[0].event, early);
        let after = got.iter().map(|e| e.seq).max().unwrap();
        assert!(s.stack_events_since(&late.stack_id, &t, after).unwrap().is_empty());
    }

    #[test]
    fn one_replica_polls_an_account_until_its_lease_runs_out() {
        let s = Store::in_memory().unwrap();
        let lease = Duration::from_millis(200);
        assert!(s.claim_event_poll("default@us-east-1", "a", lease).unwrap());
        assert!(
            !s.claim_event_poll("default@us-east-1", "b", lease).unwrap(),
            "a holds it"
        );
        assert!(s.claim_event_poll("default@us-east-1", "a", lease).unwrap(), "a renews");
        assert!(
            s.claim_event_poll("profile:x@us-east-1", "b", lease).unwrap(),
            "another account"
        );
        std::thread::sleep(Duration::from_millis(250));
        assert!(
            s.claim_event_poll("default@us-east-1", "b", lease).unwrap(),
            "a's lease ran out"
        );
        assert!(!s.claim_event_poll("default@us-east-1", "a", lease).unwrap());
        s.release_event_poll("default@us-east-1", "b").unwrap();
        assert!(
            s.claim_event_poll("default@us-east-1", "a", lease).unwrap(),
            "released at once"
        );
    }
}
