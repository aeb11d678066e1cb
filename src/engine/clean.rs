//! Clean: remove the image build stack (and any stray build instance) and the image with its
//! snapshots. Everything already gone is fine, so running it twice is harmless.

use crate::cloud::{image, instances};
use crate::engine::bake::delete_build_stack;
use crate::engine::{Ctx, Summary};
use crate::error::Result;
use crate::names::{image_name, image_stack, tags};

pub async fn clean(ctx: &Ctx) -> Result<Summary> {
    let app = ctx.config().vars.app_name.clone();
    let mut removed = Vec::new();
    let build_stack = image_stack(&app);
    ctx.progress.step(
        "clean",
        format!("build stack {build_stack}, build instances, image {}", image_name(&app)),
    );
    if delete_build_stack(ctx, &build_stack).await? {
        removed.push(format!("build stack {build_stack}"));
    }
    let strays: Vec<String> = instances::find(
        ctx.aws(),
        &[(tags::APP, &app), (tags::GROUP, tags::IMAGE_GROUP)],
        &["pending", "running", "stopping", "stopped"],
    )
    .await?
    .into_iter()
    .map(|i| i.id)
    .collect();
    if !strays.is_empty() {
        ctx.progress
            .info(format!("terminating stray build instance(s) {}", strays.join(", ")));
        instances::terminate(ctx.aws(), &strays).await?;
        removed.push(format!("build instance(s) {}", strays.join(", ")));
    }
    for img in image::find_images(ctx.aws(), &app, &image_name(&app)).await? {
        ctx.progress.info(format!(
            "deleting image {} and {} snapshot(s)",
            img.id,
            img.snapshots.len()
        ));
        image::delete(ctx.aws(), &img).await?;
        removed.push(format!("image {} with {} snapshot(s)", img.id, img.snapshots.len()));
    }
    let mut s = if removed.is_empty() {
        Summary::new("nothing to clean: no image, build stack or build instance")
    } else {
        Summary::new(format!("cleaned {} item(s)", removed.len()))
    };
    s.details = removed;
    Ok(s)
}
