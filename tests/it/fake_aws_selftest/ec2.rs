//! EC2 on the fake: describe, filters and the clean-up calls.
use super::*;

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
    let (_, ec2) = clients(&fake).await;

    let tag = |k: &str, v: &str| Filter::builder().name(format!("tag:{k}")).values(v).build();
    let imgs = ec2
        .describe_images()
        .owners("self")
        .filters(Filter::builder().name("name").values("argos-web-*").build())
        .send()
        .await
        .expect("images");
    let mut ids: Vec<_> = imgs.images().iter().map(|i| i.image_id().unwrap_or("")).collect();
    ids.sort();
    assert_eq!(ids, vec!["ami-0aaa", "ami-0bbb"]);
    let img = imgs
        .images()
        .iter()
        .find(|i| i.image_id() == Some("ami-0aaa"))
        .expect("img");
    assert_eq!(img.name(), Some("argos-web-2024-01-01"));
    assert_eq!(img.owner_id(), Some("123456789012"));
    assert_eq!(img.state().map(|s| s.as_str()), Some("available"));
    assert_eq!(img.public(), Some(false));
    assert!(img.creation_date().is_some());
    assert_eq!(img.tags().len(), 2);
    assert_eq!(img.tags()[0].key(), Some("argos:stack"));
    let snap = img.block_device_mappings()[0]
        .ebs()
        .and_then(|e| e.snapshot_id())
        .expect("snapshot")
        .to_string();
    let imgs = ec2
        .describe_images()
        .owners("self")
        .filters(tag("argos:keep", "no"))
        .send()
        .await
        .expect("images");
    assert_eq!(imgs.images().len(), 1);
    let imgs = ec2
        .describe_images()
        .owners("amazon")
        .filters(
            Filter::builder()
                .name("name")
                .values("al2023-ami-2023.*-x86_64")
                .build(),
        )
        .send()
        .await
        .expect("images");
    assert_eq!(imgs.images()[0].image_owner_alias(), Some("amazon"));
    let e = ec2
        .describe_images()
        .filters(Filter::builder().name("bogus").values("x").build())
        .send()
        .await
        .expect_err("bad filter");
    assert_eq!(e.code(), Some("InvalidParameterValue"));

    let inst = ec2
        .describe_instances()
        .filters(tag("argos:stack", "web"))
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .values("running")
                .values("pending")
                .build(),
        )
        .send()
        .await
        .expect("instances");
    let all: Vec<_> = inst.reservations().iter().flat_map(|r| r.instances()).collect();
    assert_eq!(all.len(), 1);
    let i = all[0];
    assert_eq!(i.instance_id(), Some("i-0aaa"));
    assert_eq!(i.state().and_then(|s| s.name()).map(|n| n.as_str()), Some("running"));
    assert_eq!(i.state().and_then(|s| s.code()), Some(16));
    assert!(i.public_ip_address().is_some() && i.private_ip_address().is_some());
    assert_eq!(i.instance_type().map(|t| t.as_str()), Some("t3.micro"));
    assert_eq!(i.placement().and_then(|p| p.availability_zone()), Some("us-east-1a"));
    assert!(i.launch_time().is_some());
    assert!(i
        .tags()
        .iter()
        .any(|t| t.key() == Some("Name") && t.value() == Some("web-1")));
    let paged = ec2.describe_instances().max_results(5).send().await.expect("page");
    assert_eq!(paged.reservations().len(), 3);
    assert_eq!(paged.next_token(), None);

    let vpcs = ec2
        .describe_vpcs()
        .filters(Filter::builder().name("is-default").values("true").build())
        .send()
        .await
        .expect("vpcs");
    assert_eq!(vpcs.vpcs()[0].vpc_id(), Some("vpc-0def"));
    assert_eq!(vpcs.vpcs()[0].is_default(), Some(true));
    assert_eq!(vpcs.vpcs()[0].cidr_block(), Some("172.31.0.0/16"));
    let subnets = ec2
        .describe_subnets()
        .filters(Filter::builder().name("vpc-id").values("vpc-0def").build())
        .send()
        .await
        .expect("subnets");
    assert_eq!(subnets.subnets().len(), 2);
    assert_eq!(subnets.subnets()[1].availability_zone(), Some("us-east-1b"));
    assert_eq!(subnets.subnets()[1].default_for_az(), Some(true));

    ec2.create_tags()
        .resources("i-0ccc")
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("argos:state")
                .value("doomed")
                .build(),
        )
        .send()
        .await
        .expect("tags");
    let t = ec2
        .terminate_instances()
        .instance_ids("i-0ccc")
        .send()
        .await
        .expect("terminate");
    let change = &t.terminating_instances()[0];
    assert_eq!(change.instance_id(), Some("i-0ccc"));
    assert_eq!(
        change.current_state().and_then(|s| s.name()).map(|n| n.as_str()),
        Some("shutting-down")
    );
    assert_eq!(
        change.previous_state().and_then(|s| s.name()).map(|n| n.as_str()),
        Some("running")
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    let inst = ec2
        .describe_instances()
        .filters(tag("argos:state", "doomed"))
        .send()
        .await
        .expect("instances");
    assert_eq!(
        inst.reservations()[0].instances()[0]
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str()),
        Some("terminated")
    );
    let e = ec2
        .terminate_instances()
        .instance_ids("i-0nope")
        .send()
        .await
        .expect_err("missing");
    assert_eq!(e.code(), Some("InvalidInstanceID.NotFound"));

    let e = ec2
        .delete_snapshot()
        .snapshot_id(&snap)
        .send()
        .await
        .expect_err("in use");
    assert_eq!(e.code(), Some("InvalidSnapshot.InUse"));
    ec2.deregister_image()
        .image_id("ami-0aaa")
        .send()
        .await
        .expect("deregister");
    ec2.delete_snapshot()
        .snapshot_id(&snap)
        .send()
        .await
        .expect("delete snapshot");
    let e = ec2
        .deregister_image()
        .image_id("ami-0aaa")
        .send()
        .await
        .expect_err("gone");
    assert_eq!(e.code(), Some("InvalidAMIID.NotFound"));
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
