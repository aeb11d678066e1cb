//! The template's side: each group's compute resource and security groups, the database's
//! port, and every ingress rule (inline or a separate SecurityGroupIngress).

use std::collections::BTreeMap;

use argos::template::Template;
use serde_json::Value;

fn props(r: &Value) -> &Value {
    &r["Properties"]
}

fn tag(tags: &Value, key: &str) -> Option<String> {
    tags.as_array()?
        .iter()
        .find(|t| t["Key"] == key)
        .and_then(|t| t["Value"].as_str())
        .map(str::to_string)
}

fn sg_ref(v: &Value) -> Option<String> {
    if let Some(a) = v.get("Fn::GetAtt").and_then(Value::as_array) {
        return a.first().and_then(Value::as_str).map(str::to_string);
    }
    v.get("Ref").and_then(Value::as_str).map(str::to_string)
}

fn sg_list(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().filter_map(sg_ref).collect()
}

fn resources(t: &Template) -> &serde_json::Map<String, Value> {
    t.value["Resources"].as_object().unwrap()
}

/// The group name of the HTTPS load balancer in front of the front.
pub(crate) const LOAD_BALANCER: &str = "loadbalancer";

/// group → (the resource whose condition decides whether the group exists, its security groups)
pub(crate) fn group_resources(t: &Template) -> BTreeMap<String, (String, Vec<String>)> {
    let res = resources(t);
    let mut out = BTreeMap::new();
    for (id, r) in res {
        let p = props(r);
        match r["Type"].as_str().unwrap() {
            "AWS::EC2::Instance" => {
                let group = tag(&p["Tags"], "Group").unwrap_or_else(|| panic!("{id} has no Group tag"));
                out.insert(group, (id.clone(), sg_list(&p["SecurityGroupIds"])));
            }
            "AWS::AutoScaling::AutoScalingGroup" => {
                let group = tag(&p["Tags"], "Group").unwrap_or_else(|| panic!("{id} has no Group tag"));
                let lt = sg_ref(&p["LaunchTemplate"]["LaunchTemplateId"]).unwrap();
                let sgs = sg_list(&res[&lt]["Properties"]["LaunchTemplateData"]["SecurityGroupIds"]);
                out.insert(group, (id.clone(), sgs));
            }
            "AWS::RDS::DBInstance" => {
                out.insert("database".into(), (id.clone(), sg_list(&p["VPCSecurityGroups"])));
            }
            "AWS::ElasticLoadBalancingV2::LoadBalancer" => {
                out.insert(LOAD_BALANCER.into(), (id.clone(), sg_list(&p["SecurityGroups"])));
            }
            _ => {}
        }
    }
    out
}

pub(crate) fn database_id(t: &Template) -> String {
    group_resources(t)["database"].0.clone()
}

/// The port RDS listens on: `Port`, else the engine's default (5432 for postgres).
pub(crate) fn database_port(t: &Template) -> u16 {
    let db = &resources(t)[&database_id(t)]["Properties"];
    match &db["Port"] {
        Value::Null => {
            assert_eq!(
                db["Engine"], "postgres",
                "the database's default port is known for postgres only"
            );
            5432
        }
        Value::String(s) => s.parse().unwrap(),
        v => v.as_u64().unwrap() as u16,
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Source {
    Sg(String),
    Cidr(String),
    /// A CIDR from a parameter.
    CidrParam(String),
}

#[derive(Debug, Clone)]
pub(crate) struct Ingress {
    /// The resource holding the rule (its condition applies).
    pub(crate) resource: String,
    pub(crate) sg: String,
    pub(crate) from: i64,
    pub(crate) to: i64,
    pub(crate) proto: String,
    pub(crate) source: Source,
}

pub(crate) fn ingress_rules(t: &Template) -> Vec<Ingress> {
    let parse = |resource: &str, sg: &str, rule: &Value| -> Ingress {
        let source = if let Some(s) = rule.get("SourceSecurityGroupId") {
            Source::Sg(sg_ref(s).expect("SourceSecurityGroupId names a group of the stack"))
        } else {
            match &rule["CidrIp"] {
                Value::String(s) => Source::Cidr(s.clone()),
                v if v.get("Ref").is_some() => Source::CidrParam(v["Ref"].as_str().unwrap().to_string()),
                v if v.get("Fn::Sub").is_some() => {
                    let s = v["Fn::Sub"].as_str().unwrap();
                    match s.strip_prefix("${").and_then(|s| s.strip_suffix('}')) {
                        Some(p) if !p.contains('$') => Source::CidrParam(p.to_string()),
                        _ => Source::Cidr(s.to_string()),
                    }
                }
                other => panic!("{resource}: an ingress rule without a source: {other}"),
            }
        };
        Ingress {
            resource: resource.to_string(),
            sg: sg.to_string(),
            from: rule["FromPort"].as_i64().unwrap_or(-1),
            to: rule["ToPort"].as_i64().unwrap_or(-1),
            proto: rule["IpProtocol"].as_str().unwrap_or("tcp").to_string(),
            source,
        }
    };
    let mut out = Vec::new();
    for (id, r) in resources(t) {
        match r["Type"].as_str().unwrap() {
            "AWS::EC2::SecurityGroup" => {
                for rule in props(r)["SecurityGroupIngress"].as_array().into_iter().flatten() {
                    out.push(parse(id, id, rule));
                }
            }
            "AWS::EC2::SecurityGroupIngress" => {
                let sg = sg_ref(&props(r)["GroupId"]).unwrap();
                out.push(parse(id, &sg, props(r)));
            }
            _ => {}
        }
    }
    out
}

impl Ingress {
    pub(crate) fn covers(&self, port: u16) -> bool {
        (self.proto == "tcp" || self.proto == "-1")
            && (self.from == -1 || (self.from <= port as i64 && port as i64 <= self.to))
    }
}

/// What a load balancer listener does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListenerAction {
    /// To a target group (logical id).
    Forward(String),
    /// A redirect: (protocol, port, status code).
    Redirect(String, String, String),
    Other(String),
}

#[derive(Debug, Clone)]
pub(crate) struct LbListener {
    pub(crate) resource: String,
    pub(crate) port: u16,
    pub(crate) protocol: String,
    pub(crate) ssl_policy: Option<String>,
    /// The `Ref`s (parameters) the listener's certificates name.
    pub(crate) certificates: Vec<String>,
    pub(crate) actions: Vec<ListenerAction>,
}

/// Every load balancer listener of the template.
pub(crate) fn lb_listeners(t: &Template) -> Vec<LbListener> {
    let mut out = Vec::new();
    for (id, r) in resources(t) {
        if r["Type"] != "AWS::ElasticLoadBalancingV2::Listener" {
            continue;
        }
        let p = props(r);
        let actions = p["DefaultActions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| match a["Type"].as_str().unwrap_or_default() {
                "forward" => {
                    ListenerAction::Forward(sg_ref(&a["TargetGroupArn"]).expect("forward names a target group"))
                }
                "redirect" => {
                    let c = &a["RedirectConfig"];
                    let text = |v: &Value| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
                    ListenerAction::Redirect(text(&c["Protocol"]), text(&c["Port"]), text(&c["StatusCode"]))
                }
                other => ListenerAction::Other(other.to_string()),
            })
            .collect();
        out.push(LbListener {
            resource: id.clone(),
            port: p["Port"].as_u64().expect("a listener port") as u16,
            protocol: p["Protocol"].as_str().unwrap_or_default().to_string(),
            ssl_policy: p["SslPolicy"].as_str().map(str::to_string),
            certificates: p["Certificates"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["CertificateArn"]["Ref"].as_str().map(str::to_string))
                .collect(),
            actions,
        });
    }
    out
}

/// A target group's port and the logical ids of its targets.
pub(crate) fn target_group(t: &Template, id: &str) -> (u16, Vec<String>) {
    let p = props(&resources(t)[id]);
    let port = p["Port"].as_u64().expect("a target group port") as u16;
    let targets = p["Targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| sg_ref(&x["Id"]))
        .collect();
    (port, targets)
}

/// The egress rules of a security group: (port, destination group), or `None` for a CIDR.
pub(crate) fn egress_rules(t: &Template, sg: &str) -> Vec<(i64, i64, Option<String>)> {
    props(&resources(t)[sg])["SecurityGroupEgress"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["FromPort"].as_i64().unwrap_or(-1),
                e["ToPort"].as_i64().unwrap_or(-1),
                e.get("DestinationSecurityGroupId").and_then(sg_ref),
            )
        })
        .collect()
}
