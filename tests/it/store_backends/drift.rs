//! The last drift result per environment, on both backends: recorded, replaced by the next
//! one, kept apart per environment, and read by another process.
use super::*;

use argos::store::DriftState;

on_both_backends! {
    the_last_drift_result_per_environment_is_kept => the_last_drift_result_per_environment_is_kept_sqlite, the_last_drift_result_per_environment_is_kept_postgres;
}

fn the_last_drift_result_per_environment_is_kept(db: &TestDb) {
    let store = db.open();
    assert_eq!(store.last_drift("staging").unwrap(), None, "never checked");
    let before = chrono::Utc::now() - chrono::TimeDelta::seconds(1);
    store
        .record_drift(
            "staging",
            DriftState::Drifted,
            2,
            r#"{"drifted":[["Db","AWS::RDS::DBInstance"]]}"#,
        )
        .unwrap();
    store.record_drift("prod", DriftState::InSync, 0, "{}").unwrap();

    // Another process reads what this one recorded.
    let other = db.open();
    let staging = other.last_drift("staging").unwrap().expect("recorded");
    assert_eq!(staging.env, "staging");
    assert_eq!(staging.state, DriftState::Drifted);
    assert_eq!(staging.drifted, 2);
    assert_eq!(staging.summary, r#"{"drifted":[["Db","AWS::RDS::DBInstance"]]}"#);
    assert!(staging.checked_at >= before, "{}: {:?}", db.kind(), staging.checked_at);

    // The next result replaces it; the other environment keeps its own.
    other
        .record_drift(
            "staging",
            DriftState::Failed,
            0,
            r#"{"error":"drift detection failed: x"}"#,
        )
        .unwrap();
    let staging = store.last_drift("staging").unwrap().unwrap();
    assert_eq!((staging.state, staging.drifted), (DriftState::Failed, 0));
    assert_eq!(store.last_drift("prod").unwrap().unwrap().state, DriftState::InSync);
    let all: Vec<(String, DriftState)> = store
        .drift_results()
        .unwrap()
        .into_iter()
        .map(|r| (r.env, r.state))
        .collect();
    assert_eq!(
        all,
        vec![
            ("prod".to_string(), DriftState::InSync),
            ("staging".to_string(), DriftState::Failed)
        ]
    );
}
