//! The checks of `argos check` that concern one operation, run before its first AWS call:
//! a config `argos check` fails (no SSH CIDR, parameters the template's rules refuse, a
//! password RDS would refuse) stops `commission`, `update` and `plan` with the same message,
//! instead of reaching CloudFormation and failing there with AWS's wording.

use crate::check::{environment_findings, failures, image_findings, password_findings};
use crate::engine::Ctx;
use crate::error::{Error, Result};
use crate::template::Template;

/// What an operation will create or change.
pub(crate) enum Creates<'a> {
    /// The environment's stack, and the image build stack if the image must be baked.
    StackAndImage { image: &'a Template, merged: &'a Template },
    /// A change set on the environment's stack.
    ChangeSet { merged: &'a Template },
}

/// Refuses the operation when a check `argos check` runs fails for what it creates.
pub(crate) fn check(ctx: &Ctx, creates: Creates<'_>) -> Result<()> {
    let config = ctx.config();
    let env = ctx.target.env.as_str();
    let findings = match creates {
        Creates::StackAndImage { image, merged } => {
            let mut f = image_findings(config, image);
            f.extend(password_findings(config));
            f.extend(environment_findings(config, env, merged));
            f
        }
        Creates::ChangeSet { merged } => environment_findings(config, env, merged),
    };
    match failures(&findings) {
        None => Ok(()),
        Some(why) => Err(Error::Invalid(format!("{why} (as `argos check` reports)"))),
    }
}
