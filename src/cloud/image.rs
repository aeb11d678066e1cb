//! The application image: found by name and tag among the account's *own* images (never a
//! public image someone else named the same), created from the build instance, and deleted
//! together with its snapshots.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cloud::ec2::{Element, Params};
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

impl ImageInfo {
    /// One `<item>` of DescribeImages' `imagesSet`.
    fn read(item: &Element) -> ImageInfo {
        let text = |path: &[&str]| item.text(path).unwrap_or_default().to_string();
        ImageInfo {
            id: text(&["imageId"]),
            name: text(&["name"]),
            state: text(&["imageState"]),
            created: item
                .text(&["creationDate"])
                .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
                .map(|d| d.with_timezone(&chrono::Utc)),
            tags: item.tags().collect(),
            snapshots: item
                .items("blockDeviceMapping")
                .filter_map(|b| b.text(&["ebs", "snapshotId"]).map(str::to_string))
                .collect(),
        }
    }
}

/// The account's own images named `name` and tagged `App=<app>`, newest first.
pub async fn find_images(aws: &Aws, app: &str, name: &str) -> Result<Vec<ImageInfo>> {
    let params = Params::new().list("Owner", &["self"]).filters(&[
        ("name".to_string(), vec![name]),
        (format!("tag:{}", tags::APP), vec![app]),
    ]);
    let out = aws.ec2_call("DescribeImages", &params).await?;
    let mut images: Vec<ImageInfo> = out.items("imagesSet").map(ImageInfo::read).collect();
    images.sort_by_key(|i| std::cmp::Reverse(i.created));
    Ok(images)
}

/// Creates an image from the build instance, tagged at creation so a half-made image is
/// always findable (and so cleanable).
pub async fn create(aws: &Aws, instance_id: &str, name: &str, image_tags: &BTreeMap<String, String>) -> Result<String> {
    let description = format!("{name}: environment-agnostic application image built by argos");
    let params = Params::new()
        .set("InstanceId", instance_id)
        .set("Name", name)
        .set("Description", description)
        .set("TagSpecification.1.ResourceType", "image")
        .tags("TagSpecification.1.Tag", image_tags);
    let out = aws.ec2_call("CreateImage", &params).await?;
    let id = out.text(&["imageId"]).unwrap_or_default().to_string();
    // Some endpoints ignore TagSpecifications on CreateImage; tag explicitly as well.
    let params = Params::new().list("ResourceId", &[&id]).tags("Tag", image_tags);
    aws.ec2_call("CreateTags", &params).await?;
    Ok(id)
}

/// Tags the image's snapshots (known only once the image is available), so that the
/// snapshots are traceable to the app too.
pub async fn tag_snapshots(aws: &Aws, image: &ImageInfo, image_tags: &BTreeMap<String, String>) -> Result<()> {
    if image.snapshots.is_empty() {
        return Ok(());
    }
    let params = Params::new()
        .list("ResourceId", &image.snapshots)
        .tags("Tag", image_tags);
    aws.ec2_call("CreateTags", &params).await?;
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
        let params = Params::new().list("ImageId", &[image_id]);
        let out = aws.ec2_call("DescribeImages", &params).await?;
        let image = out.items("imagesSet").next();
        match image.and_then(|i| i.text(&["imageState"])) {
            Some("available") => return Ok(()),
            Some("failed" | "invalid" | "error") => {
                let reason = image
                    .and_then(|i| i.text(&["stateReason", "message"]))
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
    match aws
        .ec2_call("DeregisterImage", &Params::new().set("ImageId", &image.id))
        .await
    {
        Ok(_) => {}
        Err(e) if e.code.as_deref().is_some_and(|c| c.starts_with("InvalidAMIID")) => {}
        Err(e) => return Err(e.into()),
    }
    for snap in &image.snapshots {
        match aws
            .ec2_call("DeleteSnapshot", &Params::new().set("SnapshotId", snap))
            .await
        {
            Ok(_) => {}
            Err(e) if e.code.as_deref() == Some("InvalidSnapshot.NotFound") => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_images_from_ec2s_answer() {
        let answer = r#"<DescribeImagesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
   <requestId>59dbff89-35bd-4eac-99ed-be587EXAMPLE</requestId>
   <imagesSet>
      <item>
         <imageId>ami-1a2b3c4d</imageId>
         <imageLocation>123456789012/argos-image</imageLocation>
         <imageState>failed</imageState>
         <imageOwnerId>123456789012</imageOwnerId>
         <creationDate>2024-03-01T10:20:30.000Z</creationDate>
         <isPublic>false</isPublic>
         <name>argos-image</name>
         <stateReason><code>Server.InternalError</code><message>snapshot failed</message></stateReason>
         <blockDeviceMapping>
            <item><deviceName>/dev/xvda</deviceName><ebs><snapshotId>snap-1</snapshotId><volumeSize>8</volumeSize></ebs></item>
            <item><deviceName>/dev/sdb</deviceName><virtualName>ephemeral0</virtualName></item>
         </blockDeviceMapping>
         <tagSet><item><key>App</key><value>argos</value></item></tagSet>
      </item>
   </imagesSet>
</DescribeImagesResponse>"#;
        let root = crate::cloud::ec2::xml::parse(answer).expect("parses");
        let image = ImageInfo::read(root.items("imagesSet").next().expect("one image"));
        assert_eq!(image.id, "ami-1a2b3c4d");
        assert_eq!(image.name, "argos-image");
        assert_eq!(image.state, "failed");
        assert_eq!(image.created.map(|c| c.timestamp()), Some(1_709_288_430));
        assert_eq!(image.tags.get("App").map(String::as_str), Some("argos"));
        assert_eq!(image.snapshots, ["snap-1"]);
    }
}
