//! What the upstream Argos app (github.com/publicscience/argos) reads and has, written down
//! from its repository so that the tests can check our settings and playbooks against it
//! without network access. Read at master = c17a4e130e71dde98557ca4161e98411a0af4c77
//! (2014-12-15, the last commit; the repository is archived); Celery's names from the
//! celery 3.1.13 wheel that upstream's requirements.txt pins.

/// Branches and tags of the upstream repository: what `app_version` may name.
pub const REFS: &[&str] = &["master", "core_split", "v0.1.0"];

/// `argos/conf/__init__.py` loads, for each of these names, `argos.conf.default.<name>` and
/// then (if it imports) `argos.conf.<name>`, i.e. the file `argos/conf/<name>.py` that our
/// playbooks write, into the namespace `<NAME>` (`APP`, `CELERY`, ...). Only members whose
/// name `str.isupper()` are taken, and every `str` value is passed through
/// `value.format(**globals())` of that package (so a literal brace must be doubled).
pub const CONF_PACKAGE_DIR: &str = "argos/conf";
pub const CONF_MODULES: &[&str] = &["celery", "app", "security", "api"];

/// Files and directories that exist upstream (paths the playbooks point at).
pub const PATHS: &[&str] = &[
    "application.py",
    "manage.py",
    "requirements.txt",
    "migrations/env.py",
    "migrations/alembic.ini",
    "argos/conf/__init__.py",
    "argos/tasks/__init__.py",
    "argos/tasks/periodic.py",
    "argos/web/front/static",
    "argos/web/front/static/js/main.js",
];

/// The WSGI application: `application.py` defines `app = api.create_app()`.
pub const WSGI_MODULE: &str = "application";
pub const WSGI_CALLABLE: &str = "app";

/// `manage.py` is a Flask-Script manager with `manager.add_command('db', MigrateCommand)`
/// (Flask-Migrate 1.2.0, migrations in `migrations/`): `python manage.py db upgrade`.
pub const MIGRATE_ARGS: &[&str] = &["manage.py", "db", "upgrade"];

/// `argos/tasks/__init__.py` defines both `app` (a Flask app, `web.create_app(...)`) and
/// `celery` (the Celery app). Celery 3.1's `find_app` takes a module's `app` attribute before
/// its `celery` one, so `-A argos.tasks` would pick the Flask app: the Celery app must be
/// named `argos.tasks.celery` (as upstream's `go` script does) or `argos.tasks:celery`.
pub const CELERY_APP: &[&str] = &["argos.tasks.celery", "argos.tasks:celery"];

/// Modules with tasks. Upstream's default `CELERY_IMPORTS` also names
/// `tests.util.tasks_test`, which no longer exists at `COMMIT` (removed in 5a3af85), so a
/// worker started on the defaults fails on that import.
pub const TASK_MODULES: &[&str] = &["argos.tasks", "argos.tasks.periodic"];
pub const MISSING_DEFAULT_IMPORT: &str = "tests.util.tasks_test";

/// The Fuseki endpoint is not configurable beyond the host: `argos/core/knowledge/__init__.py`
/// queries `'http://{host}:3030/knowledge/query'.format(host=APP['KNOWLEDGE_HOST'])`.
pub const FUSEKI_PORT: u16 = 3030;
pub const FUSEKI_DATASET: &str = "knowledge";

/// Stanford NER is reached through the `galaxy` library: `argos/conf/default/app.py` sets
/// `galaxy_conf.STANFORD = {'host': 'localhost', 'port': 8080}` (galaxy_conf is
/// `from galaxy import conf as galaxy_conf`); a settings module sets it the same way.
pub const NER_DEFAULT: (&str, u16) = ("localhost", 8080);

/// A connection setting the app reads: in which namespace, under which name, and where the
/// app goes when the name is not set (upstream's default in `argos/conf/default/`).
pub struct ConnectionSetting {
    /// `APP`, `CELERY`, or `galaxy_conf` for the NER server.
    pub namespace: &'static str,
    pub name: &'static str,
    /// The default's host and port.
    pub default: (&'static str, u16),
    /// The default as written upstream.
    pub default_text: &'static str,
}

pub const DATABASE: ConnectionSetting = ConnectionSetting {
    namespace: "APP",
    name: "SQLALCHEMY_DATABASE_URI",
    default: ("localhost", 5432),
    default_text: "postgresql://argos_user:password@localhost:5432/argos_dev",
};
pub const KNOWLEDGE: ConnectionSetting = ConnectionSetting {
    namespace: "APP",
    name: "KNOWLEDGE_HOST",
    default: ("localhost", FUSEKI_PORT),
    default_text: "localhost",
};
pub const NER: ConnectionSetting = ConnectionSetting {
    namespace: "galaxy_conf",
    name: "STANFORD",
    default: NER_DEFAULT,
    default_text: "{'host': 'localhost', 'port': 8080}",
};
pub const BROKER: ConnectionSetting = ConnectionSetting {
    namespace: "CELERY",
    name: "BROKER_URL",
    default: ("localhost", 5672),
    default_text: "amqp://guest@localhost:5672//",
};

/// Pins in upstream's requirements.txt that decide the settings' names and URL forms.
pub const PINS: &[&str] = &["celery==3.1.13", "kombu==3.0.21", "redis==2.10.1", "Flask==0.10.1"];

/// Every setting Celery 3.1.13 knows (`celery/app/defaults.py`, NAMESPACES flattened). Celery
/// 3.1 reads only these UPPERCASE names; the lowercase ones (`broker_url`, ...) are Celery 4's.
pub const CELERY_31_SETTINGS: &[&str] = &[
    "ADMINS",
    "BROKER_CONNECTION_MAX_RETRIES",
    "BROKER_CONNECTION_RETRY",
    "BROKER_CONNECTION_TIMEOUT",
    "BROKER_FAILOVER_STRATEGY",
    "BROKER_HEARTBEAT",
    "BROKER_HEARTBEAT_CHECKRATE",
    "BROKER_HOST",
    "BROKER_LOGIN_METHOD",
    "BROKER_PASSWORD",
    "BROKER_POOL_LIMIT",
    "BROKER_PORT",
    "BROKER_TRANSPORT",
    "BROKER_TRANSPORT_OPTIONS",
    "BROKER_URL",
    "BROKER_USER",
    "BROKER_USE_SSL",
    "BROKER_VHOST",
    "CASSANDRA_COLUMN_FAMILY",
    "CASSANDRA_DETAILED_MODE",
    "CASSANDRA_KEYSPACE",
    "CASSANDRA_READ_CONSISTENCY",
    "CASSANDRA_SERVERS",
    "CASSANDRA_WRITE_CONSISTENCY",
    "CELERYBEAT_LOG_FILE",
    "CELERYBEAT_LOG_LEVEL",
    "CELERYBEAT_MAX_LOOP_INTERVAL",
    "CELERYBEAT_SCHEDULE",
    "CELERYBEAT_SCHEDULER",
    "CELERYBEAT_SCHEDULE_FILENAME",
    "CELERYBEAT_SYNC_EVERY",
    "CELERYD_AGENT",
    "CELERYD_AUTORELOADER",
    "CELERYD_AUTOSCALER",
    "CELERYD_CONCURRENCY",
    "CELERYD_CONSUMER",
    "CELERYD_FORCE_EXECV",
    "CELERYD_HIJACK_ROOT_LOGGER",
    "CELERYD_LOG_COLOR",
    "CELERYD_LOG_FILE",
    "CELERYD_LOG_FORMAT",
    "CELERYD_LOG_LEVEL",
    "CELERYD_MAX_TASKS_PER_CHILD",
    "CELERYD_POOL",
    "CELERYD_POOL_PUTLOCKS",
    "CELERYD_POOL_RESTARTS",
    "CELERYD_PREFETCH_MULTIPLIER",
    "CELERYD_STATE_DB",
    "CELERYD_TASK_LOG_FORMAT",
    "CELERYD_TASK_SOFT_TIME_LIMIT",
    "CELERYD_TASK_TIME_LIMIT",
    "CELERYD_TIMER",
    "CELERYD_TIMER_PRECISION",
    "CELERYD_WORKER_LOST_WAIT",
    "CELERYMON_LOG_FILE",
    "CELERYMON_LOG_FORMAT",
    "CELERYMON_LOG_LEVEL",
    "CELERY_ACCEPT_CONTENT",
    "CELERY_ACKS_LATE",
    "CELERY_ALWAYS_EAGER",
    "CELERY_ANNOTATIONS",
    "CELERY_BROADCAST_EXCHANGE",
    "CELERY_BROADCAST_EXCHANGE_TYPE",
    "CELERY_BROADCAST_QUEUE",
    "CELERY_CACHE_BACKEND",
    "CELERY_CACHE_BACKEND_OPTIONS",
    "CELERY_CHORD_PROPAGATES",
    "CELERY_COUCHBASE_BACKEND_SETTINGS",
    "CELERY_CREATE_MISSING_QUEUES",
    "CELERY_DEFAULT_DELIVERY_MODE",
    "CELERY_DEFAULT_EXCHANGE",
    "CELERY_DEFAULT_EXCHANGE_TYPE",
    "CELERY_DEFAULT_QUEUE",
    "CELERY_DEFAULT_RATE_LIMIT",
    "CELERY_DEFAULT_ROUTING_KEY",
    "CELERY_DISABLE_RATE_LIMITS",
    "CELERY_EAGER_PROPAGATES_EXCEPTIONS",
    "CELERY_ENABLE_REMOTE_CONTROL",
    "CELERY_ENABLE_UTC",
    "CELERY_EVENT_QUEUE_EXPIRES",
    "CELERY_EVENT_QUEUE_TTL",
    "CELERY_EVENT_SERIALIZER",
    "CELERY_IGNORE_RESULT",
    "CELERY_IMPORTS",
    "CELERY_INCLUDE",
    "CELERY_MAX_CACHED_RESULTS",
    "CELERY_MESSAGE_COMPRESSION",
    "CELERY_MONGODB_BACKEND_SETTINGS",
    "CELERY_QUEUES",
    "CELERY_QUEUE_HA_POLICY",
    "CELERY_REDIRECT_STDOUTS",
    "CELERY_REDIRECT_STDOUTS_LEVEL",
    "CELERY_REDIS_DB",
    "CELERY_REDIS_HOST",
    "CELERY_REDIS_MAX_CONNECTIONS",
    "CELERY_REDIS_PASSWORD",
    "CELERY_REDIS_PORT",
    "CELERY_RESULT_BACKEND",
    "CELERY_RESULT_DBURI",
    "CELERY_RESULT_DB_SHORT_LIVED_SESSIONS",
    "CELERY_RESULT_DB_TABLENAMES",
    "CELERY_RESULT_ENGINE_OPTIONS",
    "CELERY_RESULT_EXCHANGE",
    "CELERY_RESULT_EXCHANGE_TYPE",
    "CELERY_RESULT_PERSISTENT",
    "CELERY_RESULT_SERIALIZER",
    "CELERY_ROUTES",
    "CELERY_SECURITY_CERTIFICATE",
    "CELERY_SECURITY_CERT_STORE",
    "CELERY_SECURITY_KEY",
    "CELERY_SEND_EVENTS",
    "CELERY_SEND_TASK_ERROR_EMAILS",
    "CELERY_SEND_TASK_SENT_EVENT",
    "CELERY_STORE_ERRORS_EVEN_IF_IGNORED",
    "CELERY_TASK_PUBLISH_RETRY",
    "CELERY_TASK_PUBLISH_RETRY_POLICY",
    "CELERY_TASK_RESULT_EXPIRES",
    "CELERY_TASK_SERIALIZER",
    "CELERY_TIMEZONE",
    "CELERY_TRACK_STARTED",
    "CELERY_WORKER_DIRECT",
    "EMAIL_HOST",
    "EMAIL_HOST_PASSWORD",
    "EMAIL_HOST_USER",
    "EMAIL_PORT",
    "EMAIL_TIMEOUT",
    "EMAIL_USE_SSL",
    "EMAIL_USE_TLS",
    "SERVER_EMAIL",
];

/// Celery 4+ lowercase names; Celery 3.1 (and upstream's loader, which takes only UPPERCASE
/// names) ignore them. A few, to recognise what was meant.
pub const CELERY_4_NAMES: &[(&str, &str)] = &[
    ("broker_url", "BROKER_URL"),
    ("result_backend", "CELERY_RESULT_BACKEND"),
    ("task_default_queue", "CELERY_DEFAULT_QUEUE"),
    ("task_serializer", "CELERY_TASK_SERIALIZER"),
    ("result_serializer", "CELERY_RESULT_SERIALIZER"),
    ("accept_content", "CELERY_ACCEPT_CONTENT"),
    ("timezone", "CELERY_TIMEZONE"),
    ("enable_utc", "CELERY_ENABLE_UTC"),
    ("imports", "CELERY_IMPORTS"),
];

/// Queues upstream's default settings declare (`CELERY_QUEUES`): a custom
/// `CELERY_DEFAULT_QUEUE` outside these is consumed by no worker.
pub const QUEUES: &[&str] = &["default", "broadcast_tasks", "clustering"];

/// Lines of upstream's requirements.txt (at [`COMMIT`]) that cannot install on Ubuntu 24.04:
/// dead or SSH-only sources and a pin that no longer imports.
pub const REQUIREMENTS_THAT_FAIL: &[&str] = &[
    "celery==3.1.13",
    "kombu==3.0.21",
    "git+http://code.google.com/p/feedparser",
    "git+git://github.com/nltk/nltk.git",
    "git+ssh://git@github.com/ftzeng/galaxy.git",
];
