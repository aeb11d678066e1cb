//! The application image: found by name and tag among the account's *own* images (never a
//! public image someone else named the same), created from the build instance, and deleted
//! together with its snapshots.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ec2::types::{Filter, ImageState, ResourceType, Tag, TagSpecification};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::aws_call;
use crate::cloud::Aws;
use crate::error::{Error, Result};
use crate::names::tags;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    pub id: String,
    pub name: String,
    pub state: String,
    pub created: Option<chrono::DateTime<chrono::Utc>>,
    pub tags: BTreeMap<String, String>,
    pub snapshots: Vec<String>,
}

impl ImageInfo {
    pub fn age_days(&self, now: chrono::DateTime<chrono::Utc>) -> Option<i64> {
        self.created.map(|c| (now - c).num_days())
    }
}

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

/// The account's own images named `name` and tagged `App=<app>`, newest first.
pub async fn find_images(aws: &Aws, app: &str, name: &str) -> Result<Vec<ImageInfo>> {
    let out = aws_call!(
        aws,
        "DescribeImages",
        aws.ec2()
            .await
            .describe_images()
            .owners("self")
            .filters(filter("name", name))
            .filters(filter(&format!("tag:{}", tags::APP), app))
            .send()
    )?;
    let mut images: Vec<ImageInfo> = out
        .images()
        .iter()
        .map(|i| ImageInfo {
            id: i.image_id().unwrap_or_default().to_string(),
            name: i.name().unwrap_or_default().to_string(),
            state: i.state().map(|s| s.as_str().to_string()).unwrap_or_default(),
            created: i
                .creation_date()
                .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
                .map(|d| d.with_timezone(&chrono::Utc)),
            tags: i
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                .collect(),
            snapshots: i
                .block_device_mappings()
                .iter()
                .filter_map(|b| b.ebs().and_then(|e| e.snapshot_id()).map(str::to_string))
                .collect(),
        })
        .collect();
    images.sort_by_key(|i| std::cmp::Reverse(i.created));
    Ok(images)
}

/// Creates an image from the build instance, tagged at creation so a half-made image is
/// always findable (and so cleanable).
pub async fn create(aws: &Aws, instance_id: &str, name: &str, image_tags: &BTreeMap<String, String>) -> Result<String> {
    let tag_list: Vec<Tag> = image_tags
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    let spec = |kind| {
        TagSpecification::builder()
            .resource_type(kind)
            .set_tags(Some(tag_list.clone()))
            .build()
    };
    let out = aws_call!(
        aws,
        "CreateImage",
        aws.ec2()
            .await
            .create_image()
            .instance_id(instance_id)
            .name(name)
            .description(format!("{name}: environment-agnostic application image built by argos"))
            .tag_specifications(spec(ResourceType::Image))
            .send()
    )?;
    let id = out.image_id().unwrap_or_default().to_string();
    // Some endpoints ignore TagSpecifications on CreateImage; tag explicitly as well.
    aws_call!(
        aws,
        "CreateTags",
        aws.ec2()
            .await
            .create_tags()
            .resources(&id)
            .set_tags(Some(tag_list))
            .send()
    )?;
    Ok(id)
}

/// Tags the image's snapshots (known only once the image is available), so that the
/// snapshots are traceable to the app too.
pub async fn tag_snapshots(aws: &Aws, image: &ImageInfo, image_tags: &BTreeMap<String, String>) -> Result<()> {
    if image.snapshots.is_empty() {
        return Ok(());
    }
    let tag_list: Vec<Tag> = image_tags
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    aws_call!(
        aws,
        "CreateTags",
        aws.ec2()
            .await
            .create_tags()
            .set_resources(Some(image.snapshots.clone()))
            .set_tags(Some(tag_list))
            .send()
    )?;
    Ok(())
}

/// Waits until the image is `available`; a `failed` image is an error.
pub async fn wait_available(
    aws: &Aws,
    image_id: &str,
    timeout: Duration,
    poll: Duration,
    cancel: &CancellationToken,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let out = aws_call!(
            aws,
            "DescribeImages",
            aws.ec2().await.describe_images().image_ids(image_id).send()
        )?;
        match out.images().first().and_then(|i| i.state()) {
            Some(ImageState::Available) => return Ok(()),
            Some(ImageState::Failed) | Some(ImageState::Invalid) | Some(ImageState::Error) => {
                let reason = out
                    .images()
                    .first()
                    .and_then(|i| i.state_reason())
                    .and_then(|r| r.message())
                    .unwrap_or("no reason given");
                return Err(Error::StackFailed(format!("image {image_id} failed: {reason}")));
            }
            _ => {}
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout(format!(
                "image {image_id} not available after {} s",
                timeout.as_secs()
            )));
        }
        tokio::select! {
            _ = cancel.cancelled() => return Err(Error::Cancelled),
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// Deregisters an image and deletes its snapshots. Already-gone parts are fine.
pub async fn delete(aws: &Aws, image: &ImageInfo) -> Result<()> {
    match aws_call!(
        aws,
        "DeregisterImage",
        aws.ec2().await.deregister_image().image_id(&image.id).send()
    ) {
        Ok(_) => {}
        Err(e) if e.code.as_deref().is_some_and(|c| c.starts_with("InvalidAMIID")) => {}
        Err(e) => return Err(e.into()),
    }
    for snap in &image.snapshots {
        match aws_call!(
            aws,
            "DeleteSnapshot",
            aws.ec2().await.delete_snapshot().snapshot_id(snap).send()
        ) {
            Ok(_) => {}
            Err(e) if e.code.as_deref() == Some("InvalidSnapshot.NotFound") => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
