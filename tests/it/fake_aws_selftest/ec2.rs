//! EC2 on the fake: describe, filters and the clean-up calls, through argos's own EC2 client
//! (the element names are EC2's, as its API reference and the SDK's deserializers spell them).
use super::*;

use std::collections::BTreeMap;

use argos::cloud::ec2::{Failure, Params};
use support::ec2::{filters, instances, tag_map, try_call};

/// The code of a failed call.
fn code(result: Result<argos::cloud::ec2::Element, Failure>) -> Option<String> {
    match result.expect_err("the call should fail") {
        Failure::Service { code, .. } => code,
        other => panic!("not an answer from EC2: {other:?}"),
    }
}

#[tokio::test]
async fn ec2_describe_filter_and_clean() {
    let fake = FakeAws::start().await;
    fake.set_time_scale(1000.0);
    fake.add_image(Ec2Image::owned(
        "ami-0aaa",
        "argos-web-2024-01-01",
        &[("argos:stack", "web"), ("argos:keep", "no")],
    ));
    fake.add_image(Ec2Image::owned(
        "ami-0bbb",
        "argos-web-2024-02-01",
        &[("argos:stack", "web")],
    ));
    fake.add_image(Ec2Image::owned("ami-0ccc", "other-image", &[]));
    fake.add_image(Ec2Image::amazon(
        "ami-0ddd",
        "al2023-ami-2023.4.20240401.1-kernel-6.1-x86_64",
    ));
    fake.add_instance(Ec2Instance::running(
        "i-0aaa",
        &[("argos:stack", "web"), ("Name", "web-1")],
    ));
    fake.add_instance(Ec2Instance::running("i-0bbb", &[("argos:stack", "web")]).with_state("stopped"));
    fake.add_instance(Ec2Instance::running("i-0ccc", &[("argos:stack", "db")]));
    fake.set_default_vpc(
        "vpc-0def",
        "172.31.0.0/16",
        &[("subnet-0a", "us-east-1a"), ("subnet-0b", "us-east-1b")],
    );
    let aws = ec2_client(&fake).await;
    let call = |action: &'static str, params: Params| try_call(&aws, action, params);
    let ok = |r: Result<argos::cloud::ec2::Element, Failure>| r.expect("the call succeeds");

    let mine = |f: &[(&str, &str)]| filters(f).list("Owner", &["self"]);
    let imgs = ok(call("DescribeImages", mine(&[("name", "argos-web-*")])).await);
    let mut ids: Vec<_> = imgs
        .items("imagesSet")
        .map(|i| i.text(&["imageId"]).unwrap_or(""))
        .collect();
    ids.sort();
    assert_eq!(ids, vec!["ami-0aaa", "ami-0bbb"]);
    let img = imgs
        .items("imagesSet")
        .find(|i| i.text(&["imageId"]) == Some("ami-0aaa"))
        .expect("img");
    assert_eq!(img.text(&["name"]), Some("argos-web-2024-01-01"));
    assert_eq!(img.text(&["imageOwnerId"]), Some("123456789012"));
    assert_eq!(img.text(&["imageState"]), Some("available"));
    assert_eq!(img.text(&["isPublic"]), Some("false"));
    assert!(img.text(&["creationDate"]).is_some());
    assert_eq!(tag_map(img).len(), 2);
    assert_eq!(
        img.items("tagSet").next().and_then(|t| t.text(&["key"])),
        Some("argos:stack")
    );
    let snap = img
        .items("blockDeviceMapping")
        .next()
        .and_then(|b| b.text(&["ebs", "snapshotId"]))
        .expect("snapshot")
        .to_string();
    let imgs = ok(call("DescribeImages", mine(&[("tag:argos:keep", "no")])).await);
    assert_eq!(imgs.items("imagesSet").count(), 1);
    let amazon = filters(&[("name", "al2023-ami-2023.*-x86_64")]).list("Owner", &["amazon"]);
    let imgs = ok(call("DescribeImages", amazon).await);
    assert_eq!(
        imgs.items("imagesSet")
            .next()
            .and_then(|i| i.text(&["imageOwnerAlias"])),
        Some("amazon")
    );
    let e = call("DescribeImages", filters(&[("bogus", "x")])).await;
    assert_eq!(code(e).as_deref(), Some("InvalidParameterValue"));

    let live = Params::new().filters(&[
        ("tag:argos:stack".to_string(), vec!["web"]),
        ("instance-state-name".to_string(), vec!["running", "pending"]),
    ]);
    let inst = ok(call("DescribeInstances", live).await);
    let all = instances(&inst);
    assert_eq!(all.len(), 1);
    let i = all[0];
    assert_eq!(i.text(&["instanceId"]), Some("i-0aaa"));
    assert_eq!(i.text(&["instanceState", "name"]), Some("running"));
    assert_eq!(i.text(&["instanceState", "code"]), Some("16"));
    assert!(i.text(&["ipAddress"]).is_some() && i.text(&["privateIpAddress"]).is_some());
    assert_eq!(i.text(&["instanceType"]), Some("t3.micro"));
    assert_eq!(i.text(&["placement", "availabilityZone"]), Some("us-east-1a"));
    assert!(i.text(&["launchTime"]).is_some());
    assert_eq!(tag_map(i).get("Name").map(String::as_str), Some("web-1"));
    let paged = ok(call("DescribeInstances", Params::new().set("MaxResults", "5")).await);
    assert_eq!(paged.items("reservationSet").count(), 3);
    assert_eq!(paged.text(&["nextToken"]), None);

    let vpcs = ok(call("DescribeVpcs", filters(&[("is-default", "true")])).await);
    let vpc = vpcs.items("vpcSet").next().expect("the default VPC");
    assert_eq!(vpc.text(&["vpcId"]), Some("vpc-0def"));
    assert_eq!(vpc.text(&["isDefault"]), Some("true"));
    assert_eq!(vpc.text(&["cidrBlock"]), Some("172.31.0.0/16"));
    let subnets = ok(call("DescribeSubnets", filters(&[("vpc-id", "vpc-0def")])).await);
    let subnets: Vec<_> = subnets.items("subnetSet").collect();
    assert_eq!(subnets.len(), 2);
    assert_eq!(subnets[1].text(&["availabilityZone"]), Some("us-east-1b"));
    assert_eq!(subnets[1].text(&["defaultForAz"]), Some("true"));

    let doomed = BTreeMap::from([("argos:state".to_string(), "doomed".to_string())]);
    let tag = Params::new().list("ResourceId", &["i-0ccc"]).tags("Tag", &doomed);
    ok(call("CreateTags", tag).await);
    let t = ok(call("TerminateInstances", Params::new().list("InstanceId", &["i-0ccc"])).await);
    let change = t.items("instancesSet").next().expect("a state change");
    assert_eq!(change.text(&["instanceId"]), Some("i-0ccc"));
    assert_eq!(change.text(&["currentState", "name"]), Some("shutting-down"));
    assert_eq!(change.text(&["previousState", "name"]), Some("running"));
    tokio::time::sleep(Duration::from_millis(10)).await;
    let inst = ok(call("DescribeInstances", filters(&[("tag:argos:state", "doomed")])).await);
    assert_eq!(instances(&inst)[0].text(&["instanceState", "name"]), Some("terminated"));
    let e = call("TerminateInstances", Params::new().list("InstanceId", &["i-0nope"])).await;
    assert_eq!(code(e).as_deref(), Some("InvalidInstanceID.NotFound"));

    let delete = || Params::new().set("SnapshotId", &snap);
    let e = call("DeleteSnapshot", delete()).await;
    assert_eq!(code(e).as_deref(), Some("InvalidSnapshot.InUse"));
    ok(call("DeregisterImage", Params::new().set("ImageId", "ami-0aaa")).await);
    ok(call("DeleteSnapshot", delete()).await);
    let e = call("DeregisterImage", Params::new().set("ImageId", "ami-0aaa")).await;
    assert_eq!(code(e).as_deref(), Some("InvalidAMIID.NotFound"));
    assert!(!fake.image_ids().contains(&"ami-0aaa".to_string()));
    assert!(!fake.snapshot_ids().contains(&snap));
    let params = fake
        .calls()
        .into_iter()
        .find(|c| c.action == "DescribeInstances")
        .expect("call")
        .params;
    assert_eq!(params.get("Filter.1.Name").map(String::as_str), Some("tag:argos:stack"));
    assert_eq!(params.get("Filter.2.Value.2").map(String::as_str), Some("pending"));
}
