//! The checks a config passes when it loads, each naming the key it is about: limits, roles
//! and rules, schedules and freezes, holds, accounts, chat platforms, people, the app's name.
//! Loading is the parent module's job; this one only says what is wrong.

use super::{
    freezes, health_checks, is_loopback_url, limits, parse_cron, people, repository, Config, ConfigError,
    INSTANCE_GROUPS,
};
use crate::names::{validate_app_name, EnvName};

impl Config {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let f = &self.file;
        // First: the checks below compute with these numbers.
        limits::check(&self.settings).map_err(|(key, message)| ConfigError::new(f, Some(&key), message))?;
        health_checks::check(&self.settings).map_err(|(key, message)| ConfigError::new(f, Some(&key), message))?;
        repository::check(&self.settings).map_err(|(key, message)| ConfigError::new(f, Some(&key), message))?;
        for name in self.settings.environments.keys() {
            EnvName::parse(name)
                .map_err(|e| ConfigError::new(f, Some(&format!("environments.{name}")), e.to_string()))?;
        }
        if self.settings.environments.is_empty() {
            return Err(ConfigError::new(
                f,
                Some("environments"),
                "at least one environment must be configured",
            ));
        }
        let vars_path = self.group_vars_path();
        validate_app_name(&self.vars.app_name).map_err(|e| ConfigError::new(&vars_path, Some("app_name"), e))?;
        let aws = &self.settings.aws;
        if aws.local_credentials && !aws.endpoint_url.as_deref().is_some_and(is_loopback_url) {
            return Err(ConfigError::new(
                f,
                Some("aws.local_credentials"),
                "dummy credentials are only allowed with a loopback aws.endpoint_url (a local stand-in)",
            ));
        }
        if aws.requests_per_second == 0 || aws.burst == 0 || aws.max_attempts == 0 {
            return Err(ConfigError::new(
                f,
                Some("aws"),
                "requests_per_second, burst and max_attempts must be at least 1",
            ));
        }
        self.validate_accounts()?;
        let st = &self.settings.store;
        if st.heartbeat_ms == 0 || st.lease_ms < 2 * st.heartbeat_ms {
            return Err(ConfigError::new(
                f,
                Some("store"),
                "heartbeat_ms must be at least 1 and lease_ms at least twice heartbeat_ms",
            ));
        }
        if let Some(url) = &st.url {
            if !(url.starts_with("postgresql://") || url.starts_with("postgres://")) {
                return Err(ConfigError::new(
                    f,
                    Some("store.url"),
                    "must be a PostgreSQL URL (postgresql://user@host:port/database)",
                ));
            }
        }
        let w = &self.settings.watch;
        if w.poll_interval_ms == 0 || w.max_poll_interval_ms < w.poll_interval_ms {
            return Err(ConfigError::new(
                f,
                Some("watch"),
                "poll_interval_ms must be > 0 and <= max_poll_interval_ms",
            ));
        }
        for (env, s) in std::iter::once(("defaults".to_string(), &self.settings.defaults)).chain(
            self.settings
                .environments
                .iter()
                .map(|(k, v)| (format!("environments.{k}"), v)),
        ) {
            for group in s.instance_types.keys() {
                if !INSTANCE_GROUPS.contains(&group.as_str()) {
                    return Err(ConfigError::new(
                        f,
                        Some(&format!("{env}.instance_types.{group}")),
                        format!("unknown group; expected one of {}", INSTANCE_GROUPS.join(", ")),
                    ));
                }
            }
        }
        self.validate_front_access()?;
        let p = &self.settings.permissions;
        for (i, rule) in p.rules.iter().enumerate() {
            if !p.roles.contains_key(&rule.role) {
                return Err(ConfigError::new(
                    f,
                    Some(&format!("permissions.rules[{i}].role")),
                    format!("role '{}' is not defined under permissions.roles", rule.role),
                ));
            }
            for a in &rule.actions {
                if a != "*" && !crate::command::actions().contains(&a.as_str()) {
                    return Err(ConfigError::new(
                        f,
                        Some(&format!("permissions.rules[{i}].actions")),
                        format!(
                            "unknown action '{a}'; actions: {}",
                            crate::command::actions().join(", ")
                        ),
                    ));
                }
            }
        }
        for (i, sch) in self.settings.schedules.iter().enumerate() {
            let key = format!("schedules[{i}]");
            parse_cron(&sch.cron).map_err(|e| ConfigError::new(f, Some(&format!("{key}.cron")), e))?;
            sch.timezone.parse::<chrono_tz::Tz>().map_err(|_| {
                ConfigError::new(
                    f,
                    Some(&format!("{key}.timezone")),
                    format!("unknown time zone '{}'", sch.timezone),
                )
            })?;
            for (j, env) in sch.environments.iter().enumerate() {
                if !self.settings.environments.contains_key(env) {
                    return Err(ConfigError::new(
                        f,
                        Some(&format!("{key}.environments[{j}]")),
                        format!("unknown environment '{env}'"),
                    ));
                }
            }
            if self.settings.schedules.iter().filter(|o| o.name == sch.name).count() > 1 {
                return Err(ConfigError::new(
                    f,
                    Some(&format!("{key}.name")),
                    format!("schedule name '{}' is used twice", sch.name),
                ));
            }
        }
        self.settings
            .holds
            .times()
            .map_err(|(key, why)| ConfigError::new(f, Some(&key), why))?;
        freezes::check(&self.settings, crate::clock::now())
            .map_err(|(key, message)| ConfigError::new(f, Some(&key), message))?;
        for (i, p) in self.settings.approvals.policies.iter().enumerate() {
            for r in &p.roles {
                if !self.settings.permissions.roles.contains_key(r) {
                    return Err(ConfigError::new(
                        f,
                        Some(&format!("approvals.policies[{i}].roles")),
                        format!("role '{r}' is not defined under permissions.roles"),
                    ));
                }
            }
        }
        let c = &self.settings.chat;
        if c.commands_per_minute == 0 || c.command_burst == 0 || c.edits_per_second == 0 || c.edit_burst == 0 {
            return Err(ConfigError::new(
                f,
                Some("chat"),
                "commands_per_minute, command_burst and edits_per_second must be at least 1",
            ));
        }
        if c.prefix.trim().is_empty() {
            return Err(ConfigError::new(f, Some("chat.prefix"), "the prefix may not be empty"));
        }
        if let Some(listen) = &self.settings.health.listen {
            if listen.parse::<std::net::SocketAddr>().is_err() {
                return Err(ConfigError::new(
                    f,
                    Some("health.listen"),
                    format!("'{listen}' is not an address and port, e.g. 127.0.0.1:9464"),
                ));
            }
        }
        if let Err((key, message)) = self.settings.web.check() {
            return Err(ConfigError::new(f, Some(key), message));
        }
        let sl = &self.settings.slack;
        if sl.connections == 0 || sl.connections > 10 || sl.updates_per_minute == 0 {
            return Err(ConfigError::new(
                f,
                Some("slack"),
                "connections must be 1 to 10 (Slack's limit) and updates_per_minute at least 1",
            ));
        }
        if let Some(url) = &sl.api_url {
            if !(url.starts_with("https://") || is_loopback_url(url)) {
                return Err(ConfigError::new(
                    f,
                    Some("slack.api_url"),
                    "must be an https:// URL (plain http only to a loopback stand-in)",
                ));
            }
        }
        for (i, sch) in self.settings.schedules.iter().enumerate() {
            let platform = crate::address::ChatPlatform::parse(&sch.platform)
                .map_err(|e| ConfigError::new(f, Some(&format!("schedules[{i}].platform")), e))?;
            crate::address::ChannelAddress::new(platform, &sch.channel)
                .map_err(|e| ConfigError::new(f, Some(&format!("schedules[{i}].channel")), e))?;
        }
        let announced = std::iter::once(("defaults".to_string(), &self.settings.defaults)).chain(
            self.settings
                .environments
                .iter()
                .map(|(k, v)| (format!("environments.{k}"), v)),
        );
        for (env, s) in announced {
            if let Some(target) = &s.announce {
                crate::address::ChannelAddress::parse(target)
                    .map_err(|e| ConfigError::new(f, Some(&format!("{env}.announce")), e))?;
            }
        }
        people::check(f, &self.settings)?;
        if self.settings.ansible.roles.is_empty() {
            return Err(ConfigError::new(
                f,
                Some("ansible.roles"),
                "list at least one role to deploy",
            ));
        }
        Ok(())
    }
}

impl Config {
    /// The front's access, where it is set: an ACM certificate ARN of the right shape, or
    /// `plain_http: true`, never both. An environment that sets neither loads (most configs
    /// never build a stack), but building its stack refuses it (`EnvSettings::front_access`).
    fn validate_front_access(&self) -> Result<(), ConfigError> {
        let f = &self.file;
        let envs = std::iter::once(("defaults".to_string(), self.settings.defaults.clone())).chain(
            self.settings
                .environments
                .keys()
                .filter_map(|k| Some((format!("environments.{k}"), self.environment(k).ok()?.1))),
        );
        for (key, s) in envs {
            if let Some(arn) = &s.certificate_arn {
                if !super::is_certificate_arn(arn) {
                    return Err(ConfigError::new(
                        f,
                        Some(&format!("{key}.certificate_arn")),
                        format!(
                            "'{arn}' is not an ACM certificate ARN (arn:aws:acm:<region>:<account>:certificate/<id>)"
                        ),
                    ));
                }
            }
            if s.certificate_arn.is_some() && s.plain_http == Some(true) {
                return Err(ConfigError::new(
                    f,
                    Some(&format!("{key}.plain_http")),
                    "set either certificate_arn (HTTPS) or plain_http: true, not both",
                ));
            }
        }
        Ok(())
    }
}
