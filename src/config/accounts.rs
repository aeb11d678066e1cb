//! The AWS accounts of the config: the roles listed under `aws.roles` and the profile or role
//! each environment names, checked when the config is loaded so that a typo, an ARN written
//! where a role's name belongs, or a missing external id never reaches STS.

use super::{Config, ConfigError, EnvAwsSettings, RoleSettings};

/// STS allows 2 to 1224 characters from this set in an external id.
fn valid_external_id(id: &str) -> bool {
    (2..=1224).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c))
}

/// `arn:<partition>:iam::<12 digits>:role/<path and name>`.
pub fn valid_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    matches!(parts.as_slice(), ["arn", partition, "iam", "", account, rest]
        if partition.starts_with("aws")
            && account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && rest.strip_prefix("role/").is_some_and(|n| !n.is_empty()))
}

impl RoleSettings {
    /// The external id, read from the config or its environment variable.
    pub fn external_id(&self) -> Option<String> {
        match (&self.external_id, &self.external_id_env) {
            (Some(id), _) => Some(id.clone()),
            (None, Some(var)) => std::env::var(var).ok().filter(|v| !v.is_empty()),
            (None, None) => None,
        }
    }

    /// The account id in the role's ARN.
    pub fn account_id(&self) -> &str {
        self.role_arn.split(':').nth(4).unwrap_or_default()
    }
}

impl Config {
    /// The account of an environment after `defaults` (the environment's own choice wins).
    pub(super) fn merged_aws(&self, own: &EnvAwsSettings) -> EnvAwsSettings {
        if own.profile.is_some() || own.role.is_some() {
            own.clone()
        } else {
            self.settings.defaults.aws.clone()
        }
    }

    /// The external ids, for the redactor: they are not credentials, but a log is no place
    /// for them either.
    pub(super) fn external_ids(&self) -> Vec<String> {
        self.settings
            .aws
            .roles
            .values()
            .filter_map(RoleSettings::external_id)
            .collect()
    }

    pub(super) fn validate_accounts(&self) -> Result<(), ConfigError> {
        let f = &self.file;
        let aws = &self.settings.aws;
        if let Some(arn) = &aws.cloudformation_role_arn {
            if !valid_role_arn(arn) {
                return Err(ConfigError::new(
                    f,
                    Some("aws.cloudformation_role_arn"),
                    "expected an IAM role ARN, arn:aws:iam::<account id>:role/<name>",
                ));
            }
        }
        for (name, role) in &aws.roles {
            let key = format!("aws.roles.{name}");
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(ConfigError::new(
                    f,
                    Some(&key),
                    "a role's name may use letters, digits, - and _",
                ));
            }
            if !valid_role_arn(&role.role_arn) {
                return Err(ConfigError::new(
                    f,
                    Some(&format!("{key}.role_arn")),
                    "expected an IAM role ARN, arn:aws:iam::<account id>:role/<name>",
                ));
            }
            if let Some(arn) = &role.cloudformation_role_arn {
                if !valid_role_arn(arn) || !arn.contains(&format!("::{}:", role.account_id())) {
                    return Err(ConfigError::new(
                        f,
                        Some(&format!("{key}.cloudformation_role_arn")),
                        "expected an IAM role ARN in the role's own account",
                    ));
                }
            }
            if !(900..=43_200).contains(&role.session_secs) {
                return Err(ConfigError::new(
                    f,
                    Some(&format!("{key}.session_secs")),
                    "STS sessions last 900 to 43200 seconds",
                ));
            }
            match (&role.external_id, &role.external_id_env) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError::new(
                        f,
                        Some(&key),
                        "set external_id or external_id_env, not both",
                    ))
                }
                (None, Some(var)) if role.external_id().is_none() => {
                    return Err(ConfigError::new(
                        f,
                        Some(&format!("{key}.external_id_env")),
                        format!("the environment variable {var} is not set (put it in .env or the environment)"),
                    ))
                }
                _ => {}
            }
            // Never echo the value: say what is wrong with it.
            if role.external_id().is_some_and(|id| !valid_external_id(&id)) {
                return Err(ConfigError::new(
                    f,
                    Some(&key),
                    "the external id must be 2 to 1224 characters of letters, digits and _+=,.@:/-",
                ));
            }
        }
        let envs = std::iter::once(("defaults".to_string(), &self.settings.defaults.aws)).chain(
            self.settings
                .environments
                .iter()
                .map(|(k, v)| (format!("environments.{k}"), &v.aws)),
        );
        for (env, a) in envs {
            if a.profile.is_some() && a.role.is_some() {
                return Err(ConfigError::new(
                    f,
                    Some(&format!("{env}.aws")),
                    "name a profile or a role, not both",
                ));
            }
            if a.profile.as_deref().is_some_and(|p| p.trim().is_empty()) {
                return Err(ConfigError::new(
                    f,
                    Some(&format!("{env}.aws.profile")),
                    "may not be empty",
                ));
            }
            if let Some(role) = &a.role {
                if !aws.roles.contains_key(role) {
                    let listed: Vec<&str> = aws.roles.keys().map(String::as_str).collect();
                    return Err(ConfigError::new(
                        f,
                        Some(&format!("{env}.aws.role")),
                        format!(
                            "role '{}' is not listed under aws.roles (listed: {}); only listed roles can be used",
                            crate::names::shorten(role, 80),
                            if listed.is_empty() {
                                "none".to_string()
                            } else {
                                listed.join(", ")
                            }
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns_and_external_ids_are_checked_by_shape() {
        assert!(valid_role_arn("arn:aws:iam::111111111111:role/argos-deployer"));
        assert!(valid_role_arn("arn:aws-us-gov:iam::111111111111:role/path/argos"));
        assert!(!valid_role_arn("arn:aws:iam::1111:role/argos"));
        assert!(!valid_role_arn("arn:aws:iam::111111111111:user/argos"));
        assert!(!valid_role_arn("prod-deployer"));
        assert!(valid_external_id("argos-prod-7f3a"));
        assert!(!valid_external_id("x"));
        assert!(!valid_external_id("has space"));
    }
}
