//! Rate-limit holds shared by the replicas that use one platform token: when the platform
//! answers "you are globally limited for N seconds", every replica must wait, not only the one
//! that was told. The hold's end is computed and compared with the database's own clock, so
//! the replicas' clocks need not agree. Both calls give up at once when the database is
//! unreachable (the caller keeps its own hold in memory meanwhile).

use std::time::Duration;

use super::sql::{params, Sql};
use super::{Context, Db, Store, StoreResult};

impl Store {
    /// Runs `f` once, without waiting for an unreachable database: a rate-limit hold is asked
    /// for before every request to the platform, which must not stall behind a reconnect.
    fn once<T>(&self, mut f: impl FnMut(&mut dyn Sql) -> StoreResult<T>) -> StoreResult<T> {
        self.retrying_for(Duration::ZERO, |backend| f(&mut Db { backend }))
    }
}

impl Store {
    /// Records that `platform` refuses the token for `wait` from now (the database's clock). A
    /// shorter hold never cuts a longer one short.
    pub fn hold_platform(&self, platform: &str, wait: Duration) -> StoreResult<()> {
        let wait_ms = wait.as_millis().min(i64::MAX as u128) as i64;
        self.once(|db| {
            db.execute(
                "INSERT INTO rate_limit_holds (platform, until_ms) VALUES (?1, NOW_MS() + ?2)
                 ON CONFLICT (platform) DO UPDATE SET until_ms = CASE
                     WHEN excluded.until_ms > rate_limit_holds.until_ms THEN excluded.until_ms
                     ELSE rate_limit_holds.until_ms END",
                params![platform, wait_ms],
            )
        })
        .map(|_| ())
        .ctx("record a rate-limit hold")
    }

    /// How much longer `platform`'s hold lasts (the database's clock); `None` when there is none.
    pub fn platform_hold(&self, platform: &str) -> StoreResult<Option<Duration>> {
        self.once(|db| {
            db.query_opt(
                "SELECT until_ms - NOW_MS() FROM rate_limit_holds WHERE platform = ?1 AND until_ms > NOW_MS()",
                params![platform],
            )
        })
        .map(|row| row.map(|r| Duration::from_millis(r.int(0).max(0) as u64)))
        .ctx("read a rate-limit hold")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_lasts_its_time_and_a_shorter_one_does_not_cut_it() {
        let s = Store::in_memory().unwrap();
        assert_eq!(s.platform_hold("discord").unwrap(), None);
        s.hold_platform("discord", Duration::from_secs(60)).unwrap();
        let left = s.platform_hold("discord").unwrap().expect("held");
        assert!(
            left > Duration::from_secs(59) && left <= Duration::from_secs(60),
            "{left:?}"
        );
        s.hold_platform("discord", Duration::from_secs(1)).unwrap();
        assert!(s.platform_hold("discord").unwrap().unwrap() > Duration::from_secs(59));
        assert_eq!(s.platform_hold("slack").unwrap(), None, "holds are per platform");
        s.hold_platform("slack", Duration::ZERO).unwrap();
        assert_eq!(s.platform_hold("slack").unwrap(), None, "an ended hold is no hold");
    }
}
