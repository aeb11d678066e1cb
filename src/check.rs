//! `argos check`: every check that needs no AWS call, at once. The templates merge within
//! CloudFormation's limits, the playbooks pass `ansible-playbook --syntax-check`, and the SSH
//! key exists with mode 0600. Each environment's stack parameters are checked too: the base
//! image names an SSM parameter, SSH is not open to the world (a warning) and has a CIDR at
//! all, the template's rules accept the parameters, the database password is one RDS takes,
//! the DB subnet group has two subnets, a broker has its password, and the front is HTTPS or
//! plain HTTP on purpose (a warning). cfn-lint runs on both
//! templates when it is installed (`cfn_lint`).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::config::{Config, Connection};
use crate::template::{load_formations, Template};

mod cfn_lint;

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub check: String,
    pub ok: bool,
    pub message: String,
}

impl Finding {
    fn ok(check: &str, message: impl Into<String>) -> Finding {
        Finding {
            check: check.into(),
            ok: true,
            message: message.into(),
        }
    }
    fn fail(check: &str, message: impl Into<String>) -> Finding {
        Finding {
            check: check.into(),
            ok: false,
            message: message.into(),
        }
    }
}

/// The key must exist and be readable by its owner only (ssh refuses anything looser).
pub fn key_file(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|_| {
        format!(
            "SSH key {} is missing: put the private key of the EC2 key pair there (see keys/README.md)",
            path.display()
        )
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode != 0o600 && mode != 0o400 {
        return Err(format!(
            "SSH key {} has mode {mode:o}; it must be 600 (chmod 600 {})",
            path.display(),
            path.display()
        ));
    }
    Ok(())
}

/// Runs every check; the config itself was already validated by loading it.
pub async fn run(config: &Config) -> Vec<Finding> {
    let mut findings = vec![Finding::ok(
        "config",
        format!(
            "{} and {} are valid",
            config.file.display(),
            config.group_vars_path().display()
        ),
    )];
    match load_formations(&config.formations_dir()) {
        Ok((image, merged)) => {
            findings.push(Finding::ok(
                "templates",
                format!(
                    "image.json: {} resource(s); merged: {} resource(s), {} parameter(s), {} byte(s)",
                    image.resources().len(),
                    merged.resources().len(),
                    merged.parameters().len(),
                    merged.body.len()
                ),
            ));
            findings.extend(stack_findings(config, &image, &merged));
            findings.extend(cfn_lint::findings(config, &merged).await);
        }
        Err(e) => findings.push(Finding::fail("templates", e.to_string())),
    }
    let mut dirs = vec![config.project_playbooks_dir()];
    if config.playbooks_dir() != config.project_playbooks_dir() {
        dirs.push(config.playbooks_dir());
    }
    for dir in dirs {
        findings.extend(syntax_check(config, &dir).await);
    }
    let envs: Vec<String> = config.settings.environments.keys().cloned().collect();
    let perms = crate::permissions::Permissions::new(
        config.settings.permissions.clone(),
        crate::people::People::new(&config.settings.people),
    );
    let warnings = perms.warnings(&envs);
    if warnings.is_empty() {
        findings.push(Finding::ok(
            "permissions",
            format!(
                "{} rule(s), every one can match",
                config.settings.permissions.rules.len()
            ),
        ));
    }
    for w in warnings {
        findings.push(Finding {
            check: "permissions".into(),
            ok: true,
            message: format!("warning: {w}"),
        });
    }
    let freezes = &config.settings.freezes;
    let freeze_warnings = crate::config::freezes::warnings(freezes, &envs, crate::clock::now());
    if !freezes.is_empty() && freeze_warnings.is_empty() {
        findings.push(Finding::ok(
            "freezes",
            format!("{} freeze(s), each on a configured environment", freezes.len()),
        ));
    }
    for w in freeze_warnings {
        findings.push(Finding {
            check: "freezes".into(),
            ok: true,
            message: format!("warning: {w}"),
        });
    }
    findings.push(stack_events_finding(config));
    if config.settings.ansible.connection == Connection::Local {
        findings.push(Finding::ok(
            "ssh key",
            "not needed: hosts are reached with the local connection",
        ));
    } else {
        findings.push(match key_file(&config.key_file()) {
            Ok(()) => Finding::ok("ssh key", format!("{} (mode 600)", config.key_file().display())),
            Err(e) => Finding::fail("ssh key", e),
        });
    }
    findings
}

/// How stack operations are followed: polled, or pushed through the events queue, and how
/// to set the queue up (checked without AWS: whether the setup stack exists is for
/// `argos setup-events` to find out).
pub fn stack_events_finding(config: &Config) -> Finding {
    match &config.settings.watch.events_queue {
        None => Finding::ok(
            "stack events",
            "polled (DescribeStackEvents): to have CloudFormation push them, set watch.events_queue \
             and run `argos setup-events`",
        ),
        Some(queue) => Finding::ok(
            "stack events",
            format!(
                "pushed through SQS queue {queue} (polled when quiet for {} s); `argos setup-events` creates \
                 or updates its EventBridge rule and queue (stack {})",
                config.settings.watch.events_quiet_secs,
                crate::cloud::events::setup::stack_name(&config.vars.app_name)
            ),
        ),
    }
}

fn warn(check: &str, message: impl Into<String>) -> Finding {
    Finding::ok(check, format!("warning: {}", message.into()))
}

/// The group variable that names the environment variable of the broker's password.
pub const BROKER_PASSWORD_VAR: &str = "broker_password";

/// What each environment's stack would be created with, checked without AWS.
pub fn stack_findings(config: &Config, image: &Template, merged: &Template) -> Vec<Finding> {
    let mut out = image_findings(config, image);
    out.extend(password_findings(config));
    for name in config.settings.environments.keys() {
        out.extend(environment_findings(config, name, merged));
    }
    out
}

/// What the image build stack would be created with: its base image and its SSH CIDR.
pub fn image_findings(config: &Config, image: &Template) -> Vec<Finding> {
    let mut out = Vec::new();
    out.push(match base_ami_problem(&config.vars.base_ami) {
        None => Finding::ok("base image", format!("from the SSM parameter {}", config.vars.base_ami)),
        Some(p) => Finding::fail("base image", p),
    });
    // The image build takes only network.allowed_ssh_cidr (environments do not apply).
    let image_cidr = config
        .settings
        .network
        .allowed_ssh_cidr
        .clone()
        .or_else(|| default_of(image, "AllowedSshCidr"));
    out.extend(ssh_finding("image build", image_cidr.as_deref()));
    out
}

fn default_of(t: &Template, name: &str) -> Option<String> {
    t.parameters()
        .into_iter()
        .find(|p| p.name == name)
        .and_then(|p| p.default)
}

/// The database password, if RDS would refuse it (never quoting it).
pub fn password_findings(config: &Config) -> Option<Finding> {
    let password = config.var("db_password").ok().flatten();
    password.as_deref().and_then(rds_password_problem).map(|problem| {
        Finding::fail(
            "database password",
            format!("ARGOS_DB_PASSWORD {problem}; RDS takes 8 to 128 printable ASCII characters other than / \" @ and space"),
        )
    })
}

/// What environment `name`'s stack would be created with: its SSH CIDR, the template's rules,
/// its DB subnets and the broker's password.
pub fn environment_findings(config: &Config, name: &str, merged: &Template) -> Vec<Finding> {
    let mut out = Vec::new();
    let Ok((_, env)) = config.environment(name) else {
        return out;
    };
    let net = &config.settings.network;
    let broker_password = config.var(BROKER_PASSWORD_VAR).ok().flatten().filter(|p| !p.is_empty());
    let mut values: BTreeMap<String, String> = merged
        .parameters()
        .into_iter()
        .filter_map(|p| Some((p.name, p.default?)))
        .collect();
    if let Some(cidr) = &net.allowed_ssh_cidr {
        values.insert("AllowedSshCidr".into(), cidr.clone());
    }
    values.extend(env.parameters.clone());
    let label = format!("environment {name}");
    let declared: Vec<String> = merged.parameters().into_iter().map(|p| p.name).collect();
    match env.stack_choices(name, &declared) {
        Ok(choices) => {
            if choices.get("CertificateArn").is_some_and(String::is_empty) {
                out.push(warn(
                    &label,
                    "plain_http: true: the front serves plain HTTP to the internet, so sign-in and API traffic cross it in clear text; set certificate_arn (an ACM certificate) for HTTPS",
                ));
            }
            values.extend(choices);
        }
        Err(e) => out.push(Finding::fail(&label, e)),
    }
    out.extend(ssh_finding(&label, values.get("AllowedSshCidr").map(String::as_str)));
    for refused in merged.rule_violations(&values) {
        out.push(Finding::fail(
            &label,
            format!("the template's rules refuse its parameters: {refused}"),
        ));
    }
    let subnets: Vec<&str> = values
        .get("DatabaseSubnetIds")
        .map(|s| s.split(',').map(str::trim).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    match (subnets.len(), &net.vpc_id) {
        (1, _) => out.push(Finding::fail(
            &label,
            "DatabaseSubnetIds names one subnet; a DB subnet group needs subnets in at least two Availability Zones",
        )),
        (0, Some(vpc)) => out.push(warn(
            &label,
            format!("network.vpc_id is {vpc} and DatabaseSubnetIds is empty: RDS then uses the VPC's default DB subnet group, which only the default VPC has; set environments.{name}.parameters.DatabaseSubnetIds to subnets of two Availability Zones"),
        )),
        _ => {}
    }
    if values.get("EnableBroker").map(String::as_str) == Some("true") && broker_password.is_none() {
        out.push(Finding::fail(
            &label,
            "EnableBroker is true but ARGOS_BROKER_PASSWORD is not set: the broker's Redis and its clients need it",
        ));
    }
    out
}

/// The failures among `findings`, each as `argos check` prints it (check, then message), or
/// `None` when all passed.
pub fn failures(findings: &[Finding]) -> Option<String> {
    let failed: Vec<String> = findings
        .iter()
        .filter(|f| !f.ok)
        .map(|f| format!("{}: {}", f.check, f.message))
        .collect();
    (!failed.is_empty()).then(|| failed.join("; "))
}

/// The base image must be an SSM parameter's name: image.json takes `BaseImageId` as
/// `AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>`.
pub fn base_ami_problem(base_ami: &str) -> Option<String> {
    if base_ami.starts_with('/') {
        return None;
    }
    let how = "store it in a parameter of your own (aws ssm put-parameter --name /argos/base-ami --type String --data-type aws:ec2:image --value ami-...) and name that";
    Some(if base_ami == "ami-0123456789abcdef0" {
        format!("base_ami is the old placeholder {base_ami}: use Canonical's /aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id, or to pin an AMI {how}")
    } else if base_ami.starts_with("ami-") {
        format!(
            "base_ami is the AMI id {base_ami}, but image.json takes the name of an SSM parameter: to pin an AMI {how}"
        )
    } else {
        format!("base_ami '{base_ami}' is not the name of an SSM parameter (those start with /)")
    })
}

/// Why RDS would refuse this master password, if it would (never quoting it).
pub fn rds_password_problem(password: &str) -> Option<String> {
    let n = password.chars().count();
    if !(8..=128).contains(&n) {
        return Some(format!("has {n} characters"));
    }
    let bad: Vec<String> = password
        .chars()
        .filter(|c| !c.is_ascii_graphic() || matches!(c, '/' | '"' | '@'))
        .map(|c| match c {
            ' ' => "space".to_string(),
            c if c.is_ascii_graphic() => format!("'{c}'"),
            c => format!("U+{:04X}", c as u32),
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    (!bad.is_empty()).then(|| format!("contains {}", bad.join(", ")))
}

/// SSH must be limited to someone: no CIDR is an error, the whole internet a warning.
fn ssh_finding(label: &str, cidr: Option<&str>) -> Option<Finding> {
    match cidr {
        None => Some(Finding::fail(
            label,
            "no SSH CIDR (AllowedSshCidr has no default): set network.allowed_ssh_cidr to the addresses Ansible connects from, e.g. 203.0.113.7/32",
        )),
        Some(c) if c == "0.0.0.0/0" || c == "::/0" => Some(warn(
            label,
            format!("SSH (22) is open to the whole internet ({c}) on every instance: restrict network.allowed_ssh_cidr"),
        )),
        Some(_) => None,
    }
}

async fn syntax_check(config: &Config, dir: &Path) -> Vec<Finding> {
    let mut playbooks: Vec<_> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yml"))
            .collect(),
        Err(e) => return vec![Finding::fail("playbooks", format!("{}: {e}", dir.display()))],
    };
    playbooks.sort();
    let groups: serde_json::Map<String, serde_json::Value> = playbooks
        .iter()
        .filter_map(|p| p.file_stem())
        .map(|s| (s.to_string_lossy().to_string(), serde_json::json!({"hosts": {}})))
        .collect();
    // A folder of this check's own: two checks may run at once in one process (the bot's
    // preflight beside `argos check` in a console).
    static CHECKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = CHECKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = std::env::temp_dir().join(format!("argos-check-{}-{n}", std::process::id()));
    let _ = std::fs::create_dir_all(&tmp);
    let inventory = tmp.join("inventory.json");
    let _ = std::fs::write(&inventory, serde_json::json!({"all": {"children": groups}}).to_string());
    let name = |pb: &Path| pb.strip_prefix(&config.root).unwrap_or(pb).display().to_string();
    // One run for every playbook first: each start of ansible-playbook costs about 0.7
    // CPU-seconds, and usually every playbook parses. Only when that run fails is each playbook
    // checked alone, to name the ones that fail.
    let out = match syntax_run(config, dir, &tmp, &inventory, &playbooks).await {
        Ok(()) => playbooks
            .iter()
            .map(|pb| Finding::ok("playbook syntax", name(pb)))
            .collect(),
        Err(_) => {
            let mut out = Vec::new();
            for pb in &playbooks {
                out.push(
                    match syntax_run(config, dir, &tmp, &inventory, std::slice::from_ref(pb)).await {
                        Ok(()) => Finding::ok("playbook syntax", name(pb)),
                        Err(SyntaxError::Failed(first)) => {
                            Finding::fail("playbook syntax", format!("{}: {first}", name(pb)))
                        }
                        Err(SyntaxError::NotRun(e)) => Finding::fail(
                            "playbook syntax",
                            format!(
                                "cannot run {}: {e} (run scripts/bootstrap)",
                                config.ansible_command().display()
                            ),
                        ),
                    },
                );
            }
            out
        }
    };
    let _ = std::fs::remove_dir_all(&tmp);
    out
}

/// Why `ansible-playbook --syntax-check` did not pass.
enum SyntaxError {
    /// It ran and failed: its first line that says ERROR.
    Failed(String),
    /// It could not be started.
    NotRun(std::io::Error),
}

/// `ansible-playbook --syntax-check` on `playbooks`, in one run.
async fn syntax_run(
    config: &Config,
    dir: &Path,
    tmp: &Path,
    inventory: &Path,
    playbooks: &[std::path::PathBuf],
) -> std::result::Result<(), SyntaxError> {
    let output = tokio::process::Command::new(config.ansible_command())
        .arg("--syntax-check")
        .arg("-i")
        .arg(inventory)
        .args(playbooks)
        .current_dir(dir)
        .env("ANSIBLE_HOME", tmp.join("home"))
        .env("ANSIBLE_LOCAL_TEMP", tmp.join("tmp"))
        .env("ANSIBLE_NOCOLOR", "1")
        .output()
        .await
        .map_err(SyntaxError::NotRun)?;
    if output.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&output.stderr).to_string() + &String::from_utf8_lossy(&output.stdout);
    let first = text
        .lines()
        .find(|l| l.contains("ERROR"))
        .unwrap_or(text.lines().next().unwrap_or("failed"))
        .to_string();
    Err(SyntaxError::Failed(first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rds_password_rules() {
        assert_eq!(rds_password_problem("test-db-password-5f2c"), None);
        assert_eq!(rds_password_problem("Ab1!#$%&'()*+,-.:;<=>?[\\]^_`{|}~"), None);
        assert_eq!(rds_password_problem("short"), Some("has 5 characters".into()));
        assert_eq!(
            rds_password_problem("a/b\"c@d e-long"),
            Some("contains '\"', '/', '@', space".into())
        );
        assert_eq!(rds_password_problem("pässwort-long"), Some("contains U+00E4".into()));
        assert!(rds_password_problem(&"x".repeat(129)).is_some());
    }

    #[test]
    fn base_ami_must_name_an_ssm_parameter() {
        assert_eq!(
            base_ami_problem("/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id"),
            None
        );
        assert!(base_ami_problem("ami-0123456789abcdef0")
            .unwrap()
            .contains("placeholder"));
        assert!(base_ami_problem("ami-0abc1234def567890")
            .unwrap()
            .contains("put-parameter"));
        assert!(base_ami_problem("ubuntu").is_some());
    }

    #[test]
    fn ssh_open_to_the_world_warns_and_none_fails() {
        let w = ssh_finding("environment staging", Some("0.0.0.0/0")).unwrap();
        assert!(
            w.ok && w.message.starts_with("warning:") && w.message.contains("0.0.0.0/0"),
            "{w:?}"
        );
        let f = ssh_finding("environment staging", None).unwrap();
        assert!(!f.ok && f.message.contains("network.allowed_ssh_cidr"), "{f:?}");
        assert!(ssh_finding("environment staging", Some("203.0.113.7/32")).is_none());
    }

    fn config_with(network: &str, environments: &str) -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("argos.yaml");
        let yaml = format!(
            "paths:\n  root: {}\n  group_vars: config/sandbox/group_vars.yml\nnetwork:\n{network}\nenvironments:\n{environments}\n",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::write(&path, yaml).unwrap();
        let config = Config::load(&path).unwrap();
        (dir, config)
    }

    #[test]
    fn the_front_is_https_or_plain_http_on_purpose() {
        let cert = "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-0000-4000-8000-000000000000";
        let (_dir, config) = config_with(
            "  allowed_ssh_cidr: 203.0.113.7/32",
            &format!("  plain:\n    plain_http: true\n  unsaid: {{}}\n  https:\n    certificate_arn: {cert}\n"),
        );
        let (image, merged) = load_formations(&config.formations_dir()).unwrap();
        let findings = stack_findings(&config, &image, &merged);
        let about = |label: &str| -> String {
            findings
                .iter()
                .filter(|f| f.check == label)
                .map(|f| format!("{} {}", if f.ok { "ok" } else { "FAIL" }, f.message))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let plain = about("environment plain");
        assert!(
            plain.contains("ok warning: plain_http: true: the front serves plain HTTP"),
            "{plain}"
        );
        assert!(!plain.contains("FAIL"), "{plain}");
        let unsaid = about("environment unsaid");
        assert!(
            unsaid.contains("FAIL environments.unsaid.certificate_arn: the front needs HTTPS"),
            "{unsaid}"
        );
        // A certificate needs the load balancer's subnets (the template's rule).
        let https = about("environment https");
        assert!(
            https.contains("FAIL the template's rules refuse its parameters: LoadBalancerNeedsSubnets"),
            "{https}"
        );
        assert!(!https.contains("plain HTTP"), "{https}");
    }

    #[test]
    fn each_environment_is_checked_with_its_parameters() {
        let (_dir, config) = config_with(
            "  allowed_ssh_cidr: 0.0.0.0/0\n  vpc_id: vpc-0abc",
            "  staging: {}\n  production:\n    parameters: {AllowedSshCidr: 198.51.100.0/24, WorkerCount: \"2\", DatabaseSubnetIds: subnet-a}\n",
        );
        let (image, merged) = load_formations(&config.formations_dir()).unwrap();
        let findings = stack_findings(&config, &image, &merged);
        let about = |label: &str| -> Vec<String> {
            findings
                .iter()
                .filter(|f| f.check == label)
                .map(|f| format!("{} {}", if f.ok { "ok" } else { "FAIL" }, f.message))
                .collect()
        };
        let staging = about("environment staging").join("\n");
        assert!(
            staging.contains("ok warning: SSH (22) is open to the whole internet"),
            "{staging}"
        );
        assert!(staging.contains("ok warning: network.vpc_id is vpc-0abc"), "{staging}");
        let production = about("environment production").join("\n");
        assert!(!production.contains("open to the whole internet"), "{production}");
        assert!(
            production.contains("FAIL the template's rules refuse its parameters: WorkersNeedBroker"),
            "{production}"
        );
        assert!(
            production.contains("FAIL DatabaseSubnetIds names one subnet"),
            "{production}"
        );
        assert!(about("image build").join("").contains("warning: SSH (22) is open"));
        assert!(findings.iter().any(|f| f.check == "base image" && f.ok), "{findings:?}");
    }
}
