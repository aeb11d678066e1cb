//! Figures for docs/benchmarks.md (ignored: run by hand, in the test profile, with
//! `cargo test --test it web::figures -- --ignored --nocapture`): time to first byte of the
//! overview (with the stack status cache cold, then warm) and of a job page with a 10 MB log,
//! and this process's resident memory before and while 20 live tails poll a running job's log
//! once a second.
use crate::support;

use std::time::{Duration, Instant};

use argos::permissions::Identity;
use argos::store::{JobState, LeaseSettings, NewJob, StartOutcome};
use support::world::{Console, World};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONFIG: &str = r#"permissions:
  roles:
    admins: { console_users: [alice] }
  rules:
    - role: admins
      environments: ["*"]
      actions: ["*"]
web:
  public_url: "http://127.0.0.1:9"
  log_limit_bytes: 16777216
"#;

/// Milliseconds to the first byte of the answer, the status, and the whole answer's length.
async fn first_byte(port: u16, path: &str, cookie: &str) -> (f64, u16, usize) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let started = Instant::now();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nCookie: argos_session={cookie}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut first = [0u8; 1];
    s.read_exact(&mut first).await.unwrap();
    let ttfb = started.elapsed().as_secs_f64() * 1000.0;
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.unwrap();
    let text = String::from_utf8_lossy(&rest);
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    (ttfb, status, rest.len() + 1)
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "figures for docs/benchmarks.md, run by hand"]
async fn web_page_figures() {
    let w = World::builder().config(CONFIG).build().await;
    let Console { bot, .. } = Console::on(&w.project).await;
    let (addr, server) = argos::health::serve("127.0.0.1:0", bot.clone()).await.unwrap();
    let port = addr.port();
    let store = bot.store().clone();
    let alice = Identity::named(argos::address::Surface::CONSOLE, "alice");
    store.create_sign_in_link("00aa", &alice, 60_000).unwrap();
    store.redeem_sign_in_link("00aa", "00bb", 3_600_000).unwrap().unwrap();
    let new = NewJob {
        requester_id: "alice".into(),
        requester_name: "alice".into(),
        platform: argos::address::Surface::CONSOLE,
        channel: "ops".into(),
        env: "staging".into(),
        action: "deploy".into(),
        args: "{}".into(),
        person: "console:alice".into(),
        break_glass: None,
    };
    let StartOutcome::Started { id, token } = store.start_job(&new, "elsewhere", LeaseSettings::default()).unwrap()
    else {
        panic!("starts")
    };
    // 10 MB of playbook-like lines, appended in 100 KB batches as the bot would.
    let line = format!(
        "{{\"event\": \"runner_on_ok\", \"host\": \"web-1\", \"task\": \"{}\"}}\n",
        "x".repeat(60)
    );
    let batch = line.repeat(100_000 / line.len());
    while store.log_end(id).unwrap() < 10_000_000 {
        store.append_log(id, &batch, 16 << 20).unwrap();
    }
    // The first overview reads the stacks' status from AWS (the scripted fake on loopback);
    // the next ones, within web.stack_status_secs, from the cache.
    support::add_staging_stack(&w.aws, bot.engine(), "ami-0123456789abcdef0", &[], &[]);
    w.aws.clear_calls();
    let (cold, status, _) = first_byte(port, "/", "00bb").await;
    assert_eq!(status, 200);
    println!("overview TTFB with the stack status cache cold (one DescribeStacks): {cold:.1} ms");
    let mut overview = Vec::new();
    let mut job = Vec::new();
    for _ in 0..9 {
        let (t, status, _) = first_byte(port, "/", "00bb").await;
        assert_eq!(status, 200);
        overview.push(t);
        let (t, status, len) = first_byte(port, &format!("/jobs/{id}"), "00bb").await;
        assert_eq!(status, 200);
        assert!(len > 10_000_000, "the whole log: {len}");
        job.push(t);
    }
    println!(
        "overview TTFB median {:.1} ms (cache warm); DescribeStacks calls for 10 overviews: {}",
        median(overview),
        w.aws.count("DescribeStacks")
    );
    println!("job page with a 10 MB log: TTFB median {:.1} ms", median(job));

    // 20 live tails, each polling from the end once a second, while the log grows.
    let before = rss_kib();
    let end = store.log_end(id).unwrap();
    let tails: Vec<_> = (0..20)
        .map(|_| {
            tokio::spawn(async move {
                let mut offset = end;
                loop {
                    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                    s.write_all(format!("GET /jobs/{id}/log?offset={offset} HTTP/1.1\r\nHost: x\r\nCookie: argos_session=00bb\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
                    let mut out = String::new();
                    s.read_to_string(&mut out).await.unwrap();
                    let body = out.split_once("\r\n\r\n").unwrap().1;
                    let json: serde_json::Value = serde_json::from_str(body).unwrap();
                    offset = json["next_offset"].as_u64().unwrap();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            })
        })
        .collect();
    let mut peak = before;
    for _ in 0..20 {
        store.append_log(id, &line.repeat(20), 16 << 20).unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        peak = peak.max(rss_kib());
    }
    println!(
        "resident memory: {} KiB before, at most {} KiB with 20 live tails for 10 s",
        before, peak
    );
    for t in tails {
        t.abort();
    }
    store
        .finish_and_release(id, token, JobState::Succeeded, "done")
        .unwrap();
    server.abort();
}
