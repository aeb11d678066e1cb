//! The freeze window math and checks, at fixed times: DST changes, windows across midnight,
//! fixed windows, back-to-back windows, and each refusal with its key.

use super::*;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn window(start: &str, end: &str) -> Window {
    Window {
        start: at(start),
        end: at(end),
    }
}

fn recurring(name: &str, envs: &[&str], cron: &str, duration: &str, tz: &str) -> FreezeSettings {
    FreezeSettings {
        name: name.into(),
        environments: envs.iter().map(|e| e.to_string()).collect(),
        reason: "weekend".into(),
        timezone: tz.into(),
        cron: Some(cron.into()),
        duration: Some(duration.into()),
        from: None,
        until: None,
    }
}

fn fixed(name: &str, envs: &[&str], from: &str, until: &str, tz: &str) -> FreezeSettings {
    FreezeSettings {
        name: name.into(),
        environments: envs.iter().map(|e| e.to_string()).collect(),
        reason: "holidays".into(),
        timezone: tz.into(),
        cron: None,
        duration: None,
        from: Some(from.into()),
        until: Some(until.into()),
    }
}

fn settings(freezes: Vec<FreezeSettings>) -> Settings {
    let mut s: Settings =
        serde_saphyr::from_str("environments:\n  staging: {}\n  production: {}\n  qa-1: {}\n").unwrap();
    s.freezes = freezes;
    s
}

fn check_at(freezes: Vec<FreezeSettings>) -> Result<(), (String, String)> {
    check(&settings(freezes), at("2026-12-07T03:00:00Z"))
}

#[test]
fn a_friday_evening_freeze_starts_at_18_local_in_summer_and_in_winter() {
    let f = recurring("weekend", &["production"], "0 18 * * FRI", "62h", "Europe/Berlin");
    // Summer (CEST, UTC+2): Friday 2026-07-03 18:00 local is 16:00 UTC, Monday 08:00 local.
    let summer = window("2026-07-03T16:00:00Z", "2026-07-06T06:00:00Z");
    assert_eq!(active_at(&f, at("2026-07-04T12:00:00Z")), Some(summer));
    assert_eq!(
        active_at(&f, at("2026-07-03T16:00:00Z")),
        Some(summer),
        "the start is in"
    );
    assert_eq!(active_at(&f, at("2026-07-06T06:00:00Z")), None, "the end is out");
    assert_eq!(active_at(&f, at("2026-07-03T15:59:59Z")), None);
    // Winter (CET, UTC+1): 18:00 local is 17:00 UTC.
    let winter = window("2026-12-11T17:00:00Z", "2026-12-14T07:00:00Z");
    assert_eq!(active_at(&f, at("2026-12-13T23:00:00Z")), Some(winter));
    // Monday 04:00 local is still in the window of Friday 4th; the next one follows.
    let before = window("2026-12-04T17:00:00Z", "2026-12-07T07:00:00Z");
    assert_eq!(next_windows(&f, at("2026-12-07T03:00:00Z"), 2), vec![before, winter]);
    assert_eq!(next_windows(&f, at("2026-12-07T07:00:00Z"), 1), vec![winter]);
}

#[test]
fn windows_across_a_dst_change_start_at_the_same_local_time() {
    let f = recurring("weekend", &["production"], "0 18 * * FRI", "62h", "Europe/Berlin");
    // Europe/Berlin falls back on Sunday 2026-10-25: the window from Friday 23rd is still
    // 62 hours long (so it ends at 07:00 local), and the next starts at 18:00 CET.
    let windows = next_windows(&f, at("2026-10-20T00:00:00Z"), 3);
    assert_eq!(
        windows,
        vec![
            window("2026-10-23T16:00:00Z", "2026-10-26T06:00:00Z"),
            window("2026-10-30T17:00:00Z", "2026-11-02T07:00:00Z"),
            window("2026-11-06T17:00:00Z", "2026-11-09T07:00:00Z"),
        ]
    );
    let tz = f.time_zone();
    assert_eq!(format_local(windows[0].start, tz), "2026-10-23 18:00 CEST");
    assert_eq!(format_local(windows[0].end, tz), "2026-10-26 07:00 CET");
    assert_eq!(format_local(windows[1].start, tz), "2026-10-30 18:00 CET");
    // Inside the window, on the far side of the change.
    assert_eq!(active_at(&f, at("2026-10-25T12:00:00Z")), Some(windows[0]));
    // Spring forward: Friday 2027-03-26 is still CET, the next Friday CEST.
    let spring = next_windows(&f, at("2027-03-23T00:00:00Z"), 2);
    assert_eq!(format_local(spring[0].start, tz), "2027-03-26 18:00 CET");
    assert_eq!(format_local(spring[1].start, tz), "2027-04-02 18:00 CEST");
}

#[test]
fn a_nightly_window_spans_midnight() {
    let f = recurring("nightly", &["*"], "0 22 * * *", "8h", "America/New_York");
    // 22:00 EST is 03:00 UTC the next day; the window ends 06:00 local.
    let w = window("2026-12-08T03:00:00Z", "2026-12-08T11:00:00Z");
    assert_eq!(
        active_at(&f, at("2026-12-08T05:30:00Z")),
        Some(w),
        "after midnight local"
    );
    assert_eq!(
        active_at(&f, at("2026-12-08T03:30:00Z")),
        Some(w),
        "before midnight local"
    );
    assert_eq!(active_at(&f, at("2026-12-08T12:00:00Z")), None);
    assert_eq!(
        next_windows(&f, at("2026-12-08T05:30:00Z"), 2),
        vec![w, window("2026-12-09T03:00:00Z", "2026-12-09T11:00:00Z")]
    );
}

#[test]
fn a_fixed_window_holds_between_from_and_until_in_its_time_zone() {
    let f = fixed(
        "holidays",
        &["production"],
        "2026-12-24 00:00",
        "2027-01-02",
        "Europe/Berlin",
    );
    let w = window("2026-12-23T23:00:00Z", "2027-01-01T23:00:00Z");
    assert_eq!(
        next_windows(&f, at("2026-12-07T00:00:00Z"), 2),
        vec![w],
        "one window only"
    );
    assert_eq!(active_at(&f, at("2026-12-07T00:00:00Z")), None);
    assert_eq!(active_at(&f, at("2026-12-23T23:00:00Z")), Some(w));
    assert_eq!(active_at(&f, at("2027-01-01T22:59:59Z")), Some(w));
    assert_eq!(active_at(&f, at("2027-01-01T23:00:00Z")), None);
    assert_eq!(next_windows(&f, at("2027-01-02T00:00:00Z"), 2), vec![], "over");
    // RFC 3339 carries its own offset, whatever the time zone.
    let g = fixed(
        "g",
        &["*"],
        "2026-12-24T00:00:00+05:00",
        "2026-12-24T10:00:00Z",
        "Europe/Berlin",
    );
    assert_eq!(
        active_at(&g, at("2026-12-24T00:00:00Z")),
        Some(window("2026-12-23T19:00:00Z", "2026-12-24T10:00:00Z"))
    );
}

#[test]
fn back_to_back_windows_are_one_that_lifts_when_the_last_ends() {
    // Saturday and Sunday, each 24h: one freeze from Saturday 00:00 to Monday 00:00.
    let f = recurring("weekend", &["*"], "0 0 * * SAT,SUN", "24h", "UTC");
    let w = window("2026-12-12T00:00:00Z", "2026-12-14T00:00:00Z");
    assert_eq!(active_at(&f, at("2026-12-12T10:00:00Z")), Some(w));
    assert_eq!(
        active_at(&f, at("2026-12-13T10:00:00Z")),
        Some(window("2026-12-13T00:00:00Z", "2026-12-14T00:00:00Z"))
    );
    assert_eq!(
        next_windows(&f, at("2026-12-07T00:00:00Z"), 2),
        vec![w, window("2026-12-19T00:00:00Z", "2026-12-21T00:00:00Z")]
    );
}

#[test]
fn the_freeze_that_lifts_last_is_the_one_named() {
    let nightly = recurring("nightly", &["production", "staging"], "0 22 * * *", "8h", "UTC");
    let holidays = fixed("holidays", &["prod*"], "2026-12-24", "2027-01-02", "UTC");
    let freezes = [nightly, holidays];
    let night = at("2026-12-25T23:00:00Z");
    let (f, w) = active_for(&freezes, "production", night).unwrap();
    assert_eq!((f.name.as_str(), w.end), ("holidays", at("2027-01-02T00:00:00Z")));
    let (f, _) = active_for(&freezes, "staging", night).unwrap();
    assert_eq!(f.name, "nightly");
    assert!(active_for(&freezes, "qa-1", night).is_none(), "not covered");
    assert!(
        active_for(&freezes, "staging", at("2026-12-25T12:00:00Z")).is_none(),
        "daytime"
    );
}

#[test]
fn bad_freezes_are_refused_naming_the_key() {
    let good = || recurring("weekend", &["production"], "0 18 * * FRI", "62h", "Europe/Berlin");
    let edit = |change: fn(&mut FreezeSettings)| {
        let mut f = good();
        change(&mut f);
        f
    };
    fn some(s: &str) -> Option<String> {
        Some(s.to_string())
    }
    assert_eq!(check_at(vec![good()]), Ok(()));
    assert_eq!(
        check_at(vec![fixed(
            "x",
            &["qa-*"],
            "2026-12-24 00:00",
            "2027-01-02 00:00",
            "UTC"
        )]),
        Ok(())
    );
    assert_eq!(
        check_at(vec![recurring("weekend", &["*"], "0 0 * * SAT,SUN", "24h", "UTC")]),
        Ok(()),
        "back to back for two days"
    );
    let cases: Vec<(FreezeSettings, &str, &str)> = vec![
        (edit(|f| f.cron = some("61 * * * *")), "freezes[1].cron", "invalid cron"),
        (
            edit(|f| f.timezone = "Mars/Olympus".into()),
            "freezes[1].timezone",
            "unknown time zone",
        ),
        (edit(|f| f.duration = some("0h")), "freezes[1].duration", "is zero"),
        (
            edit(|f| f.duration = some("32d")),
            "freezes[1].duration",
            "longer than 31 days",
        ),
        (
            edit(|f| f.duration = some("soon")),
            "freezes[1].duration",
            "not a duration",
        ),
        (edit(|f| f.duration = None), "freezes[1].duration", "needs a duration"),
        (edit(|f| f.cron = None), "freezes[1].cron", "needs a cron"),
        (edit(|f| f.from = some("2026-12-24")), "freezes[1]", "not both"),
        (
            edit(|f| (f.cron, f.duration) = (None, None)),
            "freezes[1]",
            "either cron and duration",
        ),
        (edit(|f| f.reason = " ".into()), "freezes[1].reason", "needs a reason"),
        (edit(|f| f.name = "".into()), "freezes[1].name", "needs a name"),
        (
            edit(|f| f.environments.clear()),
            "freezes[1].environments",
            "list the environments",
        ),
        (
            edit(|f| f.environments = vec!["prod".into()]),
            "freezes[1].environments",
            "unknown environment 'prod'",
        ),
        (edit(|f| f.name = "first".into()), "freezes[1].name", "used twice"),
        (
            edit(|f| (f.cron, f.duration) = (some("0 18 * * *"), some("25h"))),
            "freezes[1].duration",
            "the windows overlap",
        ),
        // February is shorter than 30 days.
        (
            edit(|f| (f.cron, f.duration) = (some("0 0 1 * *"), some("30d"))),
            "freezes[1].duration",
            "the windows overlap",
        ),
        (
            edit(|f| (f.cron, f.duration) = (some("* * * * *"), some("1m"))),
            "freezes[1].duration",
            "without a break",
        ),
        // A daily freeze of 24 hours never lifts.
        (
            edit(|f| (f.cron, f.duration, f.timezone) = (some("0 18 * * *"), some("24h"), "UTC".into())),
            "freezes[1].duration",
            "without a break",
        ),
        (
            fixed("w", &["*"], "2026-12-24", "2026-12-24", "UTC"),
            "freezes[1].until",
            "is not after from",
        ),
        (
            fixed("w", &["*"], "2026-12-24", "2027-02-24", "UTC"),
            "freezes[1].until",
            "longer than 31 days",
        ),
        (
            fixed("w", &["*"], "Christmas", "2027-01-02", "UTC"),
            "freezes[1].from",
            "is not a time",
        ),
        (
            fixed("w", &["*"], "2026-03-29 02:30", "2026-03-30", "Europe/Berlin"),
            "freezes[1].from",
            "clocks skip it",
        ),
        (
            FreezeSettings {
                until: None,
                ..fixed("w", &["*"], "2026-12-24", "x", "UTC")
            },
            "freezes[1].until",
            "needs until",
        ),
    ];
    for (bad, key, message) in cases {
        let first = FreezeSettings {
            name: "first".into(),
            ..good()
        };
        let (k, e) = check_at(vec![first, bad.clone()]).expect_err(key);
        assert_eq!(k, key, "{bad:?}: {e}");
        assert!(e.contains(message), "{bad:?}: {e}");
    }
}

#[test]
fn patterns_that_match_nothing_and_windows_that_are_over_are_warned_about() {
    let envs = vec!["staging".to_string(), "production".to_string()];
    let freezes = [
        fixed("old", &["prod*", "qa-*"], "2025-12-24", "2026-01-02", "UTC"),
        recurring("weekend", &["*"], "0 18 * * FRI", "62h", "UTC"),
    ];
    let w = warnings(&freezes, &envs, at("2026-12-07T00:00:00Z"));
    assert_eq!(
        w,
        vec![
            "freeze 'old': environment pattern 'qa-*' matches no configured environment".to_string(),
            "freeze 'old' ended at 2026-01-02 00:00 UTC: remove it".to_string(),
        ]
    );
}

#[test]
fn the_timing_is_described_for_people() {
    let f = recurring("weekend", &["*"], "0 18 * * FRI", "62h", "UTC");
    assert_eq!(f.describe_timing(), "`0 18 * * FRI` for 2d 14h");
    assert_eq!(
        fixed("h", &["*"], "2026-12-24", "2027-01-02", "UTC").describe_timing(),
        "fixed window"
    );
}
