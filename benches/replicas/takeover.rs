//! `takeover`: kill -9 of the replica running a job, with the default lease (10 s) and
//! heartbeat (2 s); how long until the other replica runs the job again.
//!
//! Each trial: the staging stack is added again on the scripted AWS, with a delete scripted to
//! take 10 minutes; alice types `!argos staging decommission` in a channel of the trial's own
//! (so the new owner's first edit there never waits behind the per-channel limit); once a
//! replica owns the job, has posted its status message and the delete is in progress, and
//! after a random 0-2 s (so the kills fall anywhere in the heartbeat period), that replica is
//! killed with SIGKILL. Measured from the kill: the store shows the other replica as the
//! job's owner, and the fake Discord receives that replica's first edit of the same status
//! message saying it picks the job up again; the takeover time is the later of the two. Then
//! alice cancels the job, and a fresh replica is started so the next trial starts with two.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::support::fake_aws::{FakeAws, Op, StackScript};
use crate::support::fake_discord::*;
use crate::support::postgres::PgServer;
use crate::support::replicas::poll_until;
use argos::store::JobState;

use super::*;

const TRIALS: usize = 20;
const STACK: &str = "argos-staging";
const TEMPLATE: &str =
    r#"{"Resources":{"WebSecurityGroup":{"Type":"AWS::EC2::SecurityGroup","Properties":{"GroupDescription":"web"}}}}"#;
const RESOURCES: &[(&str, &str)] = &[
    ("WebSecurityGroup", "AWS::EC2::SecurityGroup"),
    ("ApiInstance", "AWS::EC2::Instance"),
    ("Database", "AWS::RDS::DBInstance"),
];
const RESUMED: &str = "picking it up again";

/// What one trial measured.
struct Trial {
    /// Kill to the new owner in the store (as seen by polling every 20 ms).
    store: Duration,
    /// Kill to the new owner's first edit of the status message.
    edit: Duration,
    /// The later of the two.
    takeover: Duration,
    /// `!argos cancel` to the job's end in the store.
    cancel: Duration,
    /// Spawn to "bot running" and the budget shared by two, for the fresh replica.
    fresh: Duration,
}

pub async fn run() {
    let trials: usize = std::env::var("ARGOS_BENCH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(TRIALS);
    let pg = PgServer::start();
    let aws = FakeAws::start().await;
    let alice = TestUser::admin();
    let started = Instant::now();
    let mut c = Cluster::start(
        &aws.endpoint_url(),
        pg.new_database(),
        2,
        std::slice::from_ref(&alice),
        &[
            (TEST_LEASE, DEFAULT_LEASE),
            // Two commands per trial from alice: more than 6 a minute.
            (
                "  commands_per_minute: 6\n  command_burst: 3\n",
                "  commands_per_minute: 600\n  command_burst: 100\n",
            ),
            // The scripted delete takes 10 minutes; the job is cancelled long before.
            ("  stack_update_secs: 60\n", "  stack_update_secs: 1800\n"),
            ("  stack_delete_secs: 60\n", "  stack_delete_secs: 1800\n"),
        ],
    )
    .await;
    result(
        "takeover: 2 replicas connected and running after",
        secs(started.elapsed()),
    );

    let mut done: Vec<Trial> = Vec::new();
    let mut ended: BTreeMap<String, usize> = BTreeMap::new();
    let (mut second_status, mut late_from_dead) = (0usize, 0usize);
    // Commands delivered to both live sessions; trials whose job went to the replica started
    // last (the other one has been running since the trial before).
    let (mut to_both, mut newest_owned) = (0usize, 0usize);
    for t in 0..trials {
        let channel = CHANNEL_BASE + t as u64;
        let ch = channel.to_string();
        aws.add_stack(STACK, TEMPLATE, &[], RESOURCES);
        aws.script_next_for(
            STACK,
            Op::Delete,
            StackScript::delete_success(STACK, RESOURCES, &[200.0]),
        );
        let command = c.discord.push_message(channel, &alice, "!argos staging decommission");
        let job = poll_until("a replica running the trial's job", LONG, || {
            let jobs = c.store.unfinished_jobs().ok()?;
            jobs.into_iter().find(|j| {
                j.channel == ch
                    && j.state == JobState::Running
                    && j.status_message_id.is_some()
                    && j.owner.as_deref().is_some_and(|o| c.index_of(o).is_some())
            })
        })
        .await;
        poll_until("the stack delete in progress", LONG, || {
            (aws.stack_status(STACK).as_deref() == Some("DELETE_IN_PROGRESS")).then_some(())
        })
        .await;
        let status_id = job.status_message_id.clone().unwrap();
        let o = c.index_of(job.owner.as_deref().unwrap()).unwrap();
        let n = 1 - o;
        let mut to = c.discord.deliveries_of(&command);
        to.sort();
        to.dedup();
        to_both += usize::from(to.len() == 2);
        newest_owned += usize::from(o == 1);
        let (o_name, n_name) = (c.replicas[o].name.clone(), c.replicas[n].name.clone());
        tokio::time::sleep(Duration::from_millis(jitter(2000, t as u64))).await;

        let killed = Instant::now();
        c.replicas[o].kill9();
        let gone = Instant::now();
        let mut store_at = None;
        let edit_at = poll_until("the job running again on the other replica", LONG, || {
            if store_at.is_none() {
                let j = c.store.job(job.id).ok().flatten()?;
                if j.owner.as_deref().is_some_and(|w| c.replicas[n].owns(w)) {
                    store_at = Some(Instant::now());
                }
            }
            let edit = c.discord.with_state(|s| {
                s.sent
                    .iter()
                    .find(|m| {
                        m.session.as_deref() == Some(n_name.as_str())
                            && m.kind == SentKind::Edit
                            && m.message_id == status_id
                            && m.content.contains(RESUMED)
                    })
                    .map(|m| m.at)
            })?;
            store_at.map(|_| edit)
        })
        .await;
        let store = store_at.unwrap().duration_since(killed);
        let edit = edit_at.duration_since(killed);

        let cancel_at = Instant::now();
        c.discord
            .push_message(channel, &alice, &format!("!argos cancel {}", job.id));
        let end = poll_until("the job's end after the cancel", LONG, || {
            c.store.job(job.id).ok().flatten().filter(|j| j.state.is_finished())
        })
        .await;
        let cancel = cancel_at.elapsed();
        *ended.entry(end.state.as_str().to_string()).or_default() += 1;
        // One status message per trial (a second one would mean the new owner did not find
        // it), and nothing from the dead replica once it was gone.
        let sent: Vec<Sent> = c
            .discord
            .with_state(|s| s.sent.iter().filter(|m| m.channel == ch).cloned().collect());
        second_status += sent
            .iter()
            .filter(|m| m.kind == SentKind::Create && m.content.contains("decommission") && m.message_id != status_id)
            .count();
        late_from_dead += sent
            .iter()
            .filter(|m| m.session.as_deref() == Some(o_name.as_str()) && m.at > gone)
            .count();

        // Two replicas again for the next trial.
        c.replicas.remove(o);
        let fresh_at = Instant::now();
        let i = c.spawn().await;
        let name = c.replicas[i].name.clone();
        c.discord.wait_sessions_ready(&[name.as_str()]).await;
        c.replicas[i].wait_running().await;
        c.wait_share().await;
        let fresh = fresh_at.elapsed();
        eprintln!(
            "trial {t}: owner {o_name} killed; {n_name} in the store after {}, its edit after {}; cancelled in {}; fresh replica in {}",
            secs(store),
            secs(edit),
            secs(cancel),
            secs(fresh)
        );
        done.push(Trial {
            store,
            edit,
            takeover: store.max(edit),
            cancel,
            fresh,
        });
    }

    let mut takeover: Vec<Duration> = done.iter().map(|t| t.takeover).collect();
    let mut store: Vec<Duration> = done.iter().map(|t| t.store).collect();
    let mut edit: Vec<Duration> = done.iter().map(|t| t.edit).collect();
    let mut cancel: Vec<Duration> = done.iter().map(|t| t.cancel).collect();
    let mut fresh: Vec<Duration> = done.iter().map(|t| t.fresh).collect();
    takeover.sort();
    result("takeover: trials", done.len());
    result(
        "takeover: kill -9 -> running again, p50",
        secs(percentile(&takeover, 0.50)),
    );
    result(
        "takeover: kill -9 -> running again, p95",
        secs(percentile(&takeover, 0.95)),
    );
    result(
        "takeover: kill -9 -> running again, max",
        secs(takeover.last().copied().unwrap_or_default()),
    );
    result(
        "takeover: kill -9 -> running again, min",
        secs(takeover.first().copied().unwrap_or_default()),
    );
    result(
        "takeover:   kill -9 -> new owner in the store",
        spread(&mut store, 0.95, secs),
    );
    result(
        "takeover:   kill -9 -> new owner's \"picking it up again\" edit",
        spread(&mut edit, 0.95, secs),
    );
    result("takeover:   cancel -> job ended", spread(&mut cancel, 0.95, secs));
    result(
        "takeover:   fresh replica started -> running, sharing",
        spread(&mut fresh, 0.95, secs),
    );
    result(
        "takeover: jobs ended as",
        ended
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    result(
        "takeover: commands delivered to both sessions / jobs owned by the newer replica",
        format!("{to_both} / {newest_owned} of {}", done.len()),
    );
    result("takeover: second status messages", second_status);
    result(
        "takeover: requests from a killed replica after its death",
        late_from_dead,
    );
    result("takeover: 429s", c.discord.rate_limited());
}
