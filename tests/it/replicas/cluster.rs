//! The cluster the replica tests share: a fake Discord delivering every event to every
//! session, the project, one PostgreSQL database, the gate, and the bot replicas; and the
//! checks several tests make.

use std::time::{Duration, Instant};

use super::support::fake_discord::*;
use super::support::replicas::*;
use super::support::TestProject;
use argos::store::{JobRecord, JobState, Store};

/// How long any one wait may take before the test fails.
pub(crate) const LONG: Duration = Duration::from_secs(90);

pub(crate) const STATUS_HEAD: &str = "⏳ **staging · commission** · job #1 · alice";
pub(crate) const DONE: &str = "✅ **staging · commission** · job #1 · alice · done in";

/// The fake Discord, the project, the database and the replicas.
pub(crate) struct Cluster {
    pub(crate) discord: FakeDiscord,
    pub(crate) project: TestProject,
    pub(crate) db_url: String,
    /// The test's own connection to the replicas' database.
    pub(crate) store: Store,
    pub(crate) gate: Gate,
    pub(crate) replicas: Vec<BotReplica>,
}

impl Cluster {
    /// Starts one replica per name (all at once), each with its fake Discord session of that
    /// name, and waits until every one is connected and running. `admins` may do everything.
    pub(crate) async fn start(
        aws_endpoint: &str,
        db_url: String,
        names: &[&str],
        admins: &[TestUser],
        extra: &str,
    ) -> Cluster {
        let discord = FakeDiscord::start_sharded(FakeLimits::DISCORD).await;
        // The gate holds api.yml, the second role: knowledge.yml has run by then. The two roles
        // after it (front, collector) would only add two ansible-playbook runs to every
        // commission without showing anything more about replicas.
        let project = TestProject::with_roles(aws_endpoint, &replica_yaml(admins, true, extra), &["knowledge", "api"]);
        let gate = Gate::new(project.dir.path());
        gate.install(&project);
        let store = {
            let url = db_url.clone();
            tokio::task::spawn_blocking(move || Store::connect(&url))
                .await
                .unwrap()
                .expect("the test connects to the replicas' database")
        };
        let mut replicas = Vec::new();
        for name in names {
            let url = discord.add_session(name).await;
            let config = write_replica_config(&project, name, &url);
            replicas.push(BotReplica::spawn(name, &config, &db_url, project.dir.path()));
        }
        let mut c = Cluster {
            discord,
            project,
            db_url,
            store,
            gate,
            replicas,
        };
        let started = Instant::now();
        c.discord.wait_sessions_ready(names).await;
        for r in &mut c.replicas {
            r.wait_running().await;
            if names.len() > 1 {
                // Discord's limits belong to the token: each replica keeps to its share.
                r.wait_share(names.len()).await;
            }
        }
        println!(
            "TIMING {} replicas connected and running in {:?}",
            names.len(),
            started.elapsed()
        );
        c
    }

    /// The index of the replica a store owner id names.
    pub(crate) fn index_of(&self, owner: &str) -> usize {
        self.replicas
            .iter()
            .position(|r| r.owns(owner))
            .unwrap_or_else(|| panic!("owner {owner} is none of the replicas"))
    }

    /// The replica whose fake Discord session is `session`.
    pub(crate) fn by_session(&self, session: &Option<String>) -> &BotReplica {
        let name = session.as_deref().expect("sent through a replica's session");
        self.replicas
            .iter()
            .find(|r| r.name == name)
            .expect("a replica's session")
    }

    pub(crate) fn job(&self, id: u64) -> JobRecord {
        self.store.job(id).expect("read the job").expect("the job exists")
    }

    /// Whether replica `i`'s gated playbook run is waiting at the gate.
    pub(crate) fn at_gate(&self, i: usize) -> bool {
        let reached = self.gate.reached();
        self.replicas[i]
            .run_processes()
            .iter()
            .any(|(pid, _)| reached.contains(pid))
    }

    /// Every message and edit in `channel`.
    pub(crate) fn sent_in(&self, channel: u64) -> Vec<Sent> {
        self.discord.with_state(|s| {
            s.sent
                .iter()
                .filter(|m| m.channel == channel.to_string())
                .cloned()
                .collect()
        })
    }

    /// The fake never answered 429 and saw no request it does not serve. On a 429 the message
    /// shows when each replica sent what (ms since the first request of the test).
    #[track_caller]
    pub(crate) fn assert_discord_clean(&self) {
        let (limited, timeline) = self.discord.with_state(|s| {
            let t0 = s.requests.first().map(|r| r.2);
            let timeline: Vec<String> = s
                .sent
                .iter()
                .map(|m| {
                    let ms = t0.map(|t| m.at.duration_since(t).as_millis()).unwrap_or(0);
                    format!("{ms:>6} ms {:?} {:?} {}", m.session, m.kind, m.channel)
                })
                .collect();
            (s.limited.clone(), timeline)
        });
        assert!(
            limited.is_empty(),
            "the fake Discord had to answer 429: {limited:?}\nwhat was sent (ms since the first request, session, kind, channel):\n{}",
            timeline.join("\n")
        );
        self.discord.assert_no_unexpected();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_log_tails(&self.replicas, 60);
        }
        // The replicas go first (SIGKILL; their playbooks die with them), before the fake
        // Discord and the project folder they use.
        self.replicas.clear();
    }
}

/// Starts a commission from alice in CHANNEL and waits until it is at the gate; returns the
/// status message, the job and the index of the replica running it.
pub(crate) async fn commission_at_gate(c: &Cluster) -> (Sent, JobRecord, usize) {
    c.discord
        .push_message(CHANNEL, &TestUser::admin(), "!argos staging commission");
    let status = c
        .discord
        .wait_for_within("the status message", LONG, |s| {
            s.sent
                .iter()
                .find(|m| m.kind == SentKind::Create && m.content.starts_with(STATUS_HEAD))
                .cloned()
        })
        .await;
    let job = poll_until("job #1 with an owner", LONG, || {
        c.store.job(1).ok().flatten().filter(|j| j.owner.is_some())
    })
    .await;
    let o = c.index_of(job.owner.as_deref().unwrap());
    assert_eq!(
        status.session.as_deref(),
        Some(c.replicas[o].name.as_str()),
        "the job's owner posted its status message"
    );
    poll_until("the owner's playbook at the gate", LONG, || c.at_gate(o).then_some(())).await;
    let job = c.job(1);
    assert_eq!(job.state, JobState::Running);
    assert!(c.replicas[o].owns(job.owner.as_deref().unwrap()), "{job:#?}");
    (status, job, o)
}

/// Opens the gate; waits for the final ✅ edit and for the job's end in the store.
pub(crate) async fn finish_at_gate(c: &Cluster) -> (Sent, JobRecord) {
    c.gate.open();
    let last = final_edit(c).await;
    let done = poll_until("the job's end in the store", LONG, || {
        c.store.job(1).ok().flatten().filter(|j| j.state.is_finished())
    })
    .await;
    (last, done)
}

/// Waits for the final ✅ edit of the status message.
pub(crate) async fn final_edit(c: &Cluster) -> Sent {
    c.discord
        .wait_for_within("the final ✅ edit", LONG, |s| {
            s.sent.iter().find(|m| m.content.starts_with(DONE)).cloned()
        })
        .await
}

/// The status message was the only message in CHANNEL: one create, then edits of it only.
#[track_caller]
pub(crate) fn assert_one_status_message(c: &Cluster, status: &Sent) -> Vec<Sent> {
    let all = c.sent_in(CHANNEL);
    let creates: Vec<&Sent> = all.iter().filter(|m| m.kind == SentKind::Create).collect();
    assert_eq!(creates.len(), 1, "one status message, no second one: {all:#?}");
    assert_eq!(creates[0].message_id, status.message_id);
    assert!(
        all.iter()
            .all(|m| m.message_id == status.message_id && matches!(m.kind, SentKind::Create | SentKind::Edit)),
        "nothing but the status message and its edits: {all:#?}"
    );
    all
}

/// What moto holds after the commission: one stack (argos-staging, healthy; the image build
/// stack is gone) and one image.
pub(crate) async fn assert_one_stack_one_image(project: &TestProject) {
    let engine = project.engine().await;
    let aws = &engine.aws;
    let stacks = aws.cfn().await.describe_stacks().send().await.expect("DescribeStacks");
    let live: Vec<(String, String)> = stacks
        .stacks()
        .iter()
        .map(|s| {
            (
                s.stack_name().unwrap_or_default().to_string(),
                s.stack_status().map(|x| x.as_str().to_string()).unwrap_or_default(),
            )
        })
        .filter(|(_, status)| status != "DELETE_COMPLETE")
        .collect();
    assert_eq!(
        live,
        [("argos-staging".to_string(), "CREATE_COMPLETE".to_string())],
        "one stack"
    );
    let own = argos::cloud::ec2::Params::new().list("Owner", &["self"]);
    let images = aws.ec2_call("DescribeImages", &own).await.expect("DescribeImages");
    let names: Vec<&str> = images.items("imagesSet").filter_map(|i| i.text(&["name"])).collect();
    assert_eq!(names, ["argos-image"], "one image");
}
