//! The whole lifecycle against a real moto server through the real SDK clients, with the
//! sandbox playbooks run by real ansible-playbook: commission → status → deploy → update →
//! decommission → clean, asserting what AWS holds after each step.
use crate::support;

use std::collections::BTreeMap;

use argos::cloud::ec2::Params;
use argos::engine;
use argos::progress::Progress;
use support::ec2::{call, filters, instances, tag_map};
use support::moto::Moto;
use support::{Recorder, TestProject};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_lifecycle_on_moto() {
    let moto = Moto::start().await;
    let project = TestProject::new(&moto.url, "").sandbox_playbooks();
    let engine = project.engine().await;
    let aws = engine.aws.clone();
    let log = project.dir.path().join("lifecycle.log");

    // commission: bakes the image, creates the stack, deploys every role.
    let mut rec = Recorder::new(&engine, "staging", Some(&log));
    let summary = Box::pin(engine::commission(&rec.ctx, &Default::default()))
        .await
        .expect("commission succeeds");
    assert_eq!(summary.headline, "commissioned argos-staging");
    assert_eq!(summary.hosts.len(), 4, "{summary:?}");
    let events = rec.events();
    assert!(events
        .iter()
        .any(|p| matches!(p, Progress::Step { name, .. } if name == "bake image")));
    assert!(
        events
            .iter()
            .any(|p| matches!(p, Progress::Step { name, .. } if name == "wait for ssh"))
            || events
                .iter()
                .any(|p| matches!(p, Progress::Info { message } if message.contains("no SSH to wait for")))
    );

    let stacks = aws
        .cfn()
        .await
        .describe_stacks()
        .stack_name("argos-staging")
        .send()
        .await
        .unwrap();
    let stack = &stacks.stacks()[0];
    assert_eq!(stack.stack_status().unwrap().as_str(), "CREATE_COMPLETE");
    let stack_tags: BTreeMap<_, _> = stack
        .tags()
        .iter()
        .map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string()))
        .collect();
    assert_eq!(stack_tags.get("App").map(String::as_str), Some("argos"));
    assert_eq!(stack_tags.get("Env").map(String::as_str), Some("staging"));
    let params: BTreeMap<_, _> = stack
        .parameters()
        .iter()
        .map(|p| {
            (
                p.parameter_key().unwrap().to_string(),
                p.parameter_value().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(params["AllowedSshCidr"], support::SSH_CIDR);

    // The four tags on every instance of the environment.
    let running = filters(&[("tag:Env", "staging"), ("instance-state-name", "running")]);
    let out = call(&aws, "DescribeInstances", running.clone()).await;
    let found = instances(&out);
    assert_eq!(found.len(), 4);
    let mut groups = Vec::new();
    for i in &found {
        let tags = tag_map(i);
        let group = tags.get("Group").expect("Group tag").clone();
        assert_eq!(tags.get("Name"), Some(&format!("argos-staging-{group}")), "{tags:?}");
        assert_eq!(tags.get("Env").map(String::as_str), Some("staging"));
        assert_eq!(tags.get("App").map(String::as_str), Some("argos"));
        groups.push(group);
    }
    groups.sort();
    assert_eq!(groups, ["api", "collector", "front", "knowledge"]);

    // The image is ours, tagged, and its build stack and instance are gone.
    let mine = filters(&[("name", "argos-image")]).list("Owner", &["self"]);
    let images = call(&aws, "DescribeImages", mine).await;
    let images: Vec<_> = images.items("imagesSet").collect();
    assert_eq!(images.len(), 1);
    let image_tags = tag_map(images[0]);
    assert_eq!(image_tags.get("App").map(String::as_str), Some("argos"));
    assert!(
        image_tags.get("InputsHash").is_some_and(|h| h.len() == 16),
        "{image_tags:?}"
    );
    let build = aws.cfn().await.describe_stacks().stack_name("argos-image").send().await;
    assert!(build.is_err(), "the build stack is deleted after baking");
    let build = filters(&[("tag:Group", "image"), ("instance-state-name", "running")]);
    let build_instances = call(&aws, "DescribeInstances", build).await;
    assert!(instances(&build_instances).is_empty(), "no build instance left running");

    // The playbooks received the stack outputs: the api's rendered settings name the database.
    let db_host = stack
        .outputs()
        .iter()
        .find(|o| o.output_key() == Some("DatabaseHost"))
        .unwrap()
        .output_value()
        .unwrap();
    let rendered = find_files(&project.hosts_dir(), "app.py");
    assert!(!rendered.is_empty(), "the api and collector settings are rendered");
    let text = std::fs::read_to_string(&rendered[0]).unwrap();
    assert!(text.contains(db_host), "rendered settings use the stack's DatabaseHost");

    // status
    let mut rec = Recorder::new(&engine, "staging", None);
    let report = Box::pin(engine::status(&rec.ctx)).await.unwrap();
    assert_eq!(report.stack.as_ref().unwrap().status, "CREATE_COMPLETE");
    assert_eq!(report.instances.len(), 4);
    assert!(report.image.is_some());
    assert!(report.to_string().contains("image: ami-"));
    let _ = rec.events();

    // deploy one role
    let rec = Recorder::new(&engine, "staging", Some(&log));
    let deployed = Box::pin(engine::deploy(&rec.ctx, &["api".to_string()], &Default::default()))
        .await
        .unwrap();
    assert_eq!(deployed.hosts.len(), 1);

    // update: one parameter changes, the others keep their values.
    let rec = Recorder::new(&engine, "staging", Some(&log));
    let overrides = BTreeMap::from([("AllowedSshCidr".to_string(), "203.0.113.0/24".to_string())]);
    Box::pin(engine::update(&rec.ctx, &overrides, &Default::default()))
        .await
        .expect("update succeeds");
    let stacks = aws
        .cfn()
        .await
        .describe_stacks()
        .stack_name("argos-staging")
        .send()
        .await
        .unwrap();
    let stack = &stacks.stacks()[0];
    assert_eq!(stack.stack_status().unwrap().as_str(), "UPDATE_COMPLETE");
    let after: BTreeMap<_, _> = stack
        .parameters()
        .iter()
        .map(|p| {
            (
                p.parameter_key().unwrap().to_string(),
                p.parameter_value().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(after["AllowedSshCidr"], "203.0.113.0/24");
    for (k, v) in &params {
        if k != "AllowedSshCidr" {
            assert_eq!(&after[k], v, "parameter {k} kept its value");
        }
    }

    // decommission: the stack and its instances are gone.
    let rec = Recorder::new(&engine, "staging", None);
    let s = Box::pin(engine::decommission(&rec.ctx)).await.unwrap();
    assert_eq!(s.headline, "decommissioned argos-staging");
    assert!(aws
        .cfn()
        .await
        .describe_stacks()
        .stack_name("argos-staging")
        .send()
        .await
        .is_err());
    let left = call(&aws, "DescribeInstances", running).await;
    assert!(
        instances(&left).is_empty(),
        "no instance of the environment left running"
    );

    // clean, twice: the image and its snapshots go; the second run finds nothing.
    let rec = Recorder::new(&engine, "staging", None);
    let s = Box::pin(engine::clean(&rec.ctx)).await.unwrap();
    assert!(s.headline.starts_with("cleaned"), "{s:?}");
    let images = call(&aws, "DescribeImages", Params::new().list("Owner", &["self"])).await;
    assert_eq!(images.items("imagesSet").count(), 0, "no image left");
    let snaps = call(&aws, "DescribeSnapshots", Params::new().list("Owner", &["self"])).await;
    assert!(
        snaps.items("snapshotSet").all(|s| !tag_map(s).contains_key("App")),
        "no tagged snapshot left"
    );
    let s = Box::pin(engine::clean(&rec.ctx)).await.unwrap();
    assert!(s.headline.starts_with("nothing to clean"), "{s:?}");

    // Nothing secret reached the log.
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(!log_text.is_empty());
    assert!(!log_text.contains(support::DB_PASSWORD) && !log_text.contains(support::APP_SECRET));
    drop(moto);
}

fn find_files(dir: &std::path::Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(find_files(&p, name));
        } else if p.file_name().is_some_and(|n| n == name) {
            out.push(p);
        }
    }
    out
}
