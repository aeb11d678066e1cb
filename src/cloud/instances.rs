//! EC2 instances found by their tags (the inventory's source of truth) and the default network.
//! (The SSH readiness probe is in `ansible::ssh`.)

use std::collections::BTreeMap;

use crate::cloud::ec2::{Element, Params};
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

impl InstanceInfo {
    /// One `<item>` of a reservation's `instancesSet`.
    fn read(item: &Element) -> InstanceInfo {
        let text = |path: &[&str]| item.text(path).map(str::to_string);
        InstanceInfo {
            id: text(&["instanceId"]).unwrap_or_default(),
            state: text(&["instanceState", "name"]).unwrap_or_default(),
            instance_type: text(&["instanceType"]).unwrap_or_default(),
            public_ip: text(&["ipAddress"]),
            private_ip: text(&["privateIpAddress"]),
            public_dns: text(&["dnsName"]),
            launched: item
                .text(&["launchTime"])
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&chrono::Utc)),
            tags: item.tags().collect(),
        }
    }
}

/// Instances matching every `tag:Key=Value` given, in the given states (all states if empty).
/// Pages through DescribeInstances, so large accounts are read whole.
pub async fn find(aws: &Aws, tag_values: &[(&str, &str)], states: &[&str]) -> Result<Vec<InstanceInfo>> {
    let mut filters: Vec<(String, Vec<&str>)> =
        tag_values.iter().map(|(k, v)| (format!("tag:{k}"), vec![*v])).collect();
    if !states.is_empty() {
        filters.push(("instance-state-name".to_string(), states.to_vec()));
    }
    let mut found = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut params = Params::new().filters(&filters);
        if let Some(t) = &token {
            params = params.set("NextToken", t);
        }
        let out = aws.ec2_call("DescribeInstances", &params).await?;
        for reservation in out.items("reservationSet") {
            found.extend(reservation.items("instancesSet").map(InstanceInfo::read));
        }
        match out.text(&["nextToken"]) {
            Some(t) => token = Some(t.to_string()),
            None => break,
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
            let params = Params::new().filters(&[("is-default".to_string(), vec!["true"])]);
            let out = aws.ec2_call("DescribeVpcs", &params).await?;
            let first = out.items("vpcSet").next();
            first.and_then(|v| v.text(&["vpcId"])).map(str::to_string).ok_or_else(|| {
                Error::Refused("this account and region has no default VPC: set network.vpc_id and network.subnet_id in the config".into())
            })?
        }
    };
    let subnet_id = match subnet {
        Some(s) => s.to_string(),
        None => {
            let params = Params::new().filters(&[("vpc-id".to_string(), vec![vpc_id.as_str()])]);
            let out = aws.ec2_call("DescribeSubnets", &params).await?;
            let mut subnets: Vec<&Element> = out.items("subnetSet").collect();
            subnets.sort_by_key(|s| {
                (
                    s.text(&["defaultForAz"]) != Some("true"),
                    s.text(&["availabilityZone"]).unwrap_or_default().to_string(),
                )
            });
            subnets
                .first()
                .and_then(|s| s.text(&["subnetId"]))
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
    aws.ec2_call("TerminateInstances", &Params::new().list("InstanceId", ids))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of EC2's DescribeInstances answer, as its API reference shows it (trimmed).
    const ANSWER: &str = r#"<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>8f7724cf-496f-496e-8fe3-example</requestId>
  <reservationSet>
    <item>
      <reservationId>r-1234567890abcdef0</reservationId>
      <instancesSet>
        <item>
          <instanceId>i-1234567890abcdef0</instanceId>
          <imageId>ami-bff32ccc</imageId>
          <instanceState><code>16</code><name>running</name></instanceState>
          <privateDnsName>ip-192-168-1-88.eu-west-1.compute.internal</privateDnsName>
          <dnsName>ec2-54-194-252-215.eu-west-1.compute.amazonaws.com</dnsName>
          <instanceType>t2.micro</instanceType>
          <launchTime>2018-05-08T16:46:19.000Z</launchTime>
          <privateIpAddress>192.168.1.88</privateIpAddress>
          <ipAddress>54.194.252.215</ipAddress>
          <tagSet>
            <item><key>Group</key><value>api</value></item>
            <item><key>Env</key><value>staging</value></item>
          </tagSet>
        </item>
        <item>
          <instanceId>i-0598c7d356eba48d7</instanceId>
          <instanceState><code>80</code><name>stopped</name></instanceState>
          <dnsName/>
          <instanceType>t3.small</instanceType>
          <launchTime>2018-05-08T16:46:19.000Z</launchTime>
          <privateIpAddress>192.168.1.89</privateIpAddress>
        </item>
      </instancesSet>
    </item>
  </reservationSet>
  <nextToken>abc</nextToken>
</DescribeInstancesResponse>"#;

    #[test]
    fn reads_instances_from_ec2s_answer() {
        let root = crate::cloud::ec2::xml::parse(ANSWER).expect("parses");
        let found: Vec<InstanceInfo> = root
            .items("reservationSet")
            .flat_map(|r| r.items("instancesSet"))
            .map(InstanceInfo::read)
            .collect();
        assert_eq!(found.len(), 2);
        let api = &found[0];
        assert_eq!(api.id, "i-1234567890abcdef0");
        assert_eq!(api.state, "running");
        assert_eq!(api.instance_type, "t2.micro");
        assert_eq!(api.public_ip.as_deref(), Some("54.194.252.215"));
        assert_eq!(api.private_ip.as_deref(), Some("192.168.1.88"));
        assert_eq!(
            api.public_dns.as_deref(),
            Some("ec2-54-194-252-215.eu-west-1.compute.amazonaws.com")
        );
        assert_eq!(api.launched.map(|t| t.timestamp()), Some(1_525_797_979));
        assert_eq!(api.group(), "api");
        assert_eq!(api.tag("Env"), Some("staging"));
        let stopped = &found[1];
        assert_eq!(
            (stopped.state.as_str(), stopped.public_ip.as_deref()),
            ("stopped", None)
        );
        assert_eq!(stopped.public_dns, None, "an empty dnsName is no name");
        assert_eq!(stopped.group(), "?");
        assert_eq!(root.text(&["nextToken"]), Some("abc"));
    }
}
