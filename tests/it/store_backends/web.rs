//! The web page's store, on both backends: a job's log appended in batches and read back as a
//! tail from any offset, bounded to its head and tail with a line saying what was dropped;
//! sign-in links used once and in time, sessions that keep only hashes of their tokens.
use super::*;

use argos::store::{dropped_line, LinkRefusal, LogTail};

on_both_backends! {
    a_log_is_read_back_as_a_tail_from_any_offset => a_log_is_read_back_as_a_tail_from_any_offset_sqlite, a_log_is_read_back_as_a_tail_from_any_offset_postgres;
    a_long_log_keeps_its_head_and_tail_and_says_what_was_dropped => a_long_log_keeps_its_head_and_tail_and_says_what_was_dropped_sqlite, a_long_log_keeps_its_head_and_tail_and_says_what_was_dropped_postgres;
    a_sign_in_link_opens_one_session_once => a_sign_in_link_opens_one_session_once_sqlite, a_sign_in_link_opens_one_session_once_postgres;
    an_expired_link_and_an_expired_session_open_nothing => an_expired_link_and_an_expired_session_open_nothing_sqlite, an_expired_link_and_an_expired_session_open_nothing_postgres;
}

const LIMIT: u64 = 4096;

fn a_log_is_read_back_as_a_tail_from_any_offset(db: &TestDb) {
    let s = db.open();
    let (id, token) = started(s.start_job(&new_job("staging", "deploy"), "r1", lease()).unwrap());
    s.append_log(id, "TASK [app : install]\n", LIMIT).unwrap();
    s.append_log(id, "ok: [web-1] é\n", LIMIT).unwrap();
    s.append_log(id, "", LIMIT).unwrap();
    let whole = "TASK [app : install]\nok: [web-1] é\n";
    assert_eq!(s.log_end(id).unwrap(), whole.len() as u64);
    assert_eq!(
        s.log_since(id, 0, 1 << 20).unwrap(),
        LogTail {
            text: whole.into(),
            next_offset: whole.len() as u64,
            finished: false
        },
        "a running job's log is never finished"
    );
    // From the middle of the first chunk, and a limited read that goes on where it stopped.
    let first = s.log_since(id, 5, 10).unwrap();
    assert_eq!(first.text, "[app : ins");
    let rest = s.log_since(id, first.next_offset, 1 << 20).unwrap();
    assert_eq!(format!("{}{}", first.text, rest.text), &whole[5..]);
    // Nothing new: an empty answer at the same offset.
    let idle = s.log_since(id, whole.len() as u64, 100).unwrap();
    assert_eq!((idle.text.as_str(), idle.next_offset), ("", whole.len() as u64));
    // An offset past the end is brought back to it.
    assert_eq!(s.log_since(id, 10_000, 100).unwrap().next_offset, whole.len() as u64);
    // Another handle (another replica) reads the same log; the end of a finished job's log
    // says so.
    s.finish_and_release(id, token, JobState::Succeeded, "deployed")
        .unwrap();
    let other = db.open();
    let end = other.log_since(id, 0, 1 << 20).unwrap();
    assert_eq!((end.text.as_str(), end.finished), (whole, true));
    assert!(
        !other.log_since(id, 0, 5).unwrap().finished,
        "not finished before the end is read"
    );
    assert_eq!(
        other.log_since(id + 1000, 0, 100).unwrap().text,
        "",
        "no such job, no log"
    );
}

fn a_long_log_keeps_its_head_and_tail_and_says_what_was_dropped(db: &TestDb) {
    let s = db.open();
    let (id, _) = started(s.start_job(&new_job("staging", "deploy"), "r1", lease()).unwrap());
    let line = |i: usize| format!("line {i:05} {}\n", "x".repeat(40));
    let mut whole = String::new();
    for batch in 0..50 {
        let text: String = (batch * 10..batch * 10 + 10).map(line).collect();
        s.append_log(id, &text, LIMIT).unwrap();
        whole.push_str(&text);
    }
    assert_eq!(
        s.log_end(id).unwrap(),
        whole.len() as u64,
        "offsets count every byte written"
    );
    let read = s.log_since(id, 0, 1 << 20).unwrap();
    assert_eq!(read.next_offset, whole.len() as u64);
    assert!(read.text.starts_with(&line(0)), "the head is kept");
    assert!(read.text.ends_with(&line(499)), "the tail is kept");
    // What is kept is bounded by the limit, give or take a chunk at each end.
    let dropped_at = read.text.find("\n[… ").expect("a line says what was dropped");
    let kept = read.text.len() - dropped_line(0).len();
    assert!(
        kept as u64 <= LIMIT + 2 * LIMIT / 8,
        "kept {kept} bytes of a {LIMIT}-byte limit"
    );
    assert!(kept as u64 >= LIMIT - 2 * LIMIT / 8, "kept only {kept} bytes");
    // The dropped line counts exactly what is missing.
    let head = &read.text[..dropped_at];
    let tail_start = read.text.rfind("]\n").unwrap() + 2;
    let tail = &read.text[tail_start..];
    let missing = whole.len() - head.len() - tail.len();
    assert!(
        read.text.contains(&dropped_line(missing as u64)),
        "{}",
        &read.text[dropped_at..tail_start]
    );
    assert!(whole.starts_with(head) && whole.ends_with(tail));
    // A reader following the tail from an offset in the dropped part goes on from the tail.
    let late = s.log_since(id, head.len() as u64 + 10, 1 << 20).unwrap();
    assert!(late.text.starts_with(&dropped_line((missing - 10) as u64)));
    assert!(late.text.ends_with(tail));
}

fn a_sign_in_link_opens_one_session_once(db: &TestDb) {
    let s = db.open();
    let alice = Identity {
        platform_roles: vec!["r-ops".into(), "r-dev".into()],
        ..who("discord", "u-alice", "Alice")
    };
    s.create_sign_in_link("link-token-1", &alice, 60_000).unwrap();
    assert_eq!(
        s.web_session("session-1").unwrap(),
        None,
        "no session before signing in"
    );
    let opened = s.redeem_sign_in_link("link-token-1", "session-1", 3_600_000).unwrap();
    assert_eq!(opened, Ok(alice.clone()));
    assert_eq!(
        db.open().web_session("session-1").unwrap(),
        Some(alice),
        "any replica knows it"
    );
    assert_eq!(
        s.redeem_sign_in_link("link-token-1", "session-2", 3_600_000).unwrap(),
        Err(LinkRefusal::Used)
    );
    assert_eq!(s.web_session("session-2").unwrap(), None, "a used link opens nothing");
    // Signing out ends the session everywhere.
    assert!(db.open().end_web_session("session-1").unwrap());
    assert_eq!(s.web_session("session-1").unwrap(), None);
    assert!(!s.end_web_session("session-1").unwrap(), "once");
    assert_eq!(
        s.redeem_sign_in_link("no-such-link", "session-3", 3_600_000).unwrap(),
        Err(LinkRefusal::Unknown)
    );
    // Only hashes are kept: the raw tokens appear nowhere in the database.
    if let TestDb::Sqlite { path, .. } = db {
        drop(s);
        let bytes = std::fs::read(path).unwrap();
        let wal = std::fs::read(path.with_extension("db-wal")).unwrap_or_default();
        for raw in ["link-token-1", "session-1"] {
            for file in [&bytes, &wal] {
                assert!(
                    !file.windows(raw.len()).any(|w| w == raw.as_bytes()),
                    "{raw} stored raw"
                );
            }
        }
    }
}

fn an_expired_link_and_an_expired_session_open_nothing(db: &TestDb) {
    let s = db.open();
    let bob = who("slack", "U-BOB", "Bob");
    s.create_sign_in_link("short-link", &bob, 0).unwrap();
    let_zero_leases_run_out();
    assert_eq!(
        s.redeem_sign_in_link("short-link", "session-x", 3_600_000).unwrap(),
        Err(LinkRefusal::Expired)
    );
    assert_eq!(s.web_session("session-x").unwrap(), None);
    s.create_sign_in_link("good-link", &bob, 60_000).unwrap();
    assert_eq!(s.redeem_sign_in_link("good-link", "brief", 0).unwrap(), Ok(bob));
    let_zero_leases_run_out();
    assert_eq!(
        s.web_session("brief").unwrap(),
        None,
        "an expired session is no session"
    );
}
