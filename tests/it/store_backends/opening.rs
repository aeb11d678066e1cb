//! Opening a brand-new database at the same moment from several processes, on both backends.
use super::*;

on_both_backends! {
    concurrent_openers_migrate_once => concurrent_openers_migrate_once_sqlite, concurrent_openers_migrate_once_postgres;
}

// 4. Opening a brand-new database at the same moment

/// Set (to the database path) for [`sqlite_open_child`] when it runs as a helper process.
const CHILD_DB: &str = "ARGOS_STORE_BACKENDS_CHILD_DB";
/// When the helper process opens the store: milliseconds since the epoch.
const CHILD_AT: &str = "ARGOS_STORE_BACKENDS_CHILD_AT";

fn epoch_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

fn sleep_until_epoch_ms(at: u64) {
    let now = epoch_ms();
    if at > now {
        thread::sleep(Duration::from_millis(at - now));
    }
}

/// Opens the store named by `CHILD_DB` at the moment `CHILD_AT`, records a job, and prints its
/// schema version. Run only as a helper process of `concurrent_openers_migrate_once_sqlite`.
#[test]
#[ignore = "a helper process of concurrent_openers_migrate_once_sqlite"]
fn sqlite_open_child() {
    let Some(path) = std::env::var_os(CHILD_DB) else {
        return;
    };
    let at: u64 = std::env::var(CHILD_AT).expect(CHILD_AT).parse().expect("epoch ms");
    sleep_until_epoch_ms(at);
    let store = Store::open(std::path::Path::new(&path)).expect("the child opens the store");
    store
        .insert_job(&new_job("staging", "from-a-child"), JobState::Queued)
        .expect("the child writes");
    println!("schema_version={}", store.schema_version());
}

fn concurrent_openers_migrate_once(db: &TestDb) {
    let expected = Store::in_memory().unwrap().schema_version();
    assert!(expected >= 3, "migrations: {expected}");
    // Far enough ahead for the helper processes to be up and waiting.
    let at = epoch_ms() + 700;
    let children: Vec<_> = match db {
        TestDb::Sqlite { path, .. } => (0..2)
            .map(|_| {
                Command::new(std::env::current_exe().unwrap())
                    .args([
                        "--exact",
                        "store_backends::opening::sqlite_open_child",
                        "--ignored",
                        "--nocapture",
                        "--test-threads",
                        "1",
                    ])
                    .env(CHILD_DB, path)
                    .env(CHILD_AT, at.to_string())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("start a helper process")
            })
            .collect(),
        TestDb::Postgres { .. } => Vec::new(),
    };
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let (path, url) = match db {
                TestDb::Sqlite { path, .. } => (Some(path.clone()), None),
                TestDb::Postgres { url } => (None, Some(url.clone())),
            };
            thread::spawn(move || {
                sleep_until_epoch_ms(at);
                let t = Instant::now();
                let store = match (&path, &url) {
                    (Some(p), _) => Store::open(p),
                    (_, Some(u)) => Store::connect(u),
                    _ => unreachable!(),
                }
                .unwrap_or_else(|e| panic!("opener {i}: {e}"));
                let took = t.elapsed();
                store
                    .insert_job(&new_job("staging", &format!("opener-{i}")), JobState::Queued)
                    .unwrap_or_else(|e| panic!("opener {i} writes: {e}"));
                (store.schema_version(), took)
            })
        })
        .collect();
    let mut versions = Vec::new();
    for h in threads {
        let (v, took) = h.join().expect("an opening thread panicked");
        eprintln!("{} opener: {took:?}", db.kind());
        versions.push(v);
    }
    for child in children {
        let out = child.wait_with_output().expect("helper process");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "helper process failed ({}):\n{stdout}\n{stderr}",
            out.status
        );
        assert!(stdout.contains("1 passed"), "the helper test ran:\n{stdout}");
        // libtest prints the line right after `test sqlite_open_child ... `.
        let v: String = stdout
            .split("schema_version=")
            .nth(1)
            .unwrap_or_else(|| panic!("no schema version in:\n{stdout}"))
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        versions.push(v.parse().expect("a number"));
    }
    let openers = versions.len();
    assert_eq!(openers, if db.kind() == "sqlite" { 6 } else { 4 });
    assert_eq!(versions, vec![expected; openers], "every opener sees the full schema");
    let s = db.open();
    assert_eq!(s.schema_version(), expected, "migrated once, still current");
    assert_eq!(s.recent_jobs(100).unwrap().len(), openers, "every opener could write");
}
