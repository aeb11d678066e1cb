//! Stack watcher benchmark: stacks created at once, each watched by its own [`StackWatcher`]
//! through ONE shared [`Aws`] (one request budget), against the scripted fake AWS endpoint,
//! side by side in one run: polling (DescribeStackEvents) and pushed (EventBridge to SQS: one
//! consumer long-polls the queue into the store, the watchers read the store and call
//! CloudFormation only to confirm the end), for 10 and for 50 stacks. Each stack plays a
//! realistic ~10-minute create (security groups in seconds, instances in 40-90 s, an RDS
//! instance in 6-8 min, in waves), compressed by the fake's time scale. Poll intervals, long
//! polls, the quiet period and the request budget are compressed by the same factor, so what
//! is measured is the pace in scenario time:
//!
//! - CloudFormation calls per scenario minute per watched stack (polling target <= 15; pushed
//!   target <= 1);
//! - event-to-progress latency: from the moment the fake makes an event visible to the moment
//!   the watcher emits it as `Progress::StackEvent`, in scenario seconds (polling target p95
//!   <= 3 s; pushed <= 1.5 s);
//! - SQS receives per scenario minute for the account (pushed target <= 4).
//!
//! Run: `cargo bench --profile dev --bench watcher` (options: `--scale N`, `--poll MS`,
//! `--max-poll MS` to try other paces, `--stacks 10|50` for one size, `--pushed-only`; defaults are the config
//! defaults). With `BENCH_DEBUG` set in the environment, every event seen more than 8 scenario
//! seconds late is listed.
#[path = "../tests/it/support/mod.rs"]
#[allow(dead_code, clippy::all)]
mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use argos::cloud::events::consumer::Consumer;
use argos::cloud::watcher::{Follow, Operation, Pace, Pushed, StackWatcher};
use argos::cloud::Aws;
use argos::config::{AwsSettings, WatchSettings};
use argos::progress::{Progress, ProgressTx};
use argos::store::Store;
use support::fake_aws::{FakeAws, Op, StackScript};
use tokio_util::sync::CancellationToken;

const STACKS: usize = 10;
const TEMPLATE: &str =
    r#"{"Resources":{"WebSecurityGroup":{"Type":"AWS::EC2::SecurityGroup","Properties":{"GroupDescription":"web"}}}}"#;

/// A deterministic spread in [0, 1) per (stack, resource).
fn jitter(stack: usize, i: usize) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in [stack as u64, i as u64] {
        h ^= b;
        h = h.wrapping_mul(0x0100_0000_01b3);
        h ^= h >> 29;
    }
    (h % 10_000) as f64 / 10_000.0
}

/// One resource: CREATE_IN_PROGRESS at `start`, "Resource creation Initiated" 0.4-1.2 s later,
/// CREATE_COMPLETE after `duration`. Returns the completion time.
fn resource(s: StackScript, start: f64, duration: f64, r: (&str, &str)) -> (StackScript, f64) {
    let end = start + duration;
    let s = s
        .resource_event(start, r, "CREATE_IN_PROGRESS", None, None)
        .resource_event(
            start + 0.4 + duration.min(2.0) * 0.4,
            r,
            "CREATE_IN_PROGRESS",
            Some("Resource creation Initiated"),
            Some(&format!("{}-{}", r.0.to_lowercase(), start as u64)),
        )
        .resource_event(
            end,
            r,
            "CREATE_COMPLETE",
            None,
            Some(&format!("{}-{}", r.0.to_lowercase(), start as u64)),
        );
    (s, end)
}

/// 20 resources in waves, about ten scenario minutes in all.
fn realistic_create(name: &str, k: usize) -> StackScript {
    let j = |i: usize| jitter(k, i);
    let mut s = StackScript::new(name).stack_event(0.0, "CREATE_IN_PROGRESS", Some("User Initiated"));
    // Wave 1: security groups and the DB subnet group, in parallel, a few seconds each.
    let mut wave1_end: f64 = 0.0;
    let wave1 = [
        ("ApiSecurityGroup", "AWS::EC2::SecurityGroup"),
        ("FrontSecurityGroup", "AWS::EC2::SecurityGroup"),
        ("KnowledgeSecurityGroup", "AWS::EC2::SecurityGroup"),
        ("CollectorSecurityGroup", "AWS::EC2::SecurityGroup"),
        ("DatabaseSecurityGroup", "AWS::EC2::SecurityGroup"),
        ("DatabaseSubnetGroup", "AWS::RDS::DBSubnetGroup"),
    ];
    for (i, r) in wave1.iter().enumerate() {
        let (next, end) = resource(s, 1.0 + 0.2 * i as f64, 3.0 + 5.0 * j(i), *r);
        s = next;
        wave1_end = wave1_end.max(end);
    }
    // Wave 2: ingress rules (seconds), the instances (40-90 s) and the database (6-8 min).
    let rules = [
        ("DatabaseIngressFromApi", "AWS::EC2::SecurityGroupIngress"),
        ("DatabaseIngressFromCollector", "AWS::EC2::SecurityGroupIngress"),
        ("KnowledgeIngressFromApi", "AWS::EC2::SecurityGroupIngress"),
    ];
    for (i, r) in rules.iter().enumerate() {
        let (next, _) = resource(s, wave1_end + 0.5 + 0.1 * i as f64, 1.0 + 2.0 * j(10 + i), *r);
        s = next;
    }
    // The knowledge and front servers need nothing but their security groups.
    let early = [
        ("KnowledgeInstance", "AWS::EC2::Instance"),
        ("FrontInstance", "AWS::EC2::Instance"),
    ];
    let mut last: f64 = 0.0;
    let mut early_end = Vec::new();
    for (i, r) in early.iter().enumerate() {
        let (next, end) = resource(s, wave1_end + 0.8 + 0.1 * i as f64, 40.0 + 50.0 * j(20 + i), *r);
        s = next;
        early_end.push(end);
    }
    let (next, db_end) = resource(
        s,
        wave1_end + 0.6,
        360.0 + 120.0 * j(30),
        ("Database", "AWS::RDS::DBInstance"),
    );
    s = next;
    // Wave 3: each early instance's elastic IP, volume attachment or DNS record once it runs.
    let followers = [
        [
            ("KnowledgeEIP", "AWS::EC2::EIP"),
            ("KnowledgeVolumeAttachment", "AWS::EC2::VolumeAttachment"),
        ],
        [
            ("FrontEIP", "AWS::EC2::EIP"),
            ("FrontDnsRecord", "AWS::Route53::RecordSet"),
        ],
    ];
    for (i, pair) in followers.iter().enumerate() {
        for (n, r) in pair.iter().enumerate() {
            let (next, end) = resource(
                s,
                early_end[i] + 0.3 + 0.2 * n as f64,
                2.0 + 12.0 * j(40 + 2 * i + n),
                *r,
            );
            s = next;
            last = last.max(end);
        }
    }
    // Wave 4: the servers that need the database host start once it is available.
    let late = [
        ("ApiInstance", "AWS::EC2::Instance"),
        ("CollectorInstance", "AWS::EC2::Instance"),
    ];
    let mut api_end = 0.0;
    for (i, r) in late.iter().enumerate() {
        let (next, end) = resource(s, db_end + 0.5 + 0.1 * i as f64, 40.0 + 50.0 * j(60 + i), *r);
        s = next;
        last = last.max(end);
        if i == 0 {
            api_end = end;
        }
    }
    // Wave 5: the API's elastic IP and volume.
    for (n, r) in [
        ("ApiEIP", "AWS::EC2::EIP"),
        ("ApiVolumeAttachment", "AWS::EC2::VolumeAttachment"),
    ]
    .iter()
    .enumerate()
    {
        let (next, end) = resource(s, api_end + 0.3 + 0.2 * n as f64, 2.0 + 12.0 * j(70 + n), *r);
        s = next;
        last = last.max(end);
    }
    s.stack_event(last + 0.6, "CREATE_COMPLETE", None)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn arg(name: &str) -> Option<f64> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

struct Watched {
    name: String,
    calls: usize,
    events: usize,
    status: String,
    /// Wall time the watch took.
    took: Duration,
    /// (event id, when the watcher emitted it).
    received: Vec<(String, Instant)>,
}

/// How the watchers learn of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// DescribeStackEvents at the watcher's pace.
    Polling,
    /// EventBridge to SQS: one consumer long-polls, the watchers read the store.
    Pushed,
}

/// What one scenario measured (rates and latencies in scenario time).
struct Figures {
    mode: Mode,
    stacks: usize,
    events: usize,
    cfn_mean: f64,
    cfn_max: f64,
    p50: f64,
    p95: f64,
    max: f64,
    sqs_per_min: f64,
    throttled: usize,
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let defaults = WatchSettings::default();
    let scale = arg("--scale").unwrap_or(20.0);
    let poll_ms = arg("--poll").unwrap_or(defaults.poll_interval_ms as f64);
    let max_poll_ms = arg("--max-poll").unwrap_or(defaults.max_poll_interval_ms as f64);
    let only = arg("--stacks").map(|n| n as usize);
    let mut all = Vec::new();
    for stacks in [STACKS, 50] {
        if only.is_some_and(|n| n != stacks) {
            continue;
        }
        for mode in [Mode::Polling, Mode::Pushed] {
            if std::env::args().any(|a| a == "--pushed-only") && mode == Mode::Polling {
                continue;
            }
            all.push(scenario(stacks, mode, scale, poll_ms, max_poll_ms).await);
        }
    }
    println!();
    println!(
        "side by side (scenario time): {:<8} {:>6} {:>7} {:>15} {:>14} {:>7} {:>7} {:>7} {:>16} {:>9}",
        "mode",
        "stacks",
        "events",
        "CFN/min/stack",
        "(max)",
        "p50 s",
        "p95 s",
        "max s",
        "SQS recv/min/acct",
        "throttled"
    );
    for f in &all {
        println!(
            "                              {:<8} {:>6} {:>7} {:>15.2} {:>14.2} {:>7.2} {:>7.2} {:>7.2} {:>16.1} {:>9}",
            format!("{:?}", f.mode).to_lowercase(),
            f.stacks,
            f.events,
            f.cfn_mean,
            f.cfn_max,
            f.p50,
            f.p95,
            f.max,
            f.sqs_per_min,
            f.throttled
        );
    }
    for f in all.iter().filter(|f| f.mode == Mode::Pushed) {
        let ok = f.cfn_max <= 1.0 && f.p95 <= 1.5 && f.sqs_per_min <= 4.0;
        println!(
            "pushed, {} stacks: target <= 1 CloudFormation call/min/stack, p95 <= 1.5 s, <= 4 SQS receives/min: {}",
            f.stacks,
            if ok { "MET" } else { "MISSED" }
        );
    }
}

async fn scenario(stacks: usize, mode: Mode, scale: f64, poll_ms: f64, max_poll_ms: f64) -> Figures {
    let fake = FakeAws::start().await;
    fake.set_time_scale(scale);
    // The budget is the default one (8 requests/s, burst 8) in scenario time: compressing time
    // by `scale` means allowing `scale` times as many requests per real second.
    let settings = AwsSettings {
        endpoint_url: Some(fake.endpoint_url()),
        local_credentials: true,
        requests_per_second: (8.0 * scale).round() as u32,
        burst: 8,
        retry_initial_backoff_ms: 5,
        ..AwsSettings::default()
    };
    let aws = Aws::connect_with(&settings, "us-east-1").await;
    let pace = Pace {
        poll: Duration::from_secs_f64(poll_ms / 1000.0 / scale),
        max_poll: Duration::from_secs_f64(max_poll_ms / 1000.0 / scale),
        timeout: Duration::from_secs(600),
    };
    let scripts: Vec<StackScript> = (0..stacks)
        .map(|k| realistic_create(&format!("argos-bench-{k}"), k))
        .collect();
    let longest = scripts.iter().map(scenario_seconds).fold(0.0, f64::max);
    println!(
        "\nwatcher benchmark ({mode:?}): {stacks} stacks x {} resources, ~{:.1} scenario min each (longest {:.1}), time x{scale}, \
         poll {poll_ms} ms / max {max_poll_ms} ms, budget 8 req/s burst 8 (scenario time)",
        20,
        scripts.iter().map(scenario_seconds).sum::<f64>() / stacks as f64 / 60.0,
        longest / 60.0
    );
    // Pushed: the queue, one consumer for the account (20 s long polls in scenario time), the
    // store the watchers read (every 250 ms), and a quiet period of 60 s before they poll.
    let stop = CancellationToken::new();
    let pushed = (mode == Mode::Pushed).then(|| {
        fake.create_events_queue("argos-stack-events");
        let store = Store::in_memory().expect("store");
        let mut consumer = Consumer::new(aws.clone(), store.clone(), "argos-stack-events", "bench");
        consumer.wait_secs = ((20.0 / scale).round() as i32).max(1);
        consumer.lease = Duration::from_secs_f64(45.0 / scale);
        tokio::spawn(consumer.run(stop.clone()));
        Pushed {
            store,
            quiet: Duration::from_secs_f64(60.0 / scale),
            check: Duration::from_secs_f64(0.25 / scale),
        }
    });
    let began = Instant::now();

    let mut jobs = Vec::new();
    for (k, script) in scripts.into_iter().enumerate() {
        let name = format!("argos-bench-{k}");
        fake.script_next_for(&name, Op::Create, script);
        let aws = aws.clone();
        let pushed = pushed.clone();
        jobs.push(tokio::spawn(async move {
            let (progress, mut rx) = ProgressTx::channel();
            let collector = tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(p) = rx.recv().await {
                    if let Progress::StackEvent(e) = p {
                        got.push((e.event_id, Instant::now()));
                    }
                }
                got
            });
            let started = Instant::now();
            let token = format!("argos-bench-job{k}-create-{name}");
            aws.budget().await;
            let out = aws
                .cfn()
                .await
                .create_stack()
                .stack_name(&name)
                .template_body(TEMPLATE)
                .client_request_token(&token)
                .send()
                .await
                .expect("create stack");
            let mut watcher = StackWatcher::for_new_stack(&name, out.stack_id().unwrap_or(&name));
            watcher.expect_resources(20);
            watcher.follow(&Follow {
                token: Some(token),
                pushed,
            });
            // Slow resources' minimum durations are in scenario time.
            watcher.set_time_scale(scale);
            let outcome = watcher
                .wait(&aws, Operation::Create, pace, &progress, &CancellationToken::new())
                .await
                .expect("watch");
            let took = started.elapsed();
            drop(progress);
            Watched {
                name,
                calls: outcome.calls,
                events: outcome.events,
                status: outcome.status,
                took,
                received: collector.await.expect("collector"),
            }
        }));
    }
    let mut results = Vec::new();
    for j in jobs {
        results.push(j.await.expect("watch task"));
    }
    let wall = began.elapsed();
    stop.cancel();

    let visible: HashMap<String, Instant> = fake.event_visible_at().into_iter().collect();
    let cfn_calls = fake.calls().iter().filter(|c| c.service == "cloudformation").count();
    let receives = fake
        .calls()
        .iter()
        .filter(|c| c.service == "sqs" && c.action == "ReceiveMessage")
        .count();
    let throttled = fake.calls().iter().filter(|c| c.throttled).count();
    let mut all_latency = Vec::new();
    let verbose = stacks <= STACKS;
    if verbose {
        println!(
            "{:<14} {:>6} {:>6} {:>8} {:>10} {:>8} {:>8} {:>8}  status",
            "stack", "events", "calls", "scn min", "calls/min", "p50 s", "p95 s", "max s"
        );
    }
    let mut rates = Vec::new();
    for w in &results {
        let minutes = w.took.as_secs_f64() * scale / 60.0;
        let rate = w.calls as f64 / minutes;
        rates.push(rate);
        // A pushed event carries EventBridge's id: `eb-` and the stack event's, in the fake.
        let shown_at = |id: &str| *visible.get(id.strip_prefix("eb-").unwrap_or(id)).expect("a fake event");
        let mut lat: Vec<f64> = w
            .received
            .iter()
            .map(|(id, at)| at.saturating_duration_since(shown_at(id)).as_secs_f64() * scale)
            .collect();
        if std::env::var_os("BENCH_DEBUG").is_some() {
            for (id, at) in &w.received {
                let l = at.saturating_duration_since(shown_at(id)).as_secs_f64() * scale;
                if l > 8.0 {
                    eprintln!("{} {id} {l:.2}", w.name);
                }
            }
        }
        lat.sort_by(f64::total_cmp);
        all_latency.extend(lat.iter().copied());
        assert_eq!(w.received.len(), w.events, "every event emitted once");
        if verbose {
            println!(
                "{:<14} {:>6} {:>6} {:>8.2} {:>10.1} {:>8.2} {:>8.2} {:>8.2}  {}",
                w.name,
                w.events,
                w.calls,
                minutes,
                rate,
                percentile(&lat, 50.0),
                percentile(&lat, 95.0),
                lat.last().copied().unwrap_or(f64::NAN),
                w.status
            );
        }
    }
    all_latency.sort_by(f64::total_cmp);
    let total_minutes: f64 = results.iter().map(|w| w.took.as_secs_f64() * scale / 60.0).sum();
    let total_calls: usize = results.iter().map(|w| w.calls).sum();
    let mean_rate = total_calls as f64 / total_minutes;
    let max_rate = rates.iter().copied().fold(0.0, f64::max);
    let p95 = percentile(&all_latency, 95.0);
    let sqs_per_min = receives as f64 / (wall.as_secs_f64() * scale / 60.0);
    println!(
        "ALL: {} events, {total_calls} watcher calls ({cfn_calls} CloudFormation calls incl. CreateStack, {throttled} throttled); \
         calls/min/stack mean {mean_rate:.2} max {max_rate:.2}; latency p50 {:.2} s p95 {p95:.2} s max {:.2} s (scenario); \
         SQS receives {receives} ({sqs_per_min:.1}/min)",
        all_latency.len(),
        percentile(&all_latency, 50.0),
        all_latency.last().copied().unwrap_or(f64::NAN),
    );
    if mode == Mode::Polling && stacks == STACKS {
        let ok = max_rate <= 15.0 && p95 <= 3.0;
        println!(
            "target <= 15 calls/min/stack at <= 3 s p95: {}",
            if ok { "MET" } else { "MISSED" }
        );
    }
    assert!(
        results.iter().all(|w| w.status == "CREATE_COMPLETE"),
        "every stack ended CREATE_COMPLETE"
    );
    Figures {
        mode,
        stacks,
        events: all_latency.len(),
        cfn_mean: mean_rate,
        cfn_max: max_rate,
        p50: percentile(&all_latency, 50.0),
        p95,
        max: all_latency.last().copied().unwrap_or(f64::NAN),
        sqs_per_min,
        throttled,
    }
}

/// Scenario seconds until a script's last step.
fn scenario_seconds(script: &StackScript) -> f64 {
    script.steps.iter().map(|s| s.at).fold(0.0, f64::max)
}
