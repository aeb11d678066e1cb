//! How an environment's front is reached (HTTPS with a certificate, or plain HTTP on purpose)
//! and whether it is production: the choices `environments.<env>` makes for its stack.

use std::collections::BTreeMap;

use super::EnvSettings;

/// How an environment's front is reached: the choice its config must make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontAccess {
    /// HTTPS through the load balancer, with this ACM certificate.
    Https { certificate_arn: String },
    /// Plain HTTP from the front's nginx, on purpose.
    PlainHttp,
}

impl EnvSettings {
    /// The front's access as configured, or the error naming the keys to set (`key` is where
    /// the environment lives in the config, `environments.<env>`).
    pub fn front_access(&self, key: &str) -> Result<FrontAccess, (String, String)> {
        match (&self.certificate_arn, self.plain_http.unwrap_or(false)) {
            (Some(arn), false) => Ok(FrontAccess::Https {
                certificate_arn: arn.clone(),
            }),
            (None, true) => Ok(FrontAccess::PlainHttp),
            (Some(_), true) => Err((
                format!("{key}.plain_http"),
                "set either certificate_arn (HTTPS) or plain_http: true, not both".into(),
            )),
            (None, false) => Err((
                format!("{key}.certificate_arn"),
                "the front needs HTTPS: set certificate_arn to an ACM certificate ARN, or plain_http: true to serve plain HTTP on purpose".into(),
            )),
        }
    }

    /// Whether the environment is production (its database gets Multi-AZ and monitoring).
    pub fn is_production(&self) -> bool {
        self.production.unwrap_or(false)
    }

    /// The stack parameters that follow from these choices, for a template declaring
    /// `declared`: `CertificateArn` from `certificate_arn` (empty with `plain_http: true`;
    /// neither is refused, naming the key), and, unless the environment is `production: true`,
    /// the database's Multi-AZ and enhanced monitoring off (the template's defaults are the
    /// production ones). A parameter the environment sets itself under `parameters` wins.
    pub fn stack_choices(&self, env: &str, declared: &[String]) -> Result<BTreeMap<String, String>, String> {
        let offers = |name: &str| declared.iter().any(|d| d == name) && !self.parameters.contains_key(name);
        let mut v = BTreeMap::new();
        if offers("CertificateArn") {
            let access = self
                .front_access(&format!("environments.{env}"))
                .map_err(|(key, why)| format!("{key}: {why}"))?;
            let arn = match access {
                FrontAccess::Https { certificate_arn } => certificate_arn,
                FrontAccess::PlainHttp => String::new(),
            };
            v.insert("CertificateArn".to_string(), arn);
        }
        if !self.is_production() {
            for (name, off) in [("DatabaseMultiAz", "false"), ("DatabaseMonitoringInterval", "0")] {
                if offers(name) {
                    v.insert(name.to_string(), off.to_string());
                }
            }
        }
        Ok(v)
    }
}

/// Whether `arn` has the shape of an ACM certificate ARN.
pub fn is_certificate_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "acm"
        && !parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5]
            .strip_prefix("certificate/")
            .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}
