//! The EC2 actions: instances, images, VPCs, subnets, snapshots and tags, with filters and
//! paging as the SDK sends them.

use super::*;

impl State {
    // -----------------------------------------------------------------------------------------
    // EC2
    // -----------------------------------------------------------------------------------------

    pub(super) fn ec2(&mut self, action: &str, p: &Params, now: Instant) -> Answer {
        self.settle_instances(now);
        match action {
            "DescribeInstances" => self.describe_instances(p),
            "DescribeImages" => self.describe_images(p),
            "DescribeVpcs" => self.describe_vpcs(p),
            "DescribeSubnets" => self.describe_subnets(p),
            "DeregisterImage" => self.deregister_image(p),
            "DeleteSnapshot" => self.delete_snapshot(p),
            "TerminateInstances" => self.terminate_instances(p, now),
            "CreateTags" => self.create_tags(p),
            _ => Err(err(
                "InvalidAction",
                format!("The action {action} is not valid for this web service."),
            )),
        }
    }

    pub(super) fn describe_instances(&mut self, p: &Params) -> Answer {
        let filters = filters(p)?;
        let ids = scalar_list(p, "InstanceId");
        for id in &ids {
            if !self.instances.iter().any(|i| &i.instance.instance_id == id) {
                return Err(err(
                    "InvalidInstanceID.NotFound",
                    format!("The instance ID '{id}' does not exist"),
                ));
            }
        }
        let mut matched = Vec::new();
        for rec in &self.instances {
            let i = &rec.instance;
            if !ids.is_empty() && !ids.contains(&i.instance_id) {
                continue;
            }
            let ok = filters_match(&filters, &i.tags, |name| match name {
                "instance-state-name" => Some(vec![i.state.clone()]),
                "instance-id" => Some(vec![i.instance_id.clone()]),
                "image-id" => Some(vec![i.image_id.clone()]),
                "instance-type" => Some(vec![i.instance_type.clone()]),
                "vpc-id" => Some(i.vpc_id.clone().into_iter().collect()),
                "subnet-id" => Some(i.subnet_id.clone().into_iter().collect()),
                "key-name" => Some(i.key_name.clone().into_iter().collect()),
                "availability-zone" => Some(vec![i.availability_zone.clone()]),
                "private-ip-address" => Some(i.private_ip.clone().into_iter().collect()),
                "ip-address" => Some(i.public_ip.clone().into_iter().collect()),
                _ => None,
            })?;
            if ok {
                matched.push(i.clone());
            }
        }
        let (page, next) = paginate(matched, p)?;
        let mut x = String::from("<reservationSet>");
        for i in &page {
            x += "<item>";
            x += &tag("reservationId", &format!("r-0{:016x}", fnv(&i.instance_id)));
            x += &tag("ownerId", ACCOUNT_ID);
            x += "<groupSet/><instancesSet><item>";
            x += &tag("instanceId", &i.instance_id);
            x += &tag("imageId", &i.image_id);
            x += &format!(
                "<instanceState><code>{}</code><name>{}</name></instanceState>",
                state_code(&i.state),
                esc(&i.state)
            );
            let running = i.state == "running";
            x += &tag(
                "privateDnsName",
                &i.private_ip
                    .as_ref()
                    .map(|ip| format!("ip-{}.ec2.internal", ip.replace('.', "-")))
                    .unwrap_or_default(),
            );
            x += &tag(
                "dnsName",
                &i.public_ip
                    .as_ref()
                    .filter(|_| running)
                    .map(|ip| format!("ec2-{}.compute-1.amazonaws.com", ip.replace('.', "-")))
                    .unwrap_or_default(),
            );
            x += &tag("reason", "");
            if let Some(k) = &i.key_name {
                x += &tag("keyName", k);
            }
            x += "<amiLaunchIndex>0</amiLaunchIndex><productCodes/>";
            x += &tag("instanceType", &i.instance_type);
            x += &tag(
                "launchTime",
                &i.launch_time.to_rfc3339_opts(SecondsFormat::Millis, true),
            );
            x += &format!(
                "<placement>{}<groupName/><tenancy>default</tenancy></placement>",
                tag("availabilityZone", &i.availability_zone)
            );
            x += "<monitoring><state>disabled</state></monitoring>";
            if i.state != "terminated" {
                if let Some(s) = &i.subnet_id {
                    x += &tag("subnetId", s);
                }
                if let Some(v) = &i.vpc_id {
                    x += &tag("vpcId", v);
                }
                if let Some(ip) = &i.private_ip {
                    x += &tag("privateIpAddress", ip);
                }
                if let Some(ip) = i.public_ip.as_ref().filter(|_| running) {
                    x += &tag("ipAddress", ip);
                }
            }
            x += "<architecture>x86_64</architecture><rootDeviceType>ebs</rootDeviceType><rootDeviceName>/dev/xvda</rootDeviceName>";
            x += &tag_set(&i.tags);
            x += "<virtualizationType>hvm</virtualizationType><hypervisor>xen</hypervisor>";
            x += "</item></instancesSet></item>";
        }
        x += "</reservationSet>";
        if let Some(n) = next {
            x += &tag("nextToken", &n);
        }
        Ok(x)
    }

    pub(super) fn describe_images(&mut self, p: &Params) -> Answer {
        let filters = filters(p)?;
        let owners = scalar_list(p, "Owner");
        let ids = scalar_list(p, "ImageId");
        for id in &ids {
            if !self.images.iter().any(|i| &i.image_id == id) {
                return Err(err(
                    "InvalidAMIID.NotFound",
                    format!("The image id '[{id}]' does not exist"),
                ));
            }
        }
        let mut matched = Vec::new();
        for i in &self.images {
            if !ids.is_empty() && !ids.contains(&i.image_id) {
                continue;
            }
            if !owners.is_empty()
                && !owners.iter().any(|o| {
                    o == &i.owner_id
                        || (o == "self" && i.owner_id == ACCOUNT_ID)
                        || i.owner_alias.as_deref() == Some(o.as_str())
                })
            {
                continue;
            }
            let ok = filters_match(&filters, &i.tags, |name| match name {
                "name" => Some(vec![i.name.clone()]),
                "image-id" => Some(vec![i.image_id.clone()]),
                "state" => Some(vec![i.state.clone()]),
                "owner-id" => Some(vec![i.owner_id.clone()]),
                "owner-alias" => Some(i.owner_alias.clone().into_iter().collect()),
                "is-public" => Some(vec![i.public.to_string()]),
                "description" => Some(i.description.clone().into_iter().collect()),
                "architecture" => Some(vec!["x86_64".to_string()]),
                "block-device-mapping.snapshot-id" => Some(i.snapshot_ids.clone()),
                _ => None,
            })?;
            if ok {
                matched.push(i.clone());
            }
        }
        let (page, next) = paginate(matched, p)?;
        let mut x = String::from("<imagesSet>");
        for i in &page {
            x += "<item>";
            x += &tag("imageId", &i.image_id);
            x += &tag("imageLocation", &format!("{}/{}", i.owner_id, i.name));
            x += &tag("imageState", &i.state);
            x += &tag("imageOwnerId", &i.owner_id);
            x += &tag("creationDate", &i.creation_date);
            x += &tag("isPublic", if i.public { "true" } else { "false" });
            x += "<architecture>x86_64</architecture><imageType>machine</imageType>";
            if let Some(a) = &i.owner_alias {
                x += &tag("imageOwnerAlias", a);
            }
            x += &tag("name", &i.name);
            if let Some(d) = &i.description {
                x += &tag("description", d);
            }
            x += "<rootDeviceType>ebs</rootDeviceType><rootDeviceName>/dev/xvda</rootDeviceName><blockDeviceMapping>";
            for (n, snap) in i.snapshot_ids.iter().enumerate() {
                let device = if n == 0 {
                    "/dev/xvda".to_string()
                } else {
                    format!("/dev/sd{}", (b'a' + (n as u8 % 26)) as char)
                };
                x += &format!(
                    "<item>{}<ebs>{}<volumeSize>8</volumeSize><deleteOnTermination>true</deleteOnTermination><volumeType>gp3</volumeType><encrypted>false</encrypted></ebs></item>",
                    tag("deviceName", &device),
                    tag("snapshotId", snap)
                );
            }
            x += "</blockDeviceMapping><virtualizationType>hvm</virtualizationType>";
            x += &tag_set(&i.tags);
            x += "<hypervisor>xen</hypervisor><enaSupport>true</enaSupport><bootMode>uefi-preferred</bootMode>";
            x += "</item>";
        }
        x += "</imagesSet>";
        if let Some(n) = next {
            x += &tag("nextToken", &n);
        }
        Ok(x)
    }

    pub(super) fn describe_vpcs(&mut self, p: &Params) -> Answer {
        let filters = filters(p)?;
        let ids = scalar_list(p, "VpcId");
        let mut x = String::from("<vpcSet>");
        for v in &self.vpcs {
            if !ids.is_empty() && !ids.contains(&v.vpc_id) {
                continue;
            }
            let ok = filters_match(&filters, &v.tags, |name| match name {
                "vpc-id" => Some(vec![v.vpc_id.clone()]),
                "is-default" | "isDefault" => Some(vec![v.is_default.to_string()]),
                "cidr" | "cidr-block-association.cidr-block" => Some(vec![v.cidr.clone()]),
                "state" => Some(vec!["available".to_string()]),
                "owner-id" => Some(vec![ACCOUNT_ID.to_string()]),
                _ => None,
            })?;
            if !ok {
                continue;
            }
            x += "<item>";
            x += &tag("vpcId", &v.vpc_id);
            x += "<state>available</state>";
            x += &tag("cidrBlock", &v.cidr);
            x += "<cidrBlockAssociationSet><item>";
            x += &tag("cidrBlock", &v.cidr);
            x += &tag("associationId", &format!("vpc-cidr-assoc-0{:016x}", fnv(&v.vpc_id)));
            x += "<cidrBlockState><state>associated</state></cidrBlockState></item></cidrBlockAssociationSet>";
            x += "<dhcpOptionsId>dopt-0123456789abcdef0</dhcpOptionsId><instanceTenancy>default</instanceTenancy>";
            x += &tag("isDefault", if v.is_default { "true" } else { "false" });
            x += &tag("ownerId", ACCOUNT_ID);
            x += &tag_set(&v.tags);
            x += "</item>";
        }
        x += "</vpcSet>";
        Ok(x)
    }

    pub(super) fn describe_subnets(&mut self, p: &Params) -> Answer {
        let filters = filters(p)?;
        let ids = scalar_list(p, "SubnetId");
        let mut x = String::from("<subnetSet>");
        for s in &self.subnets {
            if !ids.is_empty() && !ids.contains(&s.subnet_id) {
                continue;
            }
            let ok = filters_match(&filters, &s.tags, |name| match name {
                "vpc-id" => Some(vec![s.vpc_id.clone()]),
                "subnet-id" => Some(vec![s.subnet_id.clone()]),
                "availability-zone" | "availabilityZone" => Some(vec![s.az.clone()]),
                "default-for-az" | "defaultForAz" => Some(vec![s.default_for_az.to_string()]),
                "cidr-block" => Some(vec![s.cidr.clone()]),
                "state" => Some(vec!["available".to_string()]),
                _ => None,
            })?;
            if !ok {
                continue;
            }
            x += "<item>";
            x += &tag("subnetId", &s.subnet_id);
            x += &tag(
                "subnetArn",
                &format!("arn:aws:ec2:{REGION}:{ACCOUNT_ID}:subnet/{}", s.subnet_id),
            );
            x += "<state>available</state>";
            x += &tag("ownerId", ACCOUNT_ID);
            x += &tag("vpcId", &s.vpc_id);
            x += &tag("cidrBlock", &s.cidr);
            x += "<availableIpAddressCount>4091</availableIpAddressCount>";
            x += &tag("availabilityZone", &s.az);
            x += &tag(
                "availabilityZoneId",
                &format!(
                    "use1-az{}",
                    s.az.chars()
                        .last()
                        .map_or(1, |c| (c as u32).saturating_sub('a' as u32) + 1)
                ),
            );
            x += &tag("defaultForAz", if s.default_for_az { "true" } else { "false" });
            x += &tag("mapPublicIpOnLaunch", if s.default_for_az { "true" } else { "false" });
            x += &tag_set(&s.tags);
            x += "</item>";
        }
        x += "</subnetSet>";
        Ok(x)
    }

    pub(super) fn deregister_image(&mut self, p: &Params) -> Answer {
        let id = p.get("ImageId").cloned().unwrap_or_default();
        let Some(i) = self.images.iter().position(|i| i.image_id == id) else {
            return Err(err(
                "InvalidAMIID.NotFound",
                format!("The image id '[{id}]' does not exist"),
            ));
        };
        let image = self.images.remove(i);
        let mut x = String::from("<return>true</return>");
        if p.get("DeleteAssociatedSnapshots").is_some_and(|v| v == "true") {
            x += "<deleteSnapshotResultSet>";
            for snap in &image.snapshot_ids {
                self.snapshots.retain(|s| s != snap);
                x += &format!(
                    "<item>{}<returnCode>success</returnCode></item>",
                    tag("snapshotId", snap)
                );
            }
            x += "</deleteSnapshotResultSet>";
        }
        Ok(x)
    }

    pub(super) fn delete_snapshot(&mut self, p: &Params) -> Answer {
        let id = p.get("SnapshotId").cloned().unwrap_or_default();
        if !self.snapshots.contains(&id) {
            return Err(err(
                "InvalidSnapshot.NotFound",
                format!("The snapshot '{id}' does not exist."),
            ));
        }
        if let Some(image) = self.images.iter().find(|i| i.snapshot_ids.contains(&id)) {
            return Err(err(
                "InvalidSnapshot.InUse",
                format!("The snapshot {id} is currently in use by {}", image.image_id),
            ));
        }
        self.snapshots.retain(|s| s != &id);
        Ok("<return>true</return>".to_string())
    }

    pub(super) fn terminate_instances(&mut self, p: &Params, now: Instant) -> Answer {
        let ids = scalar_list(p, "InstanceId");
        for id in &ids {
            if !self.instances.iter().any(|i| &i.instance.instance_id == id) {
                return Err(err(
                    "InvalidInstanceID.NotFound",
                    format!("The instance ID '{id}' does not exist"),
                ));
            }
        }
        let delay = Duration::from_secs_f64((5.0 / self.time_scale).min(1.0e9));
        let mut x = String::from("<instancesSet>");
        for id in &ids {
            for rec in self.instances.iter_mut().filter(|r| &r.instance.instance_id == id) {
                let previous = rec.instance.state.clone();
                let current = if previous == "terminated" {
                    "terminated".to_string()
                } else {
                    rec.becomes = Some((now + delay, "terminated".to_string()));
                    "shutting-down".to_string()
                };
                rec.instance.state = current.clone();
                x += &format!(
                    "<item>{}<currentState><code>{}</code><name>{}</name></currentState><previousState><code>{}</code><name>{}</name></previousState></item>",
                    tag("instanceId", id),
                    state_code(&current),
                    current,
                    state_code(&previous),
                    esc(&previous)
                );
            }
        }
        x += "</instancesSet>";
        Ok(x)
    }

    pub(super) fn create_tags(&mut self, p: &Params) -> Answer {
        let ids = scalar_list(p, "ResourceId");
        let tags: Vec<(String, String)> = member_pairs(p, "Tag", "Key", "Value");
        for id in &ids {
            let target: Option<&mut Vec<(String, String)>> = if id.starts_with("i-") {
                self.instances
                    .iter_mut()
                    .find(|i| &i.instance.instance_id == id)
                    .map(|i| &mut i.instance.tags)
            } else if id.starts_with("ami-") {
                self.images.iter_mut().find(|i| &i.image_id == id).map(|i| &mut i.tags)
            } else if id.starts_with("vpc-") {
                self.vpcs.iter_mut().find(|v| &v.vpc_id == id).map(|v| &mut v.tags)
            } else if id.starts_with("subnet-") {
                self.subnets
                    .iter_mut()
                    .find(|s| &s.subnet_id == id)
                    .map(|s| &mut s.tags)
            } else {
                None
            };
            let Some(target) = target else {
                let code = if id.starts_with("i-") {
                    "InvalidInstanceID.NotFound"
                } else if id.starts_with("ami-") {
                    "InvalidAMIID.NotFound"
                } else {
                    "InvalidID"
                };
                return Err(err(code, format!("The ID '{id}' does not exist")));
            };
            for (k, v) in &tags {
                target.retain(|(tk, _)| tk != k);
                target.push((k.clone(), v.clone()));
            }
        }
        Ok("<return>true</return>".to_string())
    }
}
