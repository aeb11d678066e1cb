//! EC2 instances found by their tags (the inventory's source of truth) and the default network.
//! (The SSH readiness probe is in `ansible::ssh`.)

use std::collections::BTreeMap;

use aws_sdk_ec2::types::Filter;

use crate::aws_call;
use crate::cloud::Aws;
use crate::error::{Error, Result};
use crate::names::tags;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceInfo {
    pub id: String,
    pub state: String,
    pub instance_type: String,
    pub public_ip: Option<String>,
    pub private_ip: Option<String>,
    pub public_dns: Option<String>,
    pub launched: Option<chrono::DateTime<chrono::Utc>>,
    pub tags: BTreeMap<String, String>,
}

impl InstanceInfo {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }
    pub fn group(&self) -> &str {
        self.tag(tags::GROUP).unwrap_or("?")
    }
}

fn filter(name: &str, values: &[&str]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.iter().map(|v| v.to_string()).collect()))
        .build()
}

/// Instances matching every `tag:Key=Value` given, in the given states (all states if empty).
/// Pages through DescribeInstances, so large accounts are read whole.
pub async fn find(aws: &Aws, tag_values: &[(&str, &str)], states: &[&str]) -> Result<Vec<InstanceInfo>> {
    let mut filters: Vec<Filter> = tag_values
        .iter()
        .map(|(k, v)| filter(&format!("tag:{k}"), &[v]))
        .collect();
    if !states.is_empty() {
        filters.push(filter("instance-state-name", states));
    }
    let mut found = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = aws_call!(
            aws,
            "DescribeInstances",
            aws.ec2()
                .await
                .describe_instances()
                .set_filters(Some(filters.clone()))
                .set_next_token(token.clone())
                .send()
        )?;
        for r in out.reservations() {
            for i in r.instances() {
                found.push(InstanceInfo {
                    id: i.instance_id().unwrap_or_default().to_string(),
                    state: i
                        .state()
                        .and_then(|s| s.name())
                        .map(|n| n.as_str().to_string())
                        .unwrap_or_default(),
                    instance_type: i.instance_type().map(|t| t.as_str().to_string()).unwrap_or_default(),
                    public_ip: i.public_ip_address().map(str::to_string),
                    private_ip: i.private_ip_address().map(str::to_string),
                    public_dns: i.public_dns_name().filter(|d| !d.is_empty()).map(str::to_string),
                    launched: i
                        .launch_time()
                        .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), 0)),
                    tags: i
                        .tags()
                        .iter()
                        .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                        .collect(),
                });
            }
        }
        match out.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    found.sort_by(|a, b| (a.group(), &a.id).cmp(&(b.group(), &b.id)));
    Ok(found)
}

/// The running instances of one environment.
pub async fn running_in_env(aws: &Aws, app: &str, env: &str) -> Result<Vec<InstanceInfo>> {
    find(aws, &[(tags::APP, app), (tags::ENV, env)], &["running"]).await
}

/// The VPC and subnet to use: the configured ones, or the account's default VPC and one of its
/// default subnets.
pub async fn network(aws: &Aws, vpc: Option<&str>, subnet: Option<&str>) -> Result<(String, String)> {
    let vpc_id = match vpc {
        Some(v) => v.to_string(),
        None => {
            let out = aws_call!(
                aws,
                "DescribeVpcs",
                aws.ec2()
                    .await
                    .describe_vpcs()
                    .filters(filter("isDefault", &["true"]))
                    .send()
            )?;
            out.vpcs().first().and_then(|v| v.vpc_id()).map(str::to_string).ok_or_else(|| {
                Error::Refused("this account and region has no default VPC: set network.vpc_id and network.subnet_id in the config".into())
            })?
        }
    };
    let subnet_id = match subnet {
        Some(s) => s.to_string(),
        None => {
            let out = aws_call!(
                aws,
                "DescribeSubnets",
                aws.ec2()
                    .await
                    .describe_subnets()
                    .filters(filter("vpc-id", &[&vpc_id]))
                    .send()
            )?;
            let mut subnets: Vec<_> = out.subnets().iter().collect();
            subnets.sort_by_key(|s| {
                (
                    !s.default_for_az().unwrap_or(false),
                    s.availability_zone().unwrap_or_default().to_string(),
                )
            });
            subnets
                .first()
                .and_then(|s| s.subnet_id())
                .map(str::to_string)
                .ok_or_else(|| {
                    Error::Refused(format!(
                        "VPC {vpc_id} has no subnet: set network.subnet_id in the config"
                    ))
                })?
        }
    };
    Ok((vpc_id, subnet_id))
}

/// Terminates instances (the image build instance when no stack holds it).
pub async fn terminate(aws: &Aws, ids: &[String]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    aws_call!(
        aws,
        "TerminateInstances",
        aws.ec2()
            .await
            .terminate_instances()
            .set_instance_ids(Some(ids.to_vec()))
            .send()
    )?;
    Ok(())
}
