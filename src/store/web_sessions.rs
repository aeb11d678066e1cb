//! Who may look at the web page: sign-in links (from `web` in chat, valid once and for a few
//! minutes) and the sessions they open. Only SHA-256 hashes of the tokens are stored, so a
//! copy of the database opens no session; times are the database's clock, like leases.

use super::sql::{params, Row, Sql};
use super::{Context, Store, StoreResult};
use crate::address::Surface;
use crate::permissions::Identity;

/// Why a sign-in link opened no session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRefusal {
    /// No such link (mistyped, or from another database).
    Unknown,
    /// Someone signed in with it already.
    Used,
    /// It was not used in time.
    Expired,
}

/// A new random token (256 bits from the operating system, in hex) for a link or a session.
pub fn new_token() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness from the operating system: {e}"))?;
    Ok(hex::encode(bytes))
}

/// The hex SHA-256 of a token: what the store keeps in its place.
pub fn token_hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

fn identity_params(who: &Identity) -> (String, String, String, String) {
    (
        who.platform.as_str().to_string(),
        who.user_id.clone(),
        who.display_name.clone(),
        who.platform_roles.join("\n"),
    )
}

/// The identity in columns `at..at + 4` of a row (platform, user id, name, platform roles).
fn identity_from(row: &Row, at: usize) -> Option<Identity> {
    let platform = Surface::parse(&row.text(at))?;
    let roles = row.text(at + 3);
    Some(Identity {
        platform,
        user_id: row.text(at + 1),
        display_name: row.text(at + 2),
        platform_roles: roles.lines().map(str::to_string).filter(|r| !r.is_empty()).collect(),
    })
}

fn forget_expired(db: &mut dyn Sql) -> StoreResult<()> {
    // A used or lapsed link is kept an hour, so that using it again says "used" or "expired"
    // rather than "unknown".
    db.execute("DELETE FROM web_links WHERE expires_ms < NOW_MS() - 3600000", &[])?;
    db.execute("DELETE FROM web_sessions WHERE expires_ms < NOW_MS()", &[])?;
    Ok(())
}

impl Store {
    /// Records a sign-in link for `who`, valid for `valid_ms` from now.
    pub fn create_sign_in_link(&self, token: &str, who: &Identity, valid_ms: u64) -> StoreResult<()> {
        let (platform, user, name, roles) = identity_params(who);
        self.tx(|db| {
            forget_expired(db)?;
            db.execute(
                "INSERT INTO web_links (token_hash, platform, user_id, display_name, platform_roles, expires_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, NOW_MS() + ?6)",
                params![token_hash(token), &platform, &user, &name, &roles, valid_ms as i64],
            )?;
            Ok(())
        })
        .ctx("create a sign-in link")
    }

    /// Uses a sign-in link: once, in time. Opens a session with `session_token` lasting
    /// `session_ms` for the link's person, and returns who that is.
    pub fn redeem_sign_in_link(
        &self,
        link_token: &str,
        session_token: &str,
        session_ms: u64,
    ) -> StoreResult<Result<Identity, LinkRefusal>> {
        self.tx(|db| {
            let Some(row) = db.query_opt(
                "SELECT used_ms, CASE WHEN expires_ms < NOW_MS() THEN 1 ELSE 0 END, platform, user_id, display_name, platform_roles
                 FROM web_links WHERE token_hash = ?1 FOR_UPDATE",
                params![token_hash(link_token)],
            )?
            else {
                return Ok(Err(LinkRefusal::Unknown));
            };
            if row.opt_int(0).is_some() {
                return Ok(Err(LinkRefusal::Used));
            }
            if row.int(1) == 1 {
                return Ok(Err(LinkRefusal::Expired));
            }
            let Some(who) = identity_from(&row, 2) else {
                return Ok(Err(LinkRefusal::Unknown));
            };
            db.execute(
                "UPDATE web_links SET used_ms = NOW_MS() WHERE token_hash = ?1",
                params![token_hash(link_token)],
            )?;
            let (platform, user, name, roles) = identity_params(&who);
            db.execute(
                "INSERT INTO web_sessions (token_hash, platform, user_id, display_name, platform_roles, created_ms, expires_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, NOW_MS(), NOW_MS() + ?6)",
                params![token_hash(session_token), &platform, &user, &name, &roles, session_ms as i64],
            )?;
            Ok(Ok(who))
        })
        .ctx("use a sign-in link")
    }

    /// Ends a session (signing out): its token opens nothing any more, in any browser.
    pub fn end_web_session(&self, session_token: &str) -> StoreResult<bool> {
        self.with(|db| {
            db.execute(
                "DELETE FROM web_sessions WHERE token_hash = ?1",
                params![token_hash(session_token)],
            )
        })
        .map(|n| n == 1)
        .ctx("end a web session")
    }

    /// The person a session token belongs to, while the session lasts.
    pub fn web_session(&self, session_token: &str) -> StoreResult<Option<Identity>> {
        self.with(|db| {
            let row = db.query_opt(
                "SELECT platform, user_id, display_name, platform_roles FROM web_sessions
                 WHERE token_hash = ?1 AND expires_ms >= NOW_MS()",
                params![token_hash(session_token)],
            )?;
            Ok(row.and_then(|r| identity_from(&r, 0)))
        })
        .ctx("read a web session")
    }
}
