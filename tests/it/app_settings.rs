//! The settings the playbooks write are the ones the upstream app reads (issue 9, item 2).
//!
//! The real templates are rendered by real `ansible-playbook` through the sandbox playbooks
//! (which render `playbooks/roles/*/templates` into a folder), with secrets that need quoting
//! and escaping. The rendered `argos/conf/*.py` are then loaded the way upstream's
//! `argos/conf/__init__.py` loads them (UPPERCASE members only, `str.format` on every string;
//! see `upstream_argos`), by a small Python script of our own, and the values are checked
//! against what upstream reads: names, types, and where they point. The layout (git ref, WSGI
//! module, Celery app, migrations, static files) is checked against upstream's tree.
use crate::upstream_argos;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use upstream_argos as up;

// Secrets with what breaks naive settings: braces (the loader's str.format), URL delimiters,
// percent signs, quotes and a backslash. The database password is one RDS accepts.
const DB_PASSWORD: &str = "p{a}ss%:w0rd#?&+";
const APP_SECRET: &str = "s3cr{et}-'key\"\\{0}";
const BROKER_PASSWORD: &str = "br{ok}er:pw%+/=";
const KNOWLEDGE_HOST: &str = "10.0.0.7";
const BROKER_IP: &str = "10.0.0.9";
const DB_HOST: &str = "argos-staging-database.abc.us-east-1.rds.amazonaws.com";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn venv(bin: &str) -> PathBuf {
    repo().join(".venv/bin").join(bin)
}

fn vars(rel: &str) -> serde_json::Map<String, Value> {
    let text = std::fs::read_to_string(repo().join(rel)).unwrap();
    match serde_saphyr::from_str(&text).unwrap() {
        Value::Object(m) => m,
        other => panic!("{rel}: {other}"),
    }
}

/// Runs a sandbox playbook on one local host `host` of `group`, with the other groups' hosts
/// known only by their variables; returns the host's sandbox folder.
fn render(dir: &Path, playbook: &str, group: &str, with_broker: bool) -> PathBuf {
    let host = format!("{group}-1");
    let mut children = serde_json::Map::new();
    children.insert(
        group.into(),
        json!({"hosts": {&host: {
            "ansible_connection": "local",
            "ansible_python_interpreter": venv("python"),
            "private_ip": "10.0.0.5",
        }}}),
    );
    if with_broker {
        children.insert(
            "broker".into(),
            json!({"hosts": {"broker-1": {"private_ip": BROKER_IP}}}),
        );
    }
    let run = dir.join(format!("{playbook}-{with_broker}"));
    std::fs::create_dir_all(&run).unwrap();
    let inventory = run.join("inventory.json");
    std::fs::write(&inventory, json!({"all": {"children": children}}).to_string()).unwrap();
    let extra = run.join("extra.json");
    let hosts = run.join("hosts");
    std::fs::write(
        &extra,
        json!({
            "app_name": "argos",
            "env_name": "staging",
            "database_host": DB_HOST,
            "database_port": "5432",
            "knowledge_host": KNOWLEDGE_HOST,
            "sandbox_dir": hosts,
        })
        .to_string(),
    )
    .unwrap();
    let out = Command::new(venv("ansible-playbook"))
        .arg("-i")
        .arg(&inventory)
        .arg("--extra-vars")
        .arg(format!("@{}", extra.display()))
        .arg(repo().join("config/sandbox/playbooks").join(playbook))
        .env("ARGOS_DB_PASSWORD", DB_PASSWORD)
        .env("ARGOS_APP_SECRET_KEY", APP_SECRET)
        .env("ARGOS_BROKER_PASSWORD", BROKER_PASSWORD)
        .env("ANSIBLE_HOME", run.join("home"))
        .env("ANSIBLE_LOCAL_TEMP", run.join("tmp"))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_RETRY_FILES_ENABLED", "0")
        .output()
        .expect("ansible-playbook runs (scripts/bootstrap makes .venv)");
    assert!(
        out.status.success(),
        "{playbook} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    hosts.join(host)
}

/// Our stand-in for upstream's loader (argos/conf/__init__.py, read at upstream_argos::COMMIT):
/// each of NAMES from argos/conf/<name>.py into the namespace <NAME>, members whose name
/// isupper() only, str values through value.format(**globals()). What the settings import
/// from the app's libraries is stubbed: galaxy's conf module, where the NER server is set.
const LOADER: &str = r#"
import importlib.util, inspect, json, os, sys, types
conf_dir, names = sys.argv[1], sys.argv[2].split(",")
galaxy = types.ModuleType("galaxy")
galaxy.conf = types.ModuleType("galaxy.conf")
sys.modules["galaxy"], sys.modules["galaxy.conf"] = galaxy, galaxy.conf
package = {"PACKAGE": "argos.conf", "NAMES": names}
out = {"modules": {}}
for name in names:
    path = os.path.join(conf_dir, name + ".py")
    if not os.path.exists(path):
        continue
    spec = importlib.util.spec_from_file_location("argos.conf." + name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    namespace = package.setdefault(name.upper(), {})
    ignored = []
    for k, v in inspect.getmembers(module):
        if k.isupper():
            try:
                namespace[k] = v.format(**package) if isinstance(v, str) else v
            except (KeyError, IndexError, ValueError) as e:
                out.setdefault("errors", []).append(f"{name}.{k}: {type(e).__name__} {e}")
        elif not k.startswith("_") and not inspect.ismodule(v) and not callable(v):
            ignored.append(k)
    out["modules"][name] = {"values": namespace, "ignored": ignored}
out["galaxy_conf"] = {k: v for k, v in vars(galaxy.conf).items() if k.isupper()}
def plain(v):
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return {"python": type(v).__name__, "repr": repr(v)}
print(json.dumps(plain(out)))
"#;

fn load_settings(host_root: &Path) -> Value {
    let app_dir = "srv/argos/app";
    let conf = host_root.join(app_dir).join(up::CONF_PACKAGE_DIR);
    assert!(
        conf.join("app.py").exists(),
        "no app.py rendered under {}",
        conf.display()
    );
    let out = Command::new(venv("python"))
        .args(["-c", LOADER])
        .arg(&conf)
        .arg(up::CONF_MODULES.join(","))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the loader failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// scheme://user:password@host:port/path → its parts, decoded (as kombu 3.0 and SQLAlchemy do).
fn url_parts(url: &str) -> BTreeMap<&'static str, String> {
    let (scheme, rest) = url.split_once("://").unwrap_or_else(|| panic!("not a URL: {url}"));
    let (auth, hostpath) = rest.rsplit_once('@').unwrap_or(("", rest));
    let (user, password) = auth.split_once(':').unwrap_or((auth, ""));
    let (hostport, path) = hostpath.split_once('/').unwrap_or((hostpath, ""));
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, ""));
    // What the settings put in the URL must be quoted, or the URL splits elsewhere.
    for part in [user, password] {
        assert!(
            !part.contains([':', '@', '/', '#', '?']),
            "an unquoted delimiter in {url}"
        );
    }
    assert!(!path.contains(['@', '#', '?']), "an unquoted delimiter in {url}");
    BTreeMap::from([
        ("scheme", scheme.to_string()),
        ("user", percent_decode(user)),
        ("password", percent_decode(password)),
        ("host", host.to_string()),
        ("port", port.to_string()),
        ("path", percent_decode(path)),
    ])
}

fn problems_in(settings: &Value, broker: Option<(&str, &str)>) -> Vec<String> {
    let mut p = Vec::new();
    for e in settings["errors"].as_array().into_iter().flatten() {
        p.push(format!(
            "the loader's str.format fails on {}: the app stops at import",
            e.as_str().unwrap_or_default()
        ));
    }
    let app = &settings["modules"]["app"]["values"];
    let celery = &settings["modules"]["celery"]["values"];
    for (module, m) in settings["modules"].as_object().unwrap() {
        for name in m["ignored"].as_array().unwrap().iter().filter_map(Value::as_str) {
            let hint = up::CELERY_4_NAMES
                .iter()
                .find(|(l, _)| name == *l)
                .map(|(_, u)| format!(" (Celery 3.1's name is {u})"))
                .unwrap_or_default();
            p.push(format!(
                "argos/conf/{module}.py sets {name}, which the loader ignores: only UPPERCASE names are read{hint}"
            ));
        }
    }
    // APP
    if app["DEBUG"] != false {
        p.push(format!("APP['DEBUG'] is {}, not False", app["DEBUG"]));
    }
    if app["SECRET_KEY"] != APP_SECRET {
        p.push(format!(
            "APP['SECRET_KEY'] loads as {}, not the secret as given",
            app["SECRET_KEY"]
        ));
    }
    match app[up::DATABASE.name].as_str() {
        None => p.push(format!(
            "APP['{}'] is not set: the app uses {}",
            up::DATABASE.name,
            up::DATABASE.default_text
        )),
        Some(uri) => {
            let u = url_parts(uri);
            let want = [
                ("scheme", "postgresql"),
                ("user", "argos"),
                ("password", DB_PASSWORD),
                ("host", DB_HOST),
                ("port", "5432"),
                ("path", "argos"),
            ];
            for (k, v) in want {
                if u[k] != v {
                    p.push(format!("APP['{}'] {k} is {:?}, not {v:?}", up::DATABASE.name, u[k]));
                }
            }
        }
    }
    if app[up::KNOWLEDGE.name] != KNOWLEDGE_HOST {
        p.push(format!(
            "APP['{}'] is {}, not the knowledge host",
            up::KNOWLEDGE.name,
            app[up::KNOWLEDGE.name]
        ));
    }
    let ner = &settings["galaxy_conf"][up::NER.name];
    if ner != &json!({"host": KNOWLEDGE_HOST, "port": 8080}) {
        p.push(format!(
            "galaxy_conf.{} is {ner}, not {{'host': '{KNOWLEDGE_HOST}', 'port': 8080}} (an int port); upstream's default is {}",
            up::NER.name,
            up::NER.default_text
        ));
    }
    // CELERY
    for name in celery.as_object().unwrap().keys() {
        if !up::CELERY_31_SETTINGS.contains(&name.as_str()) {
            p.push(format!("CELERY['{name}'] is not a Celery 3.1 setting"));
        }
    }
    match celery[up::BROKER.name].as_str() {
        None => p.push(format!(
            "CELERY['{}'] is not set: the app uses {}",
            up::BROKER.name,
            up::BROKER.default_text
        )),
        Some(url) => {
            let u = url_parts(url);
            let (host, password) = broker.unwrap_or(("127.0.0.1", ""));
            let want = [
                ("scheme", "redis"),
                ("host", host),
                ("port", "6379"),
                ("password", password),
                ("path", "0"),
            ];
            for (k, v) in want {
                if u[k] != v {
                    p.push(format!("CELERY['{}'] {k} is {:?}, not {v:?}", up::BROKER.name, u[k]));
                }
            }
            match celery["CELERY_RESULT_BACKEND"].as_str() {
                Some(r) if r.starts_with("redis://") => {
                    let r = url_parts(r);
                    if (r["host"].as_str(), r["password"].as_str()) != (host, password) {
                        p.push(format!("CELERY_RESULT_BACKEND points at {}, not the broker", r["host"]));
                    }
                }
                other => p.push(format!(
                    "CELERY_RESULT_BACKEND is {other:?}, expected the broker's redis"
                )),
            }
        }
    }
    match celery["CELERY_IMPORTS"].as_array() {
        None => p.push(format!(
            "CELERY['CELERY_IMPORTS'] is not overridden: upstream's default names {}, which the app no longer has",
            up::MISSING_DEFAULT_IMPORT
        )),
        Some(mods) => {
            for m in mods {
                let m = m.as_str().unwrap_or_default();
                let file = m.replace('.', "/");
                let exists = up::PATHS.contains(&format!("{file}.py").as_str())
                    || up::PATHS.contains(&format!("{file}/__init__.py").as_str());
                if !exists || !up::TASK_MODULES.contains(&m) {
                    p.push(format!("CELERY_IMPORTS names {m}, which upstream does not have"));
                }
            }
        }
    }
    if let Some(q) = celery["CELERY_DEFAULT_QUEUE"].as_str() {
        if !up::QUEUES.contains(&q) {
            p.push(format!(
                "CELERY_DEFAULT_QUEUE {q} is none of the queues upstream's workers consume: {:?}",
                up::QUEUES
            ));
        }
    }
    p
}

#[test]
fn rendered_settings_are_what_upstream_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut problems = Vec::new();
    for with_broker in [true, false] {
        let host = render(dir.path(), "collector.yml", "collector", with_broker);
        let settings = load_settings(&host);
        let broker = with_broker.then_some((BROKER_IP, BROKER_PASSWORD));
        let label = if with_broker {
            "with a broker"
        } else {
            "without a broker"
        };
        problems.extend(
            problems_in(&settings, broker)
                .into_iter()
                .map(|m| format!("[{label}] {m}")),
        );
        let unit = std::fs::read_to_string(host.join("etc/systemd/system/argos-collector.service")).unwrap();
        let exec = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).unwrap();
        if !up::CELERY_APP.iter().any(|a| exec.contains(&format!("-A {a} "))) {
            problems.push(format!(
                "[{label}] the collector starts {exec}: the Celery app is one of {:?}",
                up::CELERY_APP
            ));
        }
    }
    problems.dedup();
    assert!(
        problems.is_empty(),
        "{} problem(s):\n- {}",
        problems.len(),
        problems.join("\n- ")
    );
}

#[test]
fn the_deployed_layout_exists_upstream() {
    let mut all = vars("playbooks/roles/common/defaults/main.yml");
    all.extend(vars("playbooks/roles/app/defaults/main.yml"));
    all.extend(vars("playbooks/roles/front/defaults/main.yml"));
    all.extend(vars("playbooks/group_vars/all.yml"));
    let s = |k: &str| all.get(k).and_then(Value::as_str).unwrap_or("<not set>").to_string();
    let mut problems = Vec::new();
    let version = s("app_version");
    let commit = version.len() == 40 && version.chars().all(|c| c.is_ascii_hexdigit());
    if !(up::REFS.contains(&version.as_str()) || commit) {
        problems.push(format!(
            "app_version {version} is none of upstream's refs {:?} (nor a commit id)",
            up::REFS
        ));
    }
    if s("app_repo") != "https://github.com/publicscience/argos.git" {
        problems.push(format!("app_repo is {}", s("app_repo")));
    }
    let wsgi = s("app_wsgi_module");
    if wsgi != format!("{}:{}", up::WSGI_MODULE, up::WSGI_CALLABLE)
        || !up::PATHS.contains(&format!("{}.py", up::WSGI_MODULE).as_str())
    {
        problems.push(format!(
            "app_wsgi_module {wsgi}: upstream's WSGI app is {}:{}",
            up::WSGI_MODULE,
            up::WSGI_CALLABLE
        ));
    }
    if !up::CELERY_APP.contains(&s("celery_app").as_str()) {
        problems.push(format!(
            "celery_app {}: must be one of {:?}",
            s("celery_app"),
            up::CELERY_APP
        ));
    }
    let migrate = s("app_migrate_command");
    let args: Vec<&str> = migrate
        .strip_prefix("{{ app_venv }}/bin/python ")
        .map(|a| a.split_whitespace().collect())
        .unwrap_or_default();
    if args != up::MIGRATE_ARGS {
        problems.push(format!(
            "app_migrate_command {migrate}: upstream migrates with python {}",
            up::MIGRATE_ARGS.join(" ")
        ));
    }
    let config_dir = s("app_config_dir");
    if config_dir != format!("{{{{ app_dir }}}}/{}", up::CONF_PACKAGE_DIR) {
        problems.push(format!(
            "app_config_dir {config_dir}: upstream reads {}",
            up::CONF_PACKAGE_DIR
        ));
    }
    for (var, module) in [("app_config_path", "app"), ("celery_config_path", "celery")] {
        if s(var) != format!("{{{{ app_config_dir }}}}/{module}.py") || !up::CONF_MODULES.contains(&module) {
            problems.push(format!("{var} is {}, not argos/conf/{module}.py", s(var)));
        }
    }
    let static_dir = s("front_static_dir");
    match static_dir.strip_prefix("{{ app_dir }}/") {
        Some(rel) if up::PATHS.contains(&rel) => {}
        _ => problems.push(format!("front_static_dir {static_dir} is not a directory of the app")),
    }
    let site = std::fs::read_to_string(repo().join("playbooks/roles/front/templates/argos-site.conf.j2")).unwrap();
    if !site.contains("alias {{ front_static_dir }}/;") {
        problems.push("the nginx site does not serve front_static_dir".into());
    }
    if all["fuseki_port"] != up::FUSEKI_PORT || all["fuseki_dataset"] != up::FUSEKI_DATASET {
        problems.push(format!(
            "Fuseki serves /{}:{}, but the app queries port {} dataset {}",
            all["fuseki_dataset"],
            all["fuseki_port"],
            up::FUSEKI_PORT,
            up::FUSEKI_DATASET
        ));
    }
    let extra = all["app_extra_pip_packages"].as_array().cloned().unwrap_or_default();
    for pkg in extra.iter().filter_map(Value::as_str) {
        let name = pkg.split(['[', '=', '<', '>']).next().unwrap().to_lowercase();
        if up::PINS
            .iter()
            .any(|pin| pin.to_lowercase().starts_with(&format!("{name}==")))
        {
            problems.push(format!(
                "app_extra_pip_packages installs {pkg} over upstream's pin {}",
                up::PINS.iter().find(|p| p.to_lowercase().starts_with(&name)).unwrap()
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n- {}",
        problems.len(),
        problems.join("\n- ")
    );
}
