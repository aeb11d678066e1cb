//! The front's HTTPS on moto (issue 23): an environment with an ACM certificate is
//! commissioned through the real engine, and moto's CloudFormation creates the load balancer
//! (HTTPS on 443 with the certificate and a TLS 1.2+ policy, port 80 redirected with a 301),
//! the front's port 80 is open to the load balancer's group alone, the environment being
//! `production: true` its database is Multi-AZ with the stack's monitoring role, and `status`
//! shows the HTTPS address. (A throwaway environment's plain HTTP is what the other moto tests
//! commission.)
use crate::support;

use std::collections::BTreeMap;

use argos::cloud::ec2::Params;
use argos::engine;
use support::ec2::{call, filters};
use support::moto::Moto;
use support::{Recorder, TestProject};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A request to moto in one of AWS's wire protocols; moto reads the service from the
/// credential scope and checks no signature unless told to.
async fn moto_call(moto: &Moto, service: &str, headers: &[(&str, &str)], body: &str) -> String {
    let port = moto.url.rsplit(':').next().unwrap();
    let mut s = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    let mut req = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\nAuthorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// The text of every `<tag>` element in `xml`, in order.
fn elements(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let end = after.find(&close).unwrap();
        out.push(after[..end].to_string());
        rest = &after[end..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_with_a_certificate_is_served_over_https_by_a_load_balancer() {
    let moto = Moto::start().await;
    let body = r#"{"DomainName": "argos.example.com"}"#;
    let cert = moto_call(
        &moto,
        "acm",
        &[
            ("X-Amz-Target", "CertificateManager.RequestCertificate"),
            ("Content-Type", "application/x-amz-json-1.1"),
        ],
        body,
    )
    .await;
    let cert: serde_json::Value = serde_json::from_str(&cert).unwrap();
    let cert = cert["CertificateArn"].as_str().unwrap().to_string();

    let project = TestProject::new(&moto.url, "");
    // Two default subnets in different Availability Zones for the load balancer.
    let subnets = {
        let engine = project.engine().await;
        let out = call(&engine.aws, "DescribeSubnets", filters(&[("default-for-az", "true")])).await;
        let mut by_az: BTreeMap<String, String> = BTreeMap::new();
        for s in out.items("subnetSet") {
            by_az
                .entry(s.text(&["availabilityZone"]).unwrap().to_string())
                .or_insert(s.text(&["subnetId"]).unwrap().to_string());
        }
        by_az.into_values().take(2).collect::<Vec<_>>().join(",")
    };
    let yaml = std::fs::read_to_string(&project.config_path).unwrap();
    let https = format!(
        "staging:\n    production: true\n    certificate_arn: {cert}\n    parameters: {{LoadBalancerSubnetIds: \"{subnets}\"}}"
    );
    assert!(yaml.contains("staging: {plain_http: true}"));
    std::fs::write(
        &project.config_path,
        yaml.replace("staging: {plain_http: true}", &https),
    )
    .unwrap();
    let engine = project.engine().await;
    let aws = engine.aws.clone();

    let rec = Recorder::new(&engine, "staging", None);
    engine::commission(&rec.ctx, &Default::default())
        .await
        .expect("commission succeeds");

    let resources = aws
        .cfn()
        .await
        .describe_stack_resources()
        .stack_name("argos-staging")
        .send()
        .await
        .unwrap();
    let physical: BTreeMap<String, String> = resources
        .stack_resources()
        .iter()
        .filter_map(|r| {
            Some((
                r.logical_resource_id()?.to_string(),
                r.physical_resource_id().unwrap_or_default().to_string(),
            ))
        })
        .collect();
    for id in [
        "LoadBalancer",
        "HttpsListener",
        "HttpRedirectListener",
        "FrontTargetGroup",
        "LoadBalancerSecurityGroup",
        "FrontLoadBalancerIngress",
    ] {
        assert!(physical.contains_key(id), "{id} not created: {physical:?}");
    }
    assert!(!physical.contains_key("FrontPublicHttpIngress"), "{physical:?}");

    // What moto's ELBv2 holds: 443 HTTPS with the certificate, 80 a redirect to it.
    let listeners = moto_call(
        &moto,
        "elasticloadbalancing",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &format!(
            "Action=DescribeListeners&Version=2015-12-01&LoadBalancerArn={}",
            physical["LoadBalancer"].replace(':', "%3A").replace('/', "%2F")
        ),
    )
    .await;
    let mut ports = elements(&listeners, "Port");
    ports.sort();
    assert_eq!(
        ports,
        ["443", "443", "80"],
        "the listeners' ports and the redirect's: {listeners}"
    );
    assert_eq!(elements(&listeners, "CertificateArn"), [cert.as_str()]);
    assert_eq!(
        elements(&listeners, "SslPolicy"),
        ["ELBSecurityPolicy-TLS13-1-2-2021-06"]
    );
    assert_eq!(elements(&listeners, "StatusCode"), ["HTTP_301"]);
    let mut protocols = elements(&listeners, "Protocol");
    protocols.sort();
    assert_eq!(protocols, ["HTTP", "HTTPS", "HTTPS"], "{listeners}");

    // The front's port 80 admits the load balancer's group and nothing else.
    let front = Params::new().list("GroupId", &[&physical["FrontSecurityGroup"]]);
    let groups = call(&aws, "DescribeSecurityGroups", front).await;
    let group = groups.items("securityGroupInfo").next().expect("the front's group");
    let http: Vec<_> = group
        .items("ipPermissions")
        .filter(|p| p.text(&["fromPort"]) == Some("80"))
        .collect();
    assert_eq!(http.len(), 1, "{http:?}");
    assert_eq!(http[0].items("ipRanges").count(), 0, "{http:?}");
    let sources: Vec<_> = http[0].items("groups").filter_map(|g| g.text(&["groupId"])).collect();
    assert_eq!(sources, [physical["LoadBalancerSecurityGroup"].as_str()]);

    // Production: the template's defaults, Multi-AZ, monitoring every 60 s and IAM auth.
    let stacks = aws
        .cfn()
        .await
        .describe_stacks()
        .stack_name("argos-staging")
        .send()
        .await
        .unwrap();
    let params: BTreeMap<_, _> = stacks.stacks()[0]
        .parameters()
        .iter()
        .map(|p| {
            (
                p.parameter_key().unwrap().to_string(),
                p.parameter_value().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(params["CertificateArn"], cert);
    assert_eq!(params["DatabaseMultiAz"], "true");
    assert_eq!(params["DatabaseMonitoringInterval"], "60");
    assert_eq!(params["DatabaseIamAuthentication"], "true");
    let role = &physical["DatabaseMonitoringRole"];
    let db = moto_call(
        &moto,
        "rds",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &format!(
            "Action=DescribeDBInstances&Version=2014-10-31&DBInstanceIdentifier={}",
            physical["Database"]
        ),
    )
    .await;
    assert_eq!(elements(&db, "MultiAZ"), ["true"], "{db}");
    // moto's CloudFormation creates the instance without MonitoringInterval,
    // MonitoringRoleArn and EnableIAMDatabaseAuthentication (tests/it/stack_scan.rs holds the
    // template to them); the monitoring role itself is created, under the stack's IAM path.
    let role = moto_call(
        &moto,
        "iam",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &format!("Action=GetRole&Version=2010-05-08&RoleName={role}"),
    )
    .await;
    assert_eq!(elements(&role, "Path"), ["/argos-stack/"], "{role}");
    assert!(
        role.contains("monitoring.rds.amazonaws.com"),
        "RDS monitoring may assume it: {role}"
    );

    let rec = Recorder::new(&engine, "staging", None);
    let report = engine::status(&rec.ctx).await.unwrap();
    let front = report.front.clone().unwrap_or_default();
    assert!(
        front.starts_with("HTTPS: https://") && front.ends_with(".elb.amazonaws.com"),
        "{front}"
    );
    assert!(report.to_string().contains(&format!("front: {front}\n")), "{report}");
}
