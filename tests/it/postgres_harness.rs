//! Self-tests of the PostgreSQL test harness (tests/it/support/postgres.rs): the server starts and
//! answers, databases are separate, restart and stop behave as the job tests rely on, and a
//! server left running dies with the test process. Timings are printed (`-- --nocapture`).
use crate::support;

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use support::postgres::{self, PgServer};
use tokio_postgres::{Client, NoTls};

async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

async fn public_tables(client: &Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
            &[],
        )
        .await
        .expect("count tables")
        .get(0)
}

#[tokio::test]
async fn shared_server_answers_select_1_on_loopback() {
    let pg = postgres::shared();
    let client = connect(&pg.url("postgres")).await.expect("connect");
    let one: i32 = client.query_one("SELECT 1", &[]).await.expect("SELECT 1").get(0);
    assert_eq!(one, 1);
    let row = client
        .query_one(
            "SELECT current_setting('listen_addresses'), current_setting('fsync'), \
             current_setting('port')::int",
            &[],
        )
        .await
        .expect("settings");
    assert_eq!(row.get::<_, String>(0), "127.0.0.1");
    assert_eq!(row.get::<_, String>(1), "off");
    assert_eq!(row.get::<_, i32>(2), i32::from(pg.port()));
    assert!(std::ptr::eq(pg, postgres::shared()), "one server per test binary");
}

#[tokio::test]
async fn new_databases_are_distinct_and_empty() {
    let pg = postgres::shared();
    let t = Instant::now();
    let a = pg.new_database();
    let took = t.elapsed();
    let b = pg.new_database();
    eprintln!("new_database: {took:?}");
    assert_ne!(a, b);
    let prefix = format!("postgresql://postgres@127.0.0.1:{}/", pg.port());
    assert!(a.starts_with(&prefix), "{a}");

    let ca = connect(&a).await.expect("connect a");
    let cb = connect(&b).await.expect("connect b");
    for (client, url) in [(&ca, &a), (&cb, &b)] {
        let name: String = client.query_one("SELECT current_database()", &[]).await.unwrap().get(0);
        assert_eq!(format!("{prefix}{name}"), *url);
        assert_eq!(public_tables(client).await, 0, "{url} is empty");
    }
    ca.batch_execute("CREATE TABLE only_in_a (v int)")
        .await
        .expect("create");
    assert_eq!(public_tables(&ca).await, 1);
    assert_eq!(public_tables(&cb).await, 0, "b does not see a's table");
}

#[tokio::test]
async fn restart_breaks_connections_and_keeps_data() {
    let t = Instant::now();
    let mut pg = PgServer::start();
    let started = t.elapsed();
    let url = pg.new_database();
    let before = connect(&url).await.expect("connect");
    before
        .batch_execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
        .await
        .expect("write");
    let port = pg.port();

    let t = Instant::now();
    pg.restart();
    let restarted = t.elapsed();
    eprintln!("PgServer::start: {started:?}, restart: {restarted:?}");
    assert_eq!(pg.port(), port, "same port after restart");

    let err = before
        .simple_query("SELECT 1")
        .await
        .expect_err("old connection is broken");
    eprintln!("old connection after restart: {err}");
    let after = connect(&url).await.expect("connect after restart");
    let v: i32 = after.query_one("SELECT v FROM kept", &[]).await.expect("read").get(0);
    assert_eq!(v, 42, "committed data survives the restart");
}

#[tokio::test]
async fn stopped_server_refuses_connections_quickly_and_starts_again() {
    let mut pg = PgServer::start();
    let url = pg.new_database();
    let open = connect(&url).await.expect("connect");

    let t = Instant::now();
    pg.stop();
    let stopped = t.elapsed();
    let t = Instant::now();
    let attempt = tokio::time::timeout(Duration::from_secs(5), connect(&url))
        .await
        .expect("connecting to a stopped server does not hang");
    let refused = t.elapsed();
    eprintln!("stop: {stopped:?}, refused after {refused:?}");
    assert!(attempt.is_err(), "no server to connect to");
    assert!(refused < Duration::from_secs(1), "refused at once, took {refused:?}");
    assert!(open.simple_query("SELECT 1").await.is_err(), "open connection is gone");

    pg.start_again();
    let again = connect(&url).await.expect("connect after start_again");
    again.simple_query("SELECT 1").await.expect("query after start_again");
}

/// Set for the child run by [`leftover_server_dies_with_the_test_process`].
const CHILD_ENV: &str = "ARGOS_PG_HARNESS_CHILD";

#[test]
fn leftover_server_dies_with_the_test_process() {
    let exe = std::env::current_exe().expect("test binary");
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "postgres_harness::child_starts_shared_server_then_is_killed",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .expect("run the child test process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "child killed itself: {stdout}"
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("ARGOS_PG_CHILD "))
        .unwrap_or_else(|| panic!("child printed its server: {stdout}"));
    let (port, data_dir) = line.split_once(' ').expect("port and data dir");
    let port: u16 = port.parse().expect("port");
    let data_dir = std::path::PathBuf::from(data_dir);

    let t = Instant::now();
    loop {
        let listening = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        if !listening && !data_dir.exists() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "server of the killed process still up (listening: {listening}, {} exists: {})",
            data_dir.display(),
            data_dir.exists()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("leftover server gone {:?} after the process died", t.elapsed());
}

#[tokio::test]
#[ignore = "run as a child process by leftover_server_dies_with_the_test_process"]
async fn child_starts_shared_server_then_is_killed() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let pg = postgres::shared();
    let client = connect(&pg.url("postgres")).await.expect("connect");
    let dir: String = client
        .query_one("SHOW data_directory", &[])
        .await
        .expect("data dir")
        .get(0);
    println!("ARGOS_PG_CHILD {} {dir}", pg.port());
    // No unwinding, no atexit handlers, no destructors: only the kernel closing our files.
    // SAFETY: sending a signal to ourselves has no memory-safety preconditions.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
}
