//! Status: the stack's state and outputs, the instances per group with state and addresses,
//! the image and its age, and the latest stack events.

use std::fmt;

use crate::cloud::image::{self, ImageInfo};
use crate::cloud::instances::{self, InstanceInfo};
use crate::cloud::stack::{self, StackInfo};
use crate::engine::Ctx;
use crate::error::Result;
use crate::names::{image_name, tags};
use crate::progress::StackEvent;

/// Everything `status` reports, for any front end to render.
#[derive(Debug, Clone)]
pub struct StatusReport {
    pub stack_name: String,
    pub stack: Option<StackInfo>,
    pub instances: Vec<InstanceInfo>,
    pub image: Option<ImageInfo>,
    pub events: Vec<StackEvent>,
    /// How users reach the app: the HTTPS address, or plain HTTP on purpose.
    pub front: Option<String>,
}

/// The `front:` line of a status: plain HTTP on purpose (the environment's choice), or the
/// stack's HTTPS address (its `FrontUrl` output) once there is one.
fn front_line(settings: &crate::config::EnvSettings, stack: Option<&StackInfo>) -> Option<String> {
    let url = stack.and_then(|s| s.outputs.get("FrontUrl"));
    match settings.front_access("") {
        Ok(crate::config::FrontAccess::PlainHttp) => Some(match url {
            Some(u) => format!("plain HTTP (on purpose): {u}"),
            None => "plain HTTP (on purpose)".to_string(),
        }),
        Ok(crate::config::FrontAccess::Https { .. }) => Some(match url {
            Some(u) if u.starts_with("https://") => format!("HTTPS: {u}"),
            Some(u) => format!("HTTPS configured, but the stack serves {u}: run update"),
            None => "HTTPS (no address yet)".to_string(),
        }),
        Err(_) => None,
    }
}

pub async fn status(ctx: &Ctx) -> Result<StatusReport> {
    let names = &ctx.target.names;
    let stack_name = names.stack();
    let stack = stack::describe(ctx.aws(), &stack_name).await?;
    let instances = instances::find(
        ctx.aws(),
        &[(tags::APP, &names.app), (tags::ENV, names.env.as_str())],
        &["pending", "running", "stopping", "stopped", "shutting-down"],
    )
    .await?;
    let image = image::find_images(ctx.aws(), &names.app, &image_name(&names.app))
        .await?
        .into_iter()
        .next();
    let events = match &stack {
        Some(s) => stack::recent_events(ctx.aws(), &s.id, ctx.config().settings.watch.recent_events).await?,
        None => vec![],
    };
    let front = front_line(&ctx.target.settings, stack.as_ref());
    Ok(StatusReport {
        stack_name,
        front,
        stack,
        instances,
        image,
        events,
    })
}

impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.stack {
            None => writeln!(f, "stack {}: does not exist", self.stack_name)?,
            Some(s) => {
                let reason = s
                    .status_reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default();
                writeln!(f, "stack {}: {}{reason}", s.name, s.status)?;
                if let Some(c) = s.created {
                    writeln!(f, "  created {}", c.format("%Y-%m-%d %H:%M UTC"))?;
                }
                if let Some(u) = s.updated {
                    writeln!(f, "  updated {}", u.format("%Y-%m-%d %H:%M UTC"))?;
                }
                for (k, v) in &s.outputs {
                    writeln!(f, "  output {k} = {v}")?;
                }
            }
        }
        if let Some(front) = &self.front {
            writeln!(f, "front: {front}")?;
        }
        if self.instances.is_empty() {
            writeln!(f, "instances: none")?;
        } else {
            writeln!(f, "instances:")?;
            for i in &self.instances {
                let addr = [i.public_ip.as_deref(), i.private_ip.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" / ");
                writeln!(
                    f,
                    "  {:<10} {} {:<9} {:<10} {addr}",
                    i.group(),
                    i.id,
                    i.state,
                    i.instance_type
                )?;
            }
        }
        match &self.image {
            None => writeln!(f, "image: none")?,
            Some(img) => {
                let age = img
                    .age_days(chrono::Utc::now())
                    .map(|d| format!(", {d} day(s) old"))
                    .unwrap_or_default();
                writeln!(f, "image: {} {} ({}{age})", img.id, img.name, img.state)?;
            }
        }
        if !self.events.is_empty() {
            writeln!(f, "recent events:")?;
            for e in &self.events {
                if let Some(line) = crate::progress::plain_line(&crate::progress::Progress::StackEvent(e.clone())) {
                    writeln!(f, "{line}")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EnvSettings;

    fn stack(url: &str) -> StackInfo {
        StackInfo {
            outputs: [("FrontUrl".to_string(), url.to_string())].into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_front_line_says_plain_http_on_purpose_or_the_https_address() {
        let plain = EnvSettings {
            plain_http: Some(true),
            ..Default::default()
        };
        assert_eq!(front_line(&plain, None).as_deref(), Some("plain HTTP (on purpose)"));
        assert_eq!(
            front_line(&plain, Some(&stack("http://ec2-1.compute.amazonaws.com"))).as_deref(),
            Some("plain HTTP (on purpose): http://ec2-1.compute.amazonaws.com")
        );
        let https = EnvSettings {
            certificate_arn: Some("arn:aws:acm:us-east-1:123456789012:certificate/abc".into()),
            ..Default::default()
        };
        assert_eq!(
            front_line(&https, Some(&stack("https://argos-lb.elb.amazonaws.com"))).as_deref(),
            Some("HTTPS: https://argos-lb.elb.amazonaws.com")
        );
        assert_eq!(
            front_line(&https, Some(&stack("http://ec2-1.compute.amazonaws.com"))).as_deref(),
            Some("HTTPS configured, but the stack serves http://ec2-1.compute.amazonaws.com: run update")
        );
        assert_eq!(front_line(&EnvSettings::default(), None), None);
    }
}
