//! Baking the environment-agnostic application image: a build instance from `image.json`,
//! an SSH readiness probe that waits for sshd's banner (not a fixed sleep), the image
//! playbook, CreateImage, and removal of the build instance. On failure every step done so far
//! is undone in reverse order, so no half-made image or stray instance is left behind.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::ansible::ssh;
use crate::cloud::image::{self, ImageInfo};
use crate::cloud::instances;
use crate::cloud::stack::{self, CreateRequest, ParamValue};
use crate::command::Version;
use crate::config::{AddressKind, Connection};
use crate::engine::deploy::{playbook_run, run_with_log};
use crate::engine::Ctx;
use crate::error::{Error, Result};
use crate::names::{image_name, image_stack, tags};
use crate::template::Template;

/// What went into an image: the template, the base AMI, the instance type and the playbooks.
/// Stored as a tag so a stale image can be recognised.
pub fn image_inputs_hash(ctx: &Ctx, template: &Template) -> String {
    let cfg = ctx.config();
    let mut h = Sha256::new();
    h.update(template.body.as_bytes());
    h.update(cfg.vars.base_ami.as_bytes());
    h.update(cfg.vars.image_instance_type.as_bytes());
    let dir = cfg.playbooks_dir();
    let mut files = vec![dir.join("image.yml")];
    collect_files(&dir.join("roles"), &mut files);
    files.sort();
    for f in files {
        if let Ok(bytes) = std::fs::read(&f) {
            h.update(f.strip_prefix(&dir).unwrap_or(&f).to_string_lossy().as_bytes());
            h.update(&bytes);
        }
    }
    hex::encode(&h.finalize()[..8])
}

fn collect_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Finds the app's image among the account's own images, or bakes it.
pub async fn get_or_bake_image(ctx: &Ctx, image_template: &Template, version: &Version) -> Result<ImageInfo> {
    let app = &ctx.config().vars.app_name;
    let name = image_name(app);
    ctx.progress.step("image", format!("looking for image {name}"));
    let hash = image_inputs_hash(ctx, image_template);
    for found in image::find_images(ctx.aws(), app, &name).await? {
        match found.state.as_str() {
            "available" => {
                let age = found
                    .age_days(chrono::Utc::now())
                    .map(|d| format!(", {d} day(s) old"))
                    .unwrap_or_default();
                let baked_from = found
                    .tags
                    .get(tags::COMMIT)
                    .map(|c| format!(", baked from {}", crate::command::short_sha(c)))
                    .unwrap_or_default();
                ctx.progress
                    .info(format!("using image {} ({}{age}{baked_from})", found.id, found.name));
                if found.tags.get(tags::INPUTS_HASH).is_some_and(|h| *h != hash) {
                    ctx.progress.info(format!(
                        "note: image {} was built from other inputs than today's formations/image.json and playbooks; run `clean` then `commission` to rebuild it",
                        found.id
                    ));
                }
                return Ok(found);
            }
            "pending" => {
                ctx.progress
                    .info(format!("image {} is still being created; waiting for it", found.id));
                let t = &ctx.config().settings.timeouts;
                image::wait_available(
                    ctx.aws(),
                    &found.id,
                    Duration::from_secs(t.image_available_secs),
                    poll(ctx),
                    &ctx.cancel,
                )
                .await?;
                return Ok(found);
            }
            other => {
                ctx.progress
                    .info(format!("removing unusable image {} (state {other})", found.id));
                image::delete(ctx.aws(), &found).await?;
            }
        }
    }
    // On the heap: the bake's steps hold two stack watches and a playbook run.
    Box::pin(bake(ctx, image_template, &name, &hash, version)).await
}

fn poll(ctx: &Ctx) -> Duration {
    Duration::from_millis(ctx.config().settings.watch.poll_interval_ms)
}

/// Undo actions, run newest first when the bake fails.
enum Undo {
    DeleteStack(String),
    DeleteImage(ImageInfo),
}

async fn bake(ctx: &Ctx, template: &Template, name: &str, hash: &str, version: &Version) -> Result<ImageInfo> {
    let mut undo: Vec<Undo> = Vec::new();
    match Box::pin(bake_steps(ctx, template, name, hash, version, &mut undo)).await {
        Ok(image) => Ok(image),
        Err(e) => {
            ctx.progress.step("undo", "baking failed; removing what it made");
            for step in undo.into_iter().rev() {
                let result = match &step {
                    Undo::DeleteImage(img) => image::delete(ctx.aws(), img)
                        .await
                        .map(|_| format!("deleted image {}", img.id)),
                    Undo::DeleteStack(stack) => delete_build_stack(ctx, stack)
                        .await
                        .map(|_| format!("deleted build stack {stack}")),
                };
                match result {
                    Ok(msg) => ctx.progress.info(msg),
                    Err(u) => ctx.progress.info(format!("could not undo: {u} (run `clean` to retry)")),
                }
            }
            Err(e)
        }
    }
}

async fn bake_steps(
    ctx: &Ctx,
    template: &Template,
    name: &str,
    hash: &str,
    version: &Version,
    undo: &mut Vec<Undo>,
) -> Result<ImageInfo> {
    let cfg = ctx.config();
    let app = &cfg.vars.app_name;
    let stack_name = image_stack(app);
    ctx.progress
        .step("bake image", format!("building {name} from {}", cfg.vars.base_ami));
    if let Some(leftover) = stack::describe(ctx.aws(), &stack_name).await? {
        ctx.progress.info(format!(
            "removing leftover build stack {stack_name} ({})",
            leftover.status
        ));
        delete_build_stack(ctx, &stack_name).await?;
    }
    let net = &cfg.settings.network;
    let (vpc, subnet) = instances::network(ctx.aws(), net.vpc_id.as_deref(), net.subnet_id.as_deref()).await?;
    let mut values = BTreeMap::from([
        ("AppName".to_string(), app.clone()),
        ("BaseImageId".to_string(), cfg.vars.base_ami.clone()),
        ("KeyName".to_string(), cfg.vars.key_name.clone()),
        ("InstanceType".to_string(), cfg.vars.image_instance_type.clone()),
        ("VpcId".to_string(), vpc),
        ("SubnetId".to_string(), subnet),
    ]);
    if let Some(cidr) = &net.allowed_ssh_cidr {
        values.insert("AllowedSshCidr".into(), cidr.clone());
    }
    let params: BTreeMap<String, ParamValue> = template
        .parameters()
        .into_iter()
        .filter_map(|p| {
            values
                .get(&p.name)
                .cloned()
                .or(p.default)
                .map(|v| (p.name, ParamValue::Set(v)))
        })
        .collect();
    let stack_tags = BTreeMap::from([
        (tags::APP.to_string(), app.clone()),
        (tags::ENV.to_string(), tags::IMAGE_GROUP.to_string()),
    ]);
    ctx.progress
        .step("build instance", format!("creating stack {stack_name}"));
    undo.push(Undo::DeleteStack(stack_name.clone()));
    let req = CreateRequest {
        name: &stack_name,
        body: &template.body,
        parameters: params,
        tags: stack_tags,
        resources: template.resources().len(),
    };
    let pace = ctx.engine.pace(cfg.settings.timeouts.stack_create_secs);
    let (_, outcome) = stack::create_following(
        ctx.aws(),
        req,
        &ctx.follow("bake", &stack_name),
        pace,
        &ctx.progress,
        &ctx.cancel,
    )
    .await?;
    if !outcome.succeeded {
        return Err(Error::StackFailed(format!(
            "image build stack failed: {}",
            outcome.failure_line(&stack_name)
        )));
    }
    let info = stack::describe(ctx.aws(), &stack_name)
        .await?
        .ok_or_else(|| Error::StackFailed(format!("build stack {stack_name} vanished after creation")))?;
    let instance_id = info
        .outputs
        .get("InstanceId")
        .cloned()
        .ok_or_else(|| Error::StackFailed("formations/image.json must output InstanceId".into()))?;
    let found = instances::find(ctx.aws(), &[(tags::APP, app), (tags::GROUP, tags::IMAGE_GROUP)], &[]).await?;
    let instance = found.into_iter().find(|i| i.id == instance_id);

    let ansible = &cfg.settings.ansible;
    if ansible.connection == Connection::Ssh {
        // The address the inventory will use (ansible.address), so the probe waits for the
        // very address Ansible connects to.
        let host = instance
            .as_ref()
            .and_then(|i| match ansible.address {
                AddressKind::Public => i.public_ip.clone().or(i.public_dns.clone()).or(i.private_ip.clone()),
                AddressKind::Private => i.private_ip.clone(),
            })
            .or_else(|| info.outputs.get("PublicIp").cloned())
            .ok_or_else(|| Error::StackFailed(format!("build instance {instance_id} has no address to reach")))?;
        ctx.progress
            .step("wait for ssh", format!("{host}:{}", ansible.ssh_port));
        let waited = ssh::wait_for_ssh(
            &host,
            ansible.ssh_port,
            Duration::from_secs(cfg.settings.timeouts.ssh_ready_secs),
            &ctx.cancel,
        )
        .await?;
        ctx.progress.info(format!("ssh answered after {} s", waited.as_secs()));
    } else {
        ctx.progress.info("local connection: no SSH to wait for");
    }

    ctx.progress
        .step("provision", "running image.yml on the build instance");
    let instance =
        instance.ok_or_else(|| Error::StackFailed(format!("build instance {instance_id} not found by its tags")))?;
    let mut extra = BTreeMap::from([
        ("database_host".to_string(), String::new()),
        ("database_port".to_string(), String::new()),
        ("knowledge_host".to_string(), String::new()),
    ]);
    // The image is baked from the commit being deployed, and says so in its tags.
    crate::engine::versions::playbook_vars(&ctx.engine, version, &mut extra);
    let mut run = playbook_run(ctx, "image", std::slice::from_ref(&instance), extra)?;
    if run.ssh.known_hosts.is_some() {
        // Build instances are no environment's hosts: their keys go to a file of their own.
        run.ssh.known_hosts = Some(ssh::known_hosts_file(&cfg.state_dir(), tags::IMAGE_GROUP));
    }
    run_with_log(ctx, run).await?;

    ctx.progress.step("create image", format!("{name} from {instance_id}"));
    let image_tags = BTreeMap::from([
        (tags::NAME.to_string(), name.to_string()),
        (tags::APP.to_string(), app.clone()),
        (tags::GROUP.to_string(), tags::IMAGE_GROUP.to_string()),
        (tags::ROLE.to_string(), "app".to_string()),
        (tags::INPUTS_HASH.to_string(), hash.to_string()),
    ]);
    let mut image_tags = image_tags;
    if let Some(commit) = &version.commit {
        image_tags.insert(tags::COMMIT.to_string(), commit.clone());
    }
    let image_id = image::create(ctx.aws(), &instance_id, name, &image_tags).await?;
    let placeholder = ImageInfo {
        id: image_id.clone(),
        name: name.to_string(),
        state: "pending".into(),
        created: None,
        tags: image_tags.clone(),
        snapshots: vec![],
    };
    undo.push(Undo::DeleteImage(placeholder));
    let t = &cfg.settings.timeouts;
    image::wait_available(
        ctx.aws(),
        &image_id,
        Duration::from_secs(t.image_available_secs),
        poll(ctx),
        &ctx.cancel,
    )
    .await?;
    // Re-read the image: its snapshots are known only now, and undo must delete them too.
    let image = image::find_images(ctx.aws(), app, name)
        .await?
        .into_iter()
        .find(|i| i.id == image_id)
        .ok_or_else(|| Error::StackFailed(format!("image {image_id} not found after creation")))?;
    if let Some(Undo::DeleteImage(slot)) = undo.last_mut() {
        *slot = image.clone();
    }
    image::tag_snapshots(ctx.aws(), &image, &image_tags).await?;
    ctx.progress.info(format!("image {image_id} is available"));

    ctx.progress
        .step("remove build instance", format!("deleting stack {stack_name}"));
    delete_build_stack(ctx, &stack_name).await?;
    undo.clear();
    Ok(image)
}

/// Deletes the image build stack and waits for it; DELETE_FAILED is an error.
pub(crate) async fn delete_build_stack(ctx: &Ctx, stack_name: &str) -> Result<bool> {
    let Some(info) = stack::describe(ctx.aws(), stack_name).await? else {
        return Ok(false);
    };
    let pace = ctx.engine.pace(ctx.config().settings.timeouts.stack_delete_secs);
    let outcome = stack::delete_following(
        ctx.aws(),
        &info,
        &ctx.follow("unbake", stack_name),
        pace,
        &ctx.progress,
        &ctx.cancel,
    )
    .await?;
    if !outcome.succeeded {
        return Err(Error::StackFailed(format!(
            "could not delete build stack: {}",
            outcome.failure_line(stack_name)
        )));
    }
    Ok(true)
}
