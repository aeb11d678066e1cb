//! The stack as today's AWS wants it (issue 9, item 3), read from the templates through the
//! crate's merge API and from the config: the base AMI from Canonical's public SSM parameter,
//! IMDSv2 required and an encrypted, tagged root volume on every instance and launch
//! template, a DB subnet group, backups and deletion protection per environment, the engine
//! by its major version, no SSH from anywhere by default, and a password pattern RDS accepts.

use std::path::PathBuf;

use argos::template::{load_formations, Template};
use serde_json::Value;

const UBUNTU_2404_SSM: &str = "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id";
const SSM_AMI_TYPE: &str = "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>";
const TAGS: [&str; 4] = ["Name", "Group", "Env", "App"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn templates() -> (Template, Template) {
    load_formations(&repo().join("formations")).expect("formations/ merges")
}

fn resources(t: &Template) -> impl Iterator<Item = (&String, &Value)> {
    t.value["Resources"].as_object().unwrap().iter()
}

fn param<'a>(t: &'a Template, name: &str) -> &'a Value {
    &t.value["Parameters"][name]
}

fn tag_keys(tags: &Value) -> Vec<String> {
    tags.as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["Key"].as_str().map(str::to_string))
        .collect()
}

/// What is missing on one instance or launch template's data.
fn instance_problems(id: &str, data: &Value, volume_tags: bool) -> Vec<String> {
    let mut out = Vec::new();
    if data["MetadataOptions"]["HttpTokens"] != "required" {
        out.push(format!(
            "{id}: MetadataOptions.HttpTokens is not 'required' (IMDSv1 stays on)"
        ));
    }
    let root = data["BlockDeviceMappings"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["DeviceName"] == "/dev/sda1");
    match root {
        None => out.push(format!(
            "{id}: no BlockDeviceMappings entry for the root volume /dev/sda1"
        )),
        Some(m) if m["Ebs"]["Encrypted"] != true => out.push(format!("{id}: the root volume is not encrypted")),
        Some(_) => {}
    }
    if !volume_tags {
        out.push(format!("{id}: the root volume gets no tags"));
    }
    out
}

#[test]
fn instances_require_imdsv2_and_encrypted_tagged_root_volumes() {
    let (image, app) = templates();
    let mut problems = Vec::new();
    let mut seen = 0;
    for t in [&image, &app] {
        for (id, r) in resources(t) {
            let p = &r["Properties"];
            match r["Type"].as_str().unwrap() {
                "AWS::EC2::Instance" => {
                    seen += 1;
                    let tagged = p["PropagateTagsToVolumeOnCreation"] == true
                        && TAGS.iter().all(|k| tag_keys(&p["Tags"]).contains(&k.to_string()));
                    problems.extend(instance_problems(id, p, tagged));
                }
                "AWS::EC2::LaunchTemplate" => {
                    seen += 1;
                    let data = &p["LaunchTemplateData"];
                    let tagged = data["TagSpecifications"].as_array().into_iter().flatten().any(|s| {
                        s["ResourceType"] == "volume"
                            && TAGS.iter().all(|k| tag_keys(&s["Tags"]).contains(&k.to_string()))
                    });
                    problems.extend(instance_problems(id, data, tagged));
                }
                _ => {}
            }
        }
    }
    assert_eq!(seen, 7, "six instances and the workers' launch template");
    assert!(
        problems.is_empty(),
        "{} problem(s):\n- {}",
        problems.len(),
        problems.join("\n- ")
    );
}

#[test]
fn the_base_image_is_ubuntu_2404_from_the_public_ssm_parameter() {
    let (image, _) = templates();
    let mut problems = Vec::new();
    let base = param(&image, "BaseImageId");
    if base["Type"] != SSM_AMI_TYPE {
        problems.push(format!(
            "image.json BaseImageId is {}, not {SSM_AMI_TYPE}",
            base["Type"]
        ));
    }
    // The default lives in group_vars (the engine always passes BaseImageId from base_ami). A
    // Default in the template would be resolved by moto even when a value is passed, and moto
    // ships no Canonical parameters: CreateStack would fail with an internal error there.
    if !(base["Default"].is_null() || base["Default"] == UBUNTU_2404_SSM) {
        problems.push(format!(
            "image.json BaseImageId defaults to {}, not {UBUNTU_2404_SSM}",
            base["Default"]
        ));
    }
    let vars: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(repo().join("playbooks/group_vars/all.yml")).unwrap()).unwrap();
    if vars["base_ami"] != UBUNTU_2404_SSM {
        problems.push(format!(
            "group_vars base_ami is {}: the engine passes it as BaseImageId, so it must name the SSM parameter {UBUNTU_2404_SSM}",
            vars["base_ami"]
        ));
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n- {}",
        problems.len(),
        problems.join("\n- ")
    );
}

#[test]
fn the_database_has_a_subnet_group_backups_and_deletion_protection_per_environment() {
    let (_, app) = templates();
    let mut problems = Vec::new();
    let (_, db) = resources(&app)
        .find(|(_, r)| r["Type"] == "AWS::RDS::DBInstance")
        .expect("a database");
    let p = &db["Properties"];
    let version = p["EngineVersion"].as_str().unwrap_or_default();
    if version.is_empty() || !version.chars().all(|c| c.is_ascii_digit()) {
        problems.push(format!(
            "EngineVersion is '{version}': pin the major version only (minor versions are retired)"
        ));
    }
    let groups: Vec<(&String, &Value)> = resources(&app)
        .filter(|(_, r)| r["Type"] == "AWS::RDS::DBSubnetGroup")
        .collect();
    match groups.as_slice() {
        [(id, g)] => {
            // A list parameter, or a comma-separated String split (what moto reports back intact).
            let ids = &g["Properties"]["SubnetIds"];
            let (subnets, split) = match ids["Fn::Split"].as_array() {
                Some(a) => (a[1]["Ref"].as_str().unwrap_or_default(), a[0] == ","),
                None => (ids["Ref"].as_str().unwrap_or_default(), false),
            };
            let ty = param(&app, subnets)["Type"].as_str().unwrap_or_default();
            if !(ty == "CommaDelimitedList" || ty == "List<AWS::EC2::Subnet::Id>" || ty == "String" && split) {
                problems.push(format!(
                    "{id}: SubnetIds must come from a subnet list parameter, not {ids}"
                ));
            }
            let uses = p["DBSubnetGroupName"].to_string();
            if !uses.contains(&format!("{{\"Ref\":\"{id}\"}}")) {
                problems.push(format!(
                    "the database does not use {id}: DBSubnetGroupName is {}",
                    p["DBSubnetGroupName"]
                ));
            }
        }
        other => problems.push(format!("{} DB subnet groups, expected one", other.len())),
    }
    for (prop, what) in [
        ("BackupRetentionPeriod", "backup retention"),
        ("DeletionProtection", "deletion protection"),
    ] {
        match p[prop]["Ref"].as_str() {
            Some(name) if !param(&app, name).is_null() => {}
            _ => problems.push(format!("{what} ({prop}) is not set from a parameter: {}", p[prop])),
        }
    }
    // Production turns both on in the config; other environments keep the defaults.
    let config = argos::config::Config::load(&repo().join("config/argos.yaml")).expect("config/argos.yaml loads");
    let (_, production) = config.environment("production").expect("a production environment");
    let by_param = |prop: &str| p[prop]["Ref"].as_str().unwrap_or_default().to_string();
    let protection = production.parameters.get(&by_param("DeletionProtection"));
    if protection.map(String::as_str) != Some("true") {
        problems.push(format!(
            "production does not turn deletion protection on: {protection:?}"
        ));
    }
    let retention = production.parameters.get(&by_param("BackupRetentionPeriod"));
    if retention.and_then(|r| r.parse::<u32>().ok()).unwrap_or(0) < 7 {
        problems.push(format!("production keeps backups for less than 7 days: {retention:?}"));
    }
    let default_retention = param(&app, &by_param("BackupRetentionPeriod"))["Default"].as_u64();
    if default_retention.unwrap_or(0) < 1 {
        problems.push(format!(
            "the default backup retention is {default_retention:?}: backups off"
        ));
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n- {}",
        problems.len(),
        problems.join("\n- ")
    );
}

#[test]
fn ssh_is_not_open_to_the_world_by_default() {
    let (image, app) = templates();
    let mut problems = Vec::new();
    for (name, t) in [("image.json", &image), ("merged template", &app)] {
        let d = &param(t, "AllowedSshCidr")["Default"];
        if d == "0.0.0.0/0" || d == "::/0" {
            problems.push(format!("{name}: AllowedSshCidr defaults to {d}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n- {}",
        problems.len(),
        problems.join("\n- ")
    );
}

#[test]
fn the_database_password_pattern_is_what_rds_accepts() {
    let (_, app) = templates();
    let p = param(&app, "DatabasePassword");
    assert_eq!(p["NoEcho"], true);
    let mut problems = Vec::new();
    if p["MinLength"] != 8 || p["MaxLength"] != 128 {
        problems.push(format!(
            "length {}..{}, RDS takes 8..128",
            p["MinLength"], p["MaxLength"]
        ));
    }
    let pattern = p["AllowedPattern"].as_str().unwrap_or("");
    if pattern.is_empty() {
        problems.push("no AllowedPattern: CloudFormation accepts passwords RDS rejects (/, \", @, space)".into());
    } else {
        // CloudFormation matches the whole value (Java regex; these classes mean the same in Python's).
        let good = [
            "test-db-password-5f2c",
            "Ab1!#$%&'()*+,-.:;<=>?[\\]^_`{|}~",
            &"x".repeat(128),
        ];
        let bad = [
            "has/slash",
            "has\"quote",
            "has@at12",
            "has space",
            "tab\tchar1",
            "pässwort12",
        ];
        let script = "import json,re,sys\np,good,bad=json.loads(sys.stdin.read())\nprint(json.dumps([[s for s in good if not re.fullmatch(p,s)],[s for s in bad if re.fullmatch(p,s)]]))";
        let python = repo().join(".venv/bin/python");
        let python = if python.exists() {
            python
        } else {
            PathBuf::from("python3")
        };
        let mut child = std::process::Command::new(python)
            .args(["-c", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python runs");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(serde_json::json!([pattern, good, bad]).to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let (refused, accepted): (Vec<String>, Vec<String>) =
            serde_json::from_slice(&out.stdout).expect("python answers");
        if !refused.is_empty() {
            problems.push(format!(
                "AllowedPattern {pattern} refuses passwords RDS accepts: {refused:?}"
            ));
        }
        if !accepted.is_empty() {
            problems.push(format!(
                "AllowedPattern {pattern} accepts passwords RDS rejects: {accepted:?}"
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

#[test]
fn the_sandbox_group_vars_differ_from_the_real_ones_in_base_ami_only() {
    let load = |rel: &str| -> serde_json::Map<String, Value> {
        let text = std::fs::read_to_string(repo().join(rel)).unwrap();
        match serde_saphyr::from_str(&text).unwrap() {
            Value::Object(m) => m,
            other => panic!("{rel}: {other}"),
        }
    };
    let mut real = load("playbooks/group_vars/all.yml");
    let mut sandbox = load("config/sandbox/group_vars.yml");
    let sandbox_ami = sandbox.remove("base_ami").unwrap();
    assert_eq!(real.remove("base_ami").unwrap(), UBUNTU_2404_SSM);
    // moto ships the public Amazon Linux parameters (moto/ssm/resources/ami-amazon-linux-latest).
    assert!(
        sandbox_ami
            .as_str()
            .is_some_and(|a| a.starts_with("/aws/service/ami-amazon-linux-latest/")),
        "{sandbox_ami}"
    );
    assert_eq!(
        real, sandbox,
        "config/sandbox/group_vars.yml must follow playbooks/group_vars/all.yml"
    );
}
