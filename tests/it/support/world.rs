//! One way to build a test world for the console, Discord and Slack scenarios: the scripted fake
//! AWS, the chat fake the scenario talks through, and a throwaway project whose config points
//! at both; then a bot on the project's store, connected the way `argos bot` connects it.
//!
//! ```ignore
//! let w = World::builder().every_job_starts().discord(FAST_FAKE_LIMITS, true).await;
//! let (bot, client, done) = start_discord_bot(w.project.config()).await;
//! ```

use std::sync::Arc;

use argos::bot::port::{ChatEvent, CommandHandler};
use argos::bot::Bot;
use argos::config::Config;
use argos::engine::Engine;
use argos::platform::discord;
use argos::platform::slack::{self, SlackConnection, SlackLimits, SlackPort, SlackTokens};
use argos::store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::chat::RecordingPort;
use super::fake_aws::{Change, Ec2Image, FakeAws, Op, StackScript};
use super::fake_discord::{FakeDiscord, FakeLimits, FAST_LIMITS, TOKEN};
use super::fake_slack::{FakeSlack, FakeSlackLimits};
use super::TestProject;

/// The `approvals:` section under which every job starts when asked (the approval flow has
/// tests of its own).
pub const NO_APPROVALS: &str =
    "approvals:\n  policies:\n    - environments: [\"*\"]\n      actions: [\"*\"]\n      approvers: 0\n";

/// The staging app stack the chat scenarios deploy and update.
pub const STACK: &str = "argos-staging";
/// The image the app stack runs.
pub const IMAGE_ID: &str = "ami-0a1b2c3d4e5f60718";
/// The app stack's resources as the chat scenarios see them.
pub const RESOURCES: &[(&str, &str)] = &[
    ("WebSecurityGroup", "AWS::EC2::SecurityGroup"),
    ("ApiInstance", "AWS::EC2::Instance"),
    ("FrontInstance", "AWS::EC2::Instance"),
];
/// A one-resource template for stacks whose body does not matter.
pub const TINY_TEMPLATE: &str =
    r#"{"Resources":{"WebSecurityGroup":{"Type":"AWS::EC2::SecurityGroup","Properties":{"GroupDescription":"web"}}}}"#;

/// The fake AWS, the project whose config points at it, and the chat the scenario talks
/// through: [`Console`] (a bot with a recording port), [`FakeDiscord`], [`FakeSlack`], or `()`
/// when the scenario starts its own processes.
pub struct World<Chat> {
    pub aws: FakeAws,
    pub project: TestProject,
    pub chat: Chat,
}

/// What a world is made of before it starts: the config's extra top-level keys and the fake
/// AWS's time scale.
#[must_use]
pub struct WorldBuilder {
    config: String,
    time_scale: Option<f64>,
    roles: Option<Vec<&'static str>>,
}

impl World<()> {
    /// A builder with nothing but the base test config.
    pub fn builder() -> WorldBuilder {
        WorldBuilder {
            config: String::new(),
            time_scale: None,
            roles: None,
        }
    }
}

impl WorldBuilder {
    /// Appends `yaml` (top-level keys) to the test config.
    pub fn config(mut self, yaml: &str) -> WorldBuilder {
        self.config.push_str(yaml);
        self
    }

    /// Every job starts when asked, whatever the default approval policy says.
    pub fn every_job_starts(self) -> WorldBuilder {
        self.config(NO_APPROVALS)
    }

    /// The fake AWS runs its scripts `scale` times faster than scenario time.
    pub fn time_scale(mut self, scale: f64) -> WorldBuilder {
        self.time_scale = Some(scale);
        self
    }

    /// Only `roles` are configured (`ansible.roles`; see [`TestProject::with_roles`]).
    pub fn roles(mut self, roles: &[&'static str]) -> WorldBuilder {
        self.roles = Some(roles.to_vec());
        self
    }

    fn project(&self, endpoint: &str, extra: &str) -> TestProject {
        match &self.roles {
            Some(roles) => TestProject::with_roles(endpoint, extra, roles),
            None => TestProject::new(endpoint, extra),
        }
    }

    async fn aws(&self) -> FakeAws {
        let aws = FakeAws::start().await;
        if let Some(scale) = self.time_scale {
            aws.set_time_scale(scale);
        }
        aws
    }

    /// The fake AWS and the project, no bot: the scenario runs `argos` itself.
    pub async fn build(self) -> World<()> {
        let aws = self.aws().await;
        let project = self.project(&aws.endpoint_url(), &self.config);
        World { aws, project, chat: () }
    }

    /// A bot on the project's store with a [`RecordingPort`] for the console.
    pub async fn console(self) -> World<Console> {
        let World { aws, project, .. } = self.build().await;
        let chat = Console::on(&project).await;
        World { aws, project, chat }
    }

    /// The fake Discord at `limits`; the config connects the bot to it (`content_intent`: whether
    /// the bot asks for message content).
    pub async fn discord(self, limits: FakeLimits, content_intent: bool) -> World<FakeDiscord> {
        let aws = self.aws().await;
        let chat = FakeDiscord::start_with(limits).await;
        let project = self.project(&aws.endpoint_url(), &(chat.bot_config(content_intent) + &self.config));
        World { aws, project, chat }
    }

    /// The fake Slack at `limits`, its tokens in the environment; the config connects the bot
    /// to it.
    pub async fn slack(self, limits: FakeSlackLimits) -> World<FakeSlack> {
        let aws = self.aws().await;
        let chat = FakeSlack::start_with(limits).await;
        chat.set_token_env();
        let project = self.project(&aws.endpoint_url(), &(chat.bot_config() + &self.config));
        World { aws, project, chat }
    }
}

/// A bot on the project's store, no chat port.
pub async fn bot_on(project: &TestProject) -> Bot {
    let store = Store::open(&project.config().database_path()).expect("store opens");
    Bot::new(project.engine().await, store)
}

/// The console's side: a bot and the port that records what it posts.
pub struct Console {
    pub bot: Bot,
    pub port: Arc<RecordingPort>,
}

impl Console {
    /// A bot on the project's store (a second one is a restart) with a fresh recording port.
    pub async fn on(project: &TestProject) -> Console {
        let bot = bot_on(project).await;
        let port = RecordingPort::new();
        bot.add_port(port.clone());
        Console { bot, port }
    }
}

/// How many commands a bot has finished handling.
pub struct Handled(watch::Receiver<u32>);

impl Handled {
    /// Waits (at most `WAIT`, else the test fails) until the bot has finished `n` commands in all.
    pub async fn until(&mut self, n: u32) {
        tokio::time::timeout(super::fake_slack::WAIT, self.0.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| panic!("the bot did not finish handling {n} command(s) in time"))
            .expect("the bot is alive");
    }

    /// Commands handled so far.
    pub fn now(&self) -> u32 {
        *self.0.borrow()
    }
}

/// The bot's handler, counting the commands it has finished.
pub fn counting(inner: CommandHandler) -> (CommandHandler, Handled) {
    let (tx, rx) = watch::channel(0u32);
    let tx = Arc::new(tx);
    let handler: CommandHandler = Arc::new(move |ev: ChatEvent| {
        let (inner, tx) = (inner.clone(), tx.clone());
        Box::pin(async move {
            let reply = inner(ev).await;
            tx.send_modify(|n| *n += 1);
            reply
        })
    });
    (handler, Handled(rx))
}

/// A bot on the config's store connected to the fake Discord the config names (at the fake's
/// quick limits), the adapter's client task, and how many commands it has handled.
pub async fn start_discord_bot(config: Config) -> (Bot, JoinHandle<()>, Handled) {
    let settings = config.settings.discord.clone();
    let prefix = config.settings.chat.prefix.clone();
    let envs: Vec<String> = config.settings.environments.keys().cloned().collect();
    let store = Store::open(&config.database_path()).expect("store opens");
    let bot = Bot::new(Engine::new(config).await, store);
    let (handler, done) = counting(bot.handler());
    let (port, client) = discord::start_with_limits(&settings, TOKEN.to_string(), prefix, envs, handler, FAST_LIMITS)
        .await
        .expect("the adapter connects to the fake Discord");
    bot.add_port(port);
    (bot, client, done)
}

/// A bot with its Slack adapter connected, and how many commands it has finished handling.
pub struct SlackBot {
    pub bot: Bot,
    pub port: Arc<SlackPort>,
    pub connection: SlackConnection,
    pub done: Handled,
}

impl SlackBot {
    /// Waits until the bot has finished handling `n` commands in all.
    pub async fn handled(&mut self, n: u32) {
        self.done.until(n).await;
    }

    /// Commands handled so far.
    pub fn handled_now(&self) -> u32 {
        self.done.now()
    }

    pub async fn stop(self) {
        self.connection.shutdown().await;
    }
}

/// A bot on the config's store, connected to the fake Slack the config names, as `argos bot`
/// connects it (tokens from the environment, events claimed in the store), at `limits`.
pub async fn start_slack_bot(config: Config, limits: SlackLimits) -> SlackBot {
    let settings = config.settings.slack.clone();
    let prefix = config.settings.chat.prefix.clone();
    let store = Store::open(&config.database_path()).expect("store opens");
    let bot = Bot::new(Engine::new(config).await, store);
    let (handler, done) = counting(bot.handler());
    let tokens = SlackTokens::from_env(&settings).expect("the fake's tokens are set");
    let (port, connection) = slack::start(&settings, tokens, prefix, handler, bot.event_claim(), limits)
        .await
        .expect("the adapter connects to the fake Slack");
    bot.add_port(port.clone());
    SlackBot {
        bot,
        port,
        connection,
        done,
    }
}

/// The app stack (CREATE_COMPLETE), its image, the default VPC, one running host per role in
/// `roles` and the stack outputs: what status, update and deploy need.
pub fn add_app(aws: &FakeAws, engine: &Engine, roles: &[&str]) {
    aws.set_default_vpc(
        "vpc-0default000000001",
        "172.31.0.0/16",
        &[("subnet-0aaa1111bbbb2222c", "us-east-1a")],
    );
    aws.add_image(Ec2Image::owned(IMAGE_ID, "argos-image", &[("App", "argos")]));
    super::add_staging_hosts(aws, roles);
    super::add_staging_stack(aws, engine, IMAGE_ID, &[], RESOURCES);
}

/// The change set of the next update: both instances modified.
pub fn two_instances() -> Vec<Change> {
    vec![
        Change::modify("ApiInstance", "AWS::EC2::Instance", "False", &["Properties"]),
        Change::modify("FrontInstance", "AWS::EC2::Instance", "False", &["Properties"]),
    ]
}

/// The next update changes two instances; each takes `seconds` (scenario time).
pub fn script_update(aws: &FakeAws, seconds: f64) {
    aws.set_change_set(STACK, two_instances());
    aws.script_next_for(
        STACK,
        Op::ExecuteChangeSet,
        StackScript::update_with_cleanup(
            STACK,
            &[
                ("ApiInstance", "AWS::EC2::Instance"),
                ("FrontInstance", "AWS::EC2::Instance"),
            ],
            &[],
            &[seconds, seconds],
        ),
    );
}
