#!/usr/bin/env python3
"""Probe moto (5.2.x) with the Argos CloudFormation templates in formations/.

Usage: .venv/bin/python scripts/dev/moto_probe.py --endpoint http://127.0.0.1:PORT [--keep]

Merges every formations/*.json except image.json (plain dict union per section,
duplicate logical ids are an error), then exercises the lifecycle on moto and
prints the facts the Rust engine relies on. Exits 1 if any check fails.
Talks only to the given loopback endpoint, with dummy credentials.
"""
import argparse
import json
import sys
import time
import urllib.request
from pathlib import Path

import boto3
from botocore.exceptions import ClientError

ROOT = Path(__file__).resolve().parents[2]
FORMATIONS = ROOT / "formations"
SECTIONS = ("Parameters", "Resources", "Outputs", "Conditions", "Mappings")
MAX_TEMPLATE_BYTES = 51_200
APP, ENV = "argos", "staging"
GROUP_TAGS = {"ApiEc2Instance": "api", "FrontEc2Instance": "front",
              "KnowledgeEc2Instance": "knowledge", "CollectorEc2Instance": "collector"}

failures = []


def check(ok, what, detail=""):
    print(("  ok   " if ok else "  FAIL ") + what + (f" -- {detail}" if detail else ""))
    if not ok:
        failures.append(what)
    return ok


def fact(what, value):
    print(f"  fact {what}: {value}")


def err(e):
    return f"{e.response['Error']['Code']}: {e.response['Error']['Message']}" if isinstance(e, ClientError) else repr(e)


def merge_formations():
    merged, owner = {}, {}
    for path in sorted(FORMATIONS.glob("*.json")):
        if path.name == "image.json":
            continue
        doc = json.loads(path.read_text())
        for key, value in doc.items():
            if key in SECTIONS:
                section = merged.setdefault(key, {})
                for lid, body in value.items():
                    # one logical id once across all files and sections
                    if lid in owner:
                        raise SystemExit(f"duplicate logical id {lid}: {owner[lid]} and {path.name}/{key}")
                    owner[lid] = f"{path.name}/{key}"
                    section[lid] = body
            elif key in merged and merged[key] != value:
                raise SystemExit(f"conflicting top-level key {key} in {path.name}")
            else:
                merged[key] = value
    return merged


def no_dup_keys(path):
    def hook(pairs):
        keys = [k for k, _ in pairs]
        dups = {k for k in keys if keys.count(k) > 1}
        if dups:
            raise ValueError(f"{path.name}: duplicate keys {sorted(dups)}")
        return dict(pairs)
    json.loads(path.read_text(), object_pairs_hook=hook)


def params(d):
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in d.items()]


def outputs(stack):
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def tagmap(tags):
    return {t["Key"]: t["Value"] for t in tags or []}


def stack_instances(ec2, stack_name):
    res = ec2.describe_instances(Filters=[
        {"Name": "tag:aws:cloudformation:stack-name", "Values": [stack_name]},
        {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}])
    return [i for r in res["Reservations"] for i in r["Instances"]]


def live_instances(ec2):
    res = ec2.describe_instances(Filters=[
        {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}])
    return [i for r in res["Reservations"] for i in r["Instances"]]


def wait_change_set(cf, stack, name, timeout=20):
    end = time.time() + timeout
    while True:
        cs = cf.describe_change_set(StackName=stack, ChangeSetName=name)
        if cs["Status"] not in ("CREATE_PENDING", "CREATE_IN_PROGRESS") or time.time() > end:
            return cs
        time.sleep(0.2)


def summarize_events(cf, stack):
    evs = cf.describe_stack_events(StackName=stack)["StackEvents"]
    return evs, [(e["LogicalResourceId"], e["ResourceType"], e["ResourceStatus"], e.get("ClientRequestToken")) for e in evs]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True, help="moto server, e.g. http://127.0.0.1:5000")
    ap.add_argument("--no-reset", action="store_true", help="do not POST /moto-api/reset first")
    args = ap.parse_args()
    if not args.endpoint.startswith(("http://127.0.0.1", "http://localhost")):
        raise SystemExit("refusing a non-loopback endpoint")
    if not args.no_reset:
        urllib.request.urlopen(urllib.request.Request(args.endpoint + "/moto-api/reset", method="POST")).read()

    kw = dict(endpoint_url=args.endpoint, region_name="us-east-1",
              aws_access_key_id="testing", aws_secret_access_key="testing")
    cf, ec2 = boto3.client("cloudformation", **kw), boto3.client("ec2", **kw)
    asg = boto3.client("autoscaling", **kw)

    print("== templates")
    for p in sorted(FORMATIONS.glob("*.json")):
        no_dup_keys(p)
    merged = merge_formations()
    merged_body = json.dumps(merged, separators=(",", ":"))
    image_body = json.dumps(json.loads((FORMATIONS / "image.json").read_text()), separators=(",", ":"))
    check(len(merged_body) < MAX_TEMPLATE_BYTES, "merged template compact size", f"{len(merged_body)} bytes")
    fact("merged parameters", list(merged["Parameters"]))
    fact("merged outputs", list(merged["Outputs"]))
    for name, body in (("image.json", image_body), ("merged", merged_body)):
        try:
            v = cf.validate_template(TemplateBody=body)
            check(True, f"ValidateTemplate {name}", f"{len(v.get('Parameters', []))} parameters")
        except ClientError as e:
            check(False, f"ValidateTemplate {name}", err(e))
    # moto's ValidateTemplate is cfn-lint; even a warning fails it, with an odd message
    bad = json.loads(merged_body)
    bad["Resources"]["Database"].pop("Metadata", None)
    try:
        cf.validate_template(TemplateBody=json.dumps(bad))
        fact("ValidateTemplate with a cfn-lint warning (W1011)", "passes")
    except ClientError as e:
        fact("ValidateTemplate with a cfn-lint warning (W1011)", err(e))

    print("== network, key pair, base image")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["Subnets"]
    subnets.sort(key=lambda s: s["AvailabilityZone"])
    subnet = subnets[0]
    fact("default VPC", f"{vpc['VpcId']} {vpc['CidrBlock']} IsDefault={vpc['IsDefault']}")
    fact("default subnets", [(s["SubnetId"], s["AvailabilityZone"], s["CidrBlock"], s.get("DefaultForAz"), s.get("MapPublicIpOnLaunch")) for s in subnets])
    base = ec2.describe_images(Owners=["amazon"])["Images"]
    check(bool(base), "moto has Amazon-owned AMIs")
    base_ami = sorted(i["ImageId"] for i in base)[0]
    fact("base AMI used", f"{base_ami} ({len(base)} amazon images)")

    try:
        r = ec2.run_instances(ImageId=base_ami, MinCount=1, MaxCount=1, InstanceType="t3.small", KeyName="no-such-key")
        iid = r["Instances"][0]["InstanceId"]
        fact("RunInstances with a missing key pair", f"succeeds ({iid}, KeyName={r['Instances'][0].get('KeyName')})")
        ec2.terminate_instances(InstanceIds=[iid])
    except ClientError as e:
        fact("RunInstances with a missing key pair", err(e))
    try:
        r = ec2.run_instances(ImageId="ami-00000000deadbeef", MinCount=1, MaxCount=1)
        fact("RunInstances with an unknown AMI", f"succeeds ({r['Instances'][0]['InstanceId']})")
        ec2.terminate_instances(InstanceIds=[r["Instances"][0]["InstanceId"]])
    except ClientError as e:
        fact("RunInstances with an unknown AMI", err(e))

    image_params = {"AppName": APP, "BaseImageId": base_ami, "KeyName": "no-such-key",
                    "VpcId": vpc["VpcId"], "SubnetId": subnet["SubnetId"]}
    try:
        cf.create_stack(StackName="keyprobe-image", TemplateBody=image_body, Parameters=params(image_params))
        st = cf.describe_stacks(StackName="keyprobe-image")["Stacks"][0]
        fact("CreateStack image.json with a missing key pair", f"{st['StackStatus']} {st.get('StackStatusReason', '')}")
        cf.delete_stack(StackName="keyprobe-image")
    except ClientError as e:
        fact("CreateStack image.json with a missing key pair", err(e))
    bogus = dict(image_params, BaseImageId="ami-00000000deadbeef", VpcId="vpc-00000000", SubnetId="subnet-00000000")
    try:
        cf.create_stack(StackName="typeprobe-image", TemplateBody=image_body, Parameters=params(bogus))
        st = cf.describe_stacks(StackName="typeprobe-image")["Stacks"][0]
        fact("CreateStack with unknown AMI/VPC/subnet ids (AWS::EC2::*::Id params)", f"{st['StackStatus']}")
        cf.delete_stack(StackName="typeprobe-image")
    except ClientError as e:
        fact("CreateStack with unknown AMI/VPC/subnet ids (AWS::EC2::*::Id params)", err(e))

    ec2.create_key_pair(KeyName="argos")

    print("== image stack")
    image_stack = f"{APP}-image"
    image_params["KeyName"] = "argos"
    cs = cf.create_stack(StackName=image_stack, TemplateBody=image_body, Parameters=params(image_params),
                         ClientRequestToken="argos-req-image-1", Tags=[{"Key": "App", "Value": APP}])
    image_stack_id = cs["StackId"]
    fact("CreateStack StackId", image_stack_id)
    st = cf.describe_stacks(StackName=image_stack)["Stacks"][0]
    check(st["StackStatus"] == "CREATE_COMPLETE", "image stack CREATE_COMPLETE right after CreateStack", st["StackStatus"])
    out = outputs(st)
    # moto's CloudFormation path launches instances without a public IP (it ignores the subnet's
    # MapPublicIpOnLaunch), and an output whose value is None is left out of DescribeStacks.
    check(bool(out.get("InstanceId")) and bool(out.get("PrivateIp")), "image stack outputs InstanceId/PrivateIp resolve", out)
    fact("image stack PublicIp output on moto", out.get("PublicIp", "<absent>"))
    evs, summary = summarize_events(cf, image_stack)
    fact("image stack events (newest first)", summary)
    inst = ec2.describe_instances(InstanceIds=[out["InstanceId"]])["Reservations"][0]["Instances"][0]
    tags = tagmap(inst.get("Tags"))
    check(tags.get("Name") == f"{APP}-image" and tags.get("Group") == "image" and tags.get("Env") == "image"
          and tags.get("App") == APP, "image instance tags", tags)
    check(inst.get("KeyName") == "argos" and inst.get("PrivateIpAddress") == out["PrivateIp"],
          "image instance KeyName/PrivateIp", f"{inst.get('KeyName')} {inst.get('PrivateIpAddress')}")
    isg = ec2.describe_security_groups(Filters=[{"Name": "tag:aws:cloudformation:stack-name", "Values": [image_stack]}])["SecurityGroups"]
    fact("image instance security groups (moto ignores SecurityGroupIds)",
         f"{[g['GroupName'] for g in inst.get('SecurityGroups', [])]}, stack SG {[g['GroupId'] for g in isg]}")

    print("== CreateImage / DescribeImages / tags / snapshots")
    ami = ec2.create_image(InstanceId=out["InstanceId"], Name=f"{APP}-image", Description="argos baked",
                           TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": "App", "Value": APP}]}])["ImageId"]
    img = ec2.describe_images(ImageIds=[ami])["Images"][0]
    fact("CreateImage", f"{ami} State={img['State']} OwnerId={img.get('OwnerId')} Tags={img.get('Tags')}")
    try:
        ec2.create_image(InstanceId=out["InstanceId"], Name=f"{APP}-image")
        fact("CreateImage with a duplicate name", "succeeds (no InvalidAMIName.Duplicate)")
    except ClientError as e:
        fact("CreateImage with a duplicate name", err(e))
    ec2.create_tags(Resources=[ami], Tags=[{"Key": "Name", "Value": f"{APP}-image"}, {"Key": "Group", "Value": "image"}])
    found = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [f"{APP}-image"]}])["Images"]
    fact("DescribeImages Owners=self name=argos-image", [i["ImageId"] for i in found])
    check(ami in [i["ImageId"] for i in found], "DescribeImages Owners=self name= finds the image")
    found = ec2.describe_images(Owners=["self"], Filters=[{"Name": "tag:App", "Values": [APP]}])["Images"]
    check(ami in [i["ImageId"] for i in found], "DescribeImages Owners=self tag:App= finds the image")
    img = ec2.describe_images(ImageIds=[ami])["Images"][0]
    fact("image tags after CreateTags", tagmap(img.get("Tags")))
    bdm = img.get("BlockDeviceMappings", [])
    fact("image BlockDeviceMappings", bdm)
    snaps = [m["Ebs"]["SnapshotId"] for m in bdm if m.get("Ebs", {}).get("SnapshotId")]

    print("== merged stack (defaults: broker and workers off)")
    stack = f"{APP}-{ENV}"
    # Pass EVERY parameter explicitly (defaults too): moto compares update values against the
    # create-time input, where a defaulted parameter is missing and therefore always "changed".
    p = {k: str(v["Default"]).lower() if isinstance(v.get("Default"), bool) else str(v["Default"])
         for k, v in merged["Parameters"].items() if "Default" in v}
    p.update({"AppName": APP, "EnvName": ENV, "KeyName": "argos", "ImageId": ami, "VpcId": vpc["VpcId"],
              "SubnetId": subnet["SubnetId"], "DatabasePassword": "correct-horse-battery"})
    r = cf.create_stack(StackName=stack, TemplateBody=merged_body, Parameters=params(p), ClientRequestToken="argos-req-create-1")
    stack_id = r["StackId"]
    st = cf.describe_stacks(StackName=stack)["Stacks"][0]
    check(st["StackStatus"] == "CREATE_COMPLETE", "merged stack CREATE_COMPLETE", st["StackStatus"])
    out = outputs(st)
    fact("merged outputs", out)
    check({"KnowledgeHost", "DatabaseHost", "DatabasePort"} <= set(out) and not {"BrokerHost", "WorkerGroupName"} & set(out),
          "merged outputs present (no BrokerHost/WorkerGroupName by default)", sorted(out))
    check(bool(out.get("DatabaseHost")) and "." in out.get("DatabaseHost", ""), "DatabaseHost resolves", out.get("DatabaseHost"))
    check(out.get("KnowledgeHost", "").count(".") == 3, "KnowledgeHost is an IP", out.get("KnowledgeHost"))
    fact("merged stack parameters echo (NoEcho)", [(x["ParameterKey"], x["ParameterValue"]) for x in st["Parameters"] if x["ParameterKey"] == "DatabasePassword"])
    res = cf.describe_stack_resources(StackName=stack)["StackResources"]
    # moto lists resources skipped by a false Condition as entries without LogicalResourceId/ResourceType
    fact("merged stack resources", sorted((x.get("LogicalResourceId", "<none>"), x.get("ResourceType", "<none>"), x["ResourceStatus"]) for x in res))
    lids = {x.get("LogicalResourceId", "") for x in res}
    check(not any(l.startswith(("Broker", "Worker")) for l in lids), "no broker/worker resources by default")
    check(not asg.describe_auto_scaling_groups()["AutoScalingGroups"], "no auto scaling groups by default")
    evs, summary = summarize_events(cf, stack)
    fact("merged stack events count", len(evs))
    fact("merged stack event types", sorted({(x[1], x[2]) for x in summary}))
    fact("merged stack event ClientRequestTokens", sorted({str(x[3]) for x in summary}))
    insts = stack_instances(ec2, stack)
    check(len(insts) == 4, "four instances in the merged stack", len(insts))
    by_group = {}
    for i in insts:
        t = tagmap(i.get("Tags"))
        by_group[t.get("Group")] = i
        g = t.get("Group")
        check(g in GROUP_TAGS.values() and t.get("Name") == f"{APP}-{ENV}-{g}" and t.get("Env") == ENV and t.get("App") == APP,
              f"instance {i['InstanceId']} has the four tags", {k: v for k, v in t.items()})
        check(i["ImageId"] == ami and i.get("KeyName") == "argos" and i["SubnetId"] == subnet["SubnetId"],
              f"instance {g} uses ImageId/KeyName/SubnetId")
    check(by_group.get("knowledge", {}).get("PrivateIpAddress") == out.get("KnowledgeHost"), "KnowledgeHost == knowledge instance private ip")
    fact("ApiHost/FrontHost/CollectorHost on moto (no public IP via CFN)",
         {k: out.get(k, "<absent>") for k in ("ApiHost", "FrontHost", "CollectorHost")})
    found = ec2.describe_instances(Filters=[{"Name": "tag:App", "Values": [APP]}, {"Name": "tag:Env", "Values": [ENV]},
                                            {"Name": "tag:Group", "Values": ["knowledge"]}])["Reservations"]
    check(len(found) == 1, "tag-filtered DescribeInstances finds the knowledge host")
    sgs = ec2.describe_security_groups(Filters=[{"Name": "tag:Env", "Values": [ENV]}])["SecurityGroups"]
    check(len(sgs) == 5, "five tagged security groups", sorted(tagmap(s.get("Tags")).get("Group") for s in sgs))
    dbsg = [s for s in sgs if tagmap(s.get("Tags")).get("Group") == "database"][0]
    fact("database SG ingress", [(x["FromPort"], [g["GroupId"] for g in x.get("UserIdGroupPairs", [])]) for x in dbsg["IpPermissions"]])
    try:
        rds = boto3.client("rds", **kw)
        db = rds.describe_db_instances()["DBInstances"][0]
        fact("RDS instance", f"{db['DBInstanceIdentifier']} {db['Engine']} {db.get('EngineVersion')} {db.get('StorageType')} "
                             f"{db['Endpoint']} tags={tagmap(db.get('TagList'))}")
    except Exception as e:  # informational only
        fact("RDS describe", err(e))

    print("== change set UPDATE (AllowedSshCidr: security groups only)")
    all_keys = list(merged["Parameters"])
    numbers = {k for k, v in merged["Parameters"].items() if v["Type"] == "Number"}

    def change_params(changed, previous, numbers_explicit=True):
        # moto: UsePreviousValue yields the parsed value (int for Number) which never equals the
        # create-time string, so Number parameters are sent explicitly.
        out = []
        for k in all_keys:
            if k in changed:
                out.append({"ParameterKey": k, "ParameterValue": changed[k]})
            elif numbers_explicit and k in numbers:
                out.append({"ParameterKey": k, "ParameterValue": previous[k]})
            else:
                out.append({"ParameterKey": k, "UsePreviousValue": True})
        return out

    def run_change_set(stack_name, name, changed, execute=True, previous=None, numbers_explicit=True):
        try:
            r = cf.create_change_set(StackName=stack_name, ChangeSetName=name, ChangeSetType="UPDATE",
                                     TemplateBody=merged_body,
                                     Parameters=change_params(changed, previous or p, numbers_explicit))
        except ClientError as e:
            return None, f"CreateChangeSet {err(e)}"
        c = wait_change_set(cf, stack_name, name)
        info = {k: c.get(k) for k in ("Status", "StatusReason", "ExecutionStatus")}
        info["Changes"] = [(x["ResourceChange"].get("Action"), x["ResourceChange"].get("LogicalResourceId"),
                            x["ResourceChange"].get("Replacement")) for x in c.get("Changes", [])]
        if not execute:
            return c, info
        try:
            cf.execute_change_set(StackName=stack_name, ChangeSetName=name, ClientRequestToken=f"argos-req-{name}")
            st = cf.describe_stacks(StackName=stack_name)["Stacks"][0]
            info["AfterExecute"] = st["StackStatus"]
        except ClientError as e:
            info["AfterExecute"] = err(e)
        except Exception as e:  # moto answers HTTP 500 on some updates; botocore retries then raises
            info["AfterExecute"] = repr(e)
        return c, info

    c, info = run_change_set(stack, "ssh-cidr", {"AllowedSshCidr": "203.0.113.0/24"})
    fact("change set AllowedSshCidr", info)
    check(info.get("AfterExecute") == "UPDATE_COMPLETE", "AllowedSshCidr update executes to UPDATE_COMPLETE", info.get("AfterExecute"))
    sgs = ec2.describe_security_groups(Filters=[{"Name": "tag:Env", "Values": [ENV]}])["SecurityGroups"]
    cidrs = sorted({r["CidrIp"] for g in sgs for x in g["IpPermissions"] if x.get("FromPort") == 22 for r in x.get("IpRanges", [])})
    check(cidrs == ["203.0.113.0/24"], "SSH ingress now 203.0.113.0/24 on every SG", cidrs)
    insts2 = stack_instances(ec2, stack)
    check(sorted(i["InstanceId"] for i in insts2) == sorted(i["InstanceId"] for i in insts), "instances unchanged by the SG update")
    st = cf.describe_stacks(StackName=stack)["Stacks"][0]
    fact("parameters after update", {x["ParameterKey"]: x["ParameterValue"] for x in st["Parameters"] if x["ParameterKey"] in ("AllowedSshCidr", "EnvName", "DatabasePassword")})
    evs, summary = summarize_events(cf, stack)
    fact("events after update (count, distinct)", (len(evs), sorted({(x[1], x[2], x[3]) for x in summary})))

    print("== no-change change set")
    c, info = run_change_set(stack, "no-change", {}, execute=False)
    fact("no-change change set", info)
    if c is not None:
        try:
            cf.execute_change_set(StackName=stack, ChangeSetName="no-change")
            fact("ExecuteChangeSet on the no-change set", cf.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"])
        except ClientError as e:
            fact("ExecuteChangeSet on the no-change set", err(e))
        except Exception as e:
            fact("ExecuteChangeSet on the no-change set", repr(e))
    try:
        cf.update_stack(StackName=stack, TemplateBody=merged_body, Parameters=change_params({}, p))
        fact("UpdateStack with no changes", cf.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"])
    except ClientError as e:
        fact("UpdateStack with no changes", err(e))
    fact("ListChangeSets", [(x["ChangeSetName"], x["Status"], x.get("ExecutionStatus")) for x in cf.list_change_sets(StackName=stack)["Summaries"]])

    print("== deletes")
    ids = [i["InstanceId"] for i in stack_instances(ec2, stack)]
    cf.delete_stack(StackName=stack)
    left = stack_instances(ec2, stack)
    states = {i["InstanceId"]: i["State"]["Name"] for r in ec2.describe_instances(InstanceIds=ids)["Reservations"] for i in r["Instances"]}
    check(not left, "DeleteStack leaves no live instances", states)
    fact("instance states after DeleteStack", sorted(set(states.values())))
    for ref in (stack, stack_id):
        try:
            s2 = cf.describe_stacks(StackName=ref)["Stacks"][0]
            fact(f"DescribeStacks after delete by {'name' if ref == stack else 'id'}", s2["StackStatus"])
        except ClientError as e:
            fact(f"DescribeStacks after delete by {'name' if ref == stack else 'id'}", err(e))
    fact("ListStacks DELETE_COMPLETE", [x["StackName"] for x in cf.list_stacks(StackStatusFilter=["DELETE_COMPLETE"])["StackSummaries"]])
    try:
        fact("RDS instances after DeleteStack", [d["DBInstanceIdentifier"] for d in boto3.client("rds", **kw).describe_db_instances()["DBInstances"]])
        fact("RDS snapshots after DeleteStack (DeletionPolicy Snapshot)", [d["DBSnapshotIdentifier"] for d in boto3.client("rds", **kw).describe_db_snapshots()["DBSnapshots"]])
    except Exception as e:
        fact("RDS after delete", err(e))
    evs, summary = summarize_events(cf, stack_id)
    fact("events after delete (count, distinct)", (len(evs), sorted({(x[1], x[2], x[3]) for x in summary})))

    for snap in snaps:
        try:
            ec2.delete_snapshot(SnapshotId=snap)
            fact("DeleteSnapshot while the image is registered", "succeeds")
        except ClientError as e:
            fact("DeleteSnapshot while the image is registered", err(e))
    ec2.deregister_image(ImageId=ami)
    gone = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [f"{APP}-image"]}])["Images"]
    check(ami not in [i["ImageId"] for i in gone], "DeregisterImage removes the image from DescribeImages")
    try:
        r = ec2.describe_images(ImageIds=[ami])
        fact("DescribeImages ImageIds=[deregistered]", f"no error, {len(r['Images'])} image(s)")
    except ClientError as e:
        fact("DescribeImages ImageIds=[deregistered]", err(e))
    try:
        ec2.deregister_image(ImageId=ami)
        fact("DeregisterImage twice", "no error")
    except ClientError as e:
        fact("DeregisterImage twice", err(e))
    for snap in snaps:
        try:
            ec2.delete_snapshot(SnapshotId=snap)
            fact("DeleteSnapshot after DeregisterImage", "succeeds")
        except ClientError as e:
            fact("DeleteSnapshot after DeregisterImage", err(e))
    cf.delete_stack(StackName=image_stack)
    check(not stack_instances(ec2, image_stack), "image stack delete leaves no image instance")
    try:
        cf.delete_stack(StackName="no-such-stack")
        fact("DeleteStack on a missing stack", "no error")
    except ClientError as e:
        fact("DeleteStack on a missing stack", err(e))

    print("== broker and workers switched on")
    on = f"{APP}-full"
    p_on = dict(p, EnvName="full", ImageId=base_ami, EnableBroker="true", WorkerCount="2")
    cf.create_stack(StackName=on, TemplateBody=merged_body, Parameters=params(p_on))
    st = cf.describe_stacks(StackName=on)["Stacks"][0]
    check(st["StackStatus"] == "CREATE_COMPLETE", "stack with broker+workers CREATE_COMPLETE", st["StackStatus"])
    out = outputs(st)
    check("BrokerHost" in out and "WorkerGroupName" in out, "BrokerHost/WorkerGroupName outputs present", out)
    groups = asg.describe_auto_scaling_groups()["AutoScalingGroups"]
    fact("worker ASG", [(g["AutoScalingGroupName"], g["MinSize"], g["MaxSize"], g["DesiredCapacity"], len(g["Instances"])) for g in groups])
    wi = ec2.describe_instances(Filters=[{"Name": "tag:Group", "Values": ["worker"]}, {"Name": "tag:Env", "Values": ["full"]},
                                         {"Name": "instance-state-name", "Values": ["running", "pending"]}])["Reservations"]
    winst = [i for r in wi for i in r["Instances"]]
    check(len(winst) == 2, "two worker instances tagged Group=worker via ASG PropagateAtLaunch", len(winst))
    for i in winst:
        t = tagmap(i.get("Tags"))
        check(t.get("Name") == f"{APP}-full-worker" and t.get("App") == APP and t.get("Env") == "full", "worker instance tags", t)
    bi = stack_instances(ec2, on)
    check(any(tagmap(i.get("Tags")).get("Group") == "broker" for i in bi), "broker instance exists with Group=broker")

    try:
        cf.delete_stack(StackName=on)
        check(not stack_instances(ec2, on), "broker+workers stack delete leaves no instances")
    except Exception as e:
        check(False, "broker+workers stack delete", repr(e)[:200])

    print("== updates that break on moto (each on a throwaway stack)")
    minimal = {k: v for k, v in p.items() if "Default" not in merged["Parameters"][k]}
    cases = [
        ("ApiInstanceType", p, {"ApiInstanceType": "t3.large"}, True),
        ("EnvName", p, {"EnvName": "other"}, True),
        ("DatabaseInstanceClass", p, {"DatabaseInstanceClass": "db.t4g.small"}, True),
        ("AllowedSshCidr, Number params via UsePreviousValue", p, {"AllowedSshCidr": "198.51.100.0/24"}, False),
        ("AllowedSshCidr, stack created without the defaulted params", minimal, {"AllowedSshCidr": "198.51.100.0/24"}, True),
        ("EnableBroker=true", p, {"EnableBroker": "true"}, True),
    ]
    for n, (label, create_p, changed, numbers_explicit) in enumerate(cases):
        name = f"{APP}-break{n}"
        cf.create_stack(StackName=name, TemplateBody=merged_body, Parameters=params(create_p))
        _, info = run_change_set(name, "c", changed, previous=p, numbers_explicit=numbers_explicit)
        try:
            st = cf.describe_stacks(StackName=name)["Stacks"][0]
            after = f"{st['StackStatus']} outputs={sorted(outputs(st))}"
        except Exception as e:
            after = "DescribeStacks " + (err(e) if isinstance(e, ClientError) else type(e).__name__ + " (HTTP 500)")
        ae = info.get("AfterExecute", "")
        ae = ae if "Unable to parse response" not in ae else "HTTP 500 (html body; botocore ResponseParserError)"
        fact(f"update {label}", f"ExecuteChangeSet -> {ae[:160]}; then {after[:200]}")
        if "EnableBroker" in changed:
            fact("  broker instances after the EnableBroker update",
                 len([i for i in stack_instances(ec2, name) if tagmap(i.get("Tags")).get("Group") == "broker"]))
        try:
            cf.delete_stack(StackName=name)
            fact("  DeleteStack", f"ok, live instances left: {len(stack_instances(ec2, name))}")
        except Exception as e:
            fact("  DeleteStack", (err(e) if isinstance(e, ClientError) else type(e).__name__)[:160])

    print()
    if failures:
        print(f"FAILED {len(failures)} check(s):")
        for f in failures:
            print("  - " + f)
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
