//! The checks: for every switch that changes the wiring, each connection must reach a listener
//! through an ingress rule, and each ingress rule must serve a connection, the public entry or
//! SSH; and a guard that the derivation finds the stack at all.

use std::collections::{BTreeMap, BTreeSet};

use argos::template::Template;

use super::connections::{connections, To};
use super::listeners::{groups, Listener};
use super::security_groups::{
    database_id, database_port, group_resources, ingress_rules, lb_listeners, target_group, Ingress, ListenerAction,
    Source, LOAD_BALANCER,
};
use super::templates;
use super::vars::Vars;

/// A certificate ARN of the right shape, and subnets, for the HTTPS scenarios.
const CERTIFICATE: &str = "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000";

/// The switches that change the wiring, as (label, parameter values): broker, workers, and
/// the front's HTTPS (load balancer) or plain HTTP.
fn scenarios(t: &Template) -> Vec<(String, BTreeMap<String, String>)> {
    let base: BTreeMap<String, String> = t
        .parameters()
        .into_iter()
        .map(|p| (p.name, p.default.unwrap_or_else(|| "unset".into())))
        .collect();
    let mut out = Vec::new();
    for https in [false, true] {
        for (broker, workers) in [("false", "0"), ("true", "0"), ("false", "2"), ("true", "2")] {
            let mut p = base.clone();
            p.insert("EnableBroker".into(), broker.into());
            p.insert("WorkerCount".into(), workers.into());
            if https {
                p.insert("CertificateArn".into(), CERTIFICATE.into());
                p.insert("LoadBalancerSubnetIds".into(), "subnet-0aaa1111,subnet-0bbb2222".into());
            } else {
                p.insert("CertificateArn".into(), String::new());
            }
            let label = format!(
                "broker {}, {} workers, {}",
                if broker == "true" { "on" } else { "off" },
                workers,
                if https { "HTTPS" } else { "plain HTTP" }
            );
            out.push((label, p));
        }
    }
    out
}

/// Every mismatch, each with the scenarios it shows in.
fn wiring_mismatches() -> (Vec<String>, Vec<String>) {
    let (_, t) = templates();
    let vars = Vars::load();
    let groups = groups(&vars);
    let compute = group_resources(&t);
    let rules = ingress_rules(&t);
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut refused = Vec::new();
    let mut fail = |label: &str, msg: String| found.entry(msg).or_default().push(label.to_string());
    let lb_listeners = lb_listeners(&t);
    let scenario_count = scenarios(&t).len();

    for g in &groups {
        if !compute.contains_key(&g.name) {
            fail(
                "all",
                format!(
                    "playbooks/{}.yml configures group '{}', which no resource of the template has (Group tag)",
                    g.name, g.name
                ),
            );
        }
    }
    // The hosts the engine passes come from the right resources.
    let outputs = &t.value["Outputs"];
    let db = database_id(&t);
    for (out_name, res, att) in [
        ("DatabaseHost", db.as_str(), "Endpoint.Address"),
        ("DatabasePort", db.as_str(), "Endpoint.Port"),
        ("KnowledgeHost", compute["knowledge"].0.as_str(), "PrivateIp"),
    ] {
        let v = &outputs[out_name]["Value"]["Fn::GetAtt"];
        if v[0] != res || v[1] != att {
            fail(
                "all",
                format!(
                    "output {out_name} must be GetAtt [{res}, {att}] (deploy passes it to the playbooks); it is {v}"
                ),
            );
        }
    }

    for (label, params) in scenarios(&t) {
        let refusals = t.rule_violations(&params);
        if !refusals.is_empty() {
            refused.push(format!("{label}: {}", refusals.join("; ")));
            continue;
        }
        let present: BTreeSet<String> = compute
            .iter()
            .filter(|(_, (res, _))| t.resource_active(res, &params))
            .map(|(g, _)| g.clone())
            .collect();
        let sgs_of = |g: &str| -> Vec<String> { compute.get(g).map(|c| c.1.clone()).unwrap_or_default() };
        let group_of_sg = |sg: &str| -> Vec<String> {
            compute
                .iter()
                .filter(|(g, c)| present.contains(*g) && c.1.iter().any(|s| s == sg))
                .map(|(g, _)| g.clone())
                .collect()
        };
        let active_lb_listeners: Vec<_> = lb_listeners
            .iter()
            .filter(|l| t.resource_active(&l.resource, &params))
            .collect();
        let listeners = |g: &str| -> Vec<Listener> {
            if g == LOAD_BALANCER {
                return active_lb_listeners
                    .iter()
                    .map(|l| Listener {
                        port: l.port,
                        remote: true,
                        auth: None,
                        what: format!("{} {} ({})", l.protocol, l.port, l.resource),
                        note: None,
                    })
                    .collect();
            }
            if g == "database" {
                return vec![Listener {
                    port: database_port(&t),
                    remote: true,
                    auth: None,
                    what: "RDS postgres".into(),
                    note: None,
                }];
            }
            groups
                .iter()
                .find(|x| x.name == g)
                .map(|x| x.listeners.clone())
                .unwrap_or_default()
        };
        let active: Vec<&Ingress> = rules
            .iter()
            .filter(|r| t.resource_active(&r.resource, &params))
            .collect();
        let mut conns = connections(&vars, &groups, &present);
        // The load balancer's forwards: to each target group's targets, on its port.
        for l in &active_lb_listeners {
            for a in &l.actions {
                let ListenerAction::Forward(tg) = a else { continue };
                let (port, targets) = target_group(&t, tg);
                for target in targets {
                    let Some((g, _)) = compute.iter().find(|(_, (res, _))| *res == target) else {
                        fail(&label, format!("{tg} targets {target}, which is no group's resource"));
                        continue;
                    };
                    conns.push(super::connections::Connection {
                        from: LOAD_BALANCER.into(),
                        to: To::Group(g.clone()),
                        port,
                        what: format!("{} forwards to {tg}", l.resource),
                        uses: BTreeSet::new(),
                    });
                }
            }
        }

        for c in &conns {
            match &c.to {
                To::Local => {
                    let local = listeners(&c.from);
                    if !local.iter().any(|l| l.port == c.port) {
                        fail(
                            &label,
                            format!(
                                "{} → localhost:{}: {}; nothing the {} playbook installs listens on {} there",
                                c.from, c.port, c.what, c.from, c.port
                            ),
                        );
                    }
                }
                To::Group(target) => {
                    let here = listeners(target);
                    let Some(l) = here.iter().find(|l| l.port == c.port) else {
                        let ports: Vec<String> = here.iter().map(|l| format!("{} ({})", l.port, l.what)).collect();
                        fail(
                            &label,
                            format!(
                                "{} → {target}:{}: {}; but on {target} the playbooks make services listen on [{}]",
                                c.from,
                                c.port,
                                c.what,
                                ports.join(", ")
                            ),
                        );
                        continue;
                    };
                    if !l.remote {
                        fail(
                            &label,
                            format!(
                                "{} → {target}:{}: {} listens for loopback clients only{}",
                                c.from,
                                c.port,
                                l.what,
                                l.note.as_ref().map(|n| format!(" ({n})")).unwrap_or_default()
                            ),
                        );
                    }
                    if let Some(pw) = &l.auth {
                        if !c.uses.contains(pw) {
                            fail(
                                &label,
                                format!(
                                    "{} → {target}:{}: {} requires the password {pw}, which {} does not carry",
                                    c.from, c.port, l.what, c.what
                                ),
                            );
                        }
                    }
                    let from_sgs = sgs_of(&c.from);
                    let target_sgs = sgs_of(target);
                    let allowed = active.iter().any(|r| {
                        target_sgs.contains(&r.sg)
                            && r.covers(c.port)
                            && matches!(&r.source, Source::Sg(s) if from_sgs.contains(s))
                    });
                    if !allowed {
                        fail(
                            &label,
                            format!(
                                "{} → {target}:{} ({}): no ingress rule of {} allows tcp {} from {}",
                                c.from,
                                c.port,
                                c.what,
                                target_sgs.join("/"),
                                c.port,
                                from_sgs.join("/")
                            ),
                        );
                    }
                }
            }
        }

        // Every ingress rule serves a connection (or the public entry, or SSH).
        for r in &active {
            let owners = group_of_sg(&r.sg);
            let ports = if r.from == r.to {
                r.from.to_string()
            } else {
                format!("{}-{}", r.from, r.to)
            };
            match &r.source {
                Source::CidrParam(p) if r.from == 22 && r.to == 22 => {
                    if p != "AllowedSshCidr" {
                        fail(
                            &label,
                            format!("{}: SSH from parameter {p}, not AllowedSshCidr", r.resource),
                        );
                    }
                }
                Source::Cidr(c) if r.from == 22 && r.to == 22 => {
                    fail(
                        &label,
                        format!("{}: SSH from the literal {c}; use AllowedSshCidr", r.resource),
                    );
                }
                Source::Cidr(c) | Source::CidrParam(c) => {
                    // Public: the load balancer's listeners; without one (plain HTTP on
                    // purpose), the front's nginx ports.
                    let public = owners.iter().any(|g| {
                        if g == LOAD_BALANCER {
                            return active_lb_listeners.iter().any(|l| r.covers(l.port) && r.from == r.to);
                        }
                        !present.contains(LOAD_BALANCER)
                            && groups
                                .iter()
                                .any(|x| &x.name == g && x.public_ports.iter().any(|p| r.covers(*p) && r.from == r.to))
                    });
                    if !public {
                        let ls: Vec<String> = owners
                            .iter()
                            .flat_map(|g| listeners(g))
                            .map(|l| format!("{} ({})", l.port, l.what))
                            .collect();
                        fail(&label, format!(
                            "{} opens tcp {ports} of {} to {c}; only the load balancer's listeners (or, without one, the front's nginx ports) are public, and on {} the playbooks listen on [{}]",
                            r.resource, owners.join("/"), owners.join("/"), ls.join(", ")
                        ));
                    }
                }
                Source::Sg(src) => {
                    let sources = group_of_sg(src);
                    let served = conns.iter().any(|c| {
                        sources.contains(&c.from)
                            && matches!(&c.to, To::Group(g) if owners.contains(g))
                            && r.covers(c.port)
                    });
                    if !served && !sources.is_empty() && !owners.is_empty() {
                        let listening = owners
                            .iter()
                            .flat_map(|g| listeners(g))
                            .filter(|l| r.covers(l.port))
                            .map(|l| l.what)
                            .collect::<Vec<_>>();
                        fail(
                            &label,
                            format!(
                                "{} allows tcp {ports} into {} from {}, but {} never connects there{}",
                                r.resource,
                                owners.join("/"),
                                sources.join("/"),
                                sources.join("/"),
                                if listening.is_empty() {
                                    format!(" (and nothing listens on {ports} there)")
                                } else {
                                    String::new()
                                }
                            ),
                        );
                    }
                }
            }
        }
        // SSH: every instance's group is reachable for Ansible, from AllowedSshCidr.
        for g in present.iter().filter(|g| *g != "database" && *g != LOAD_BALANCER) {
            let ssh = active.iter().any(|r| {
                sgs_of(g).contains(&r.sg)
                    && r.covers(22)
                    && matches!(&r.source, Source::CidrParam(p) if p == "AllowedSshCidr")
            });
            if !ssh {
                fail(
                    &label,
                    format!("{g}: no SSH rule from AllowedSshCidr (Ansible needs port 22)"),
                );
            }
        }
    }
    let mismatches = found
        .into_iter()
        .map(|(msg, labels)| {
            if labels.len() == scenario_count || labels == ["all"] {
                msg
            } else {
                format!("{msg}  [{}]", labels.join("; "))
            }
        })
        .collect();
    (mismatches, refused)
}

#[test]
fn every_connection_between_roles_is_wired() {
    let (mismatches, refused) = wiring_mismatches();
    for r in &refused {
        eprintln!("not deployable (the template's Rules refuse it): {r}");
    }
    assert!(
        mismatches.is_empty(),
        "{} wiring mismatch(es):\n- {}",
        mismatches.len(),
        mismatches.join("\n- ")
    );
}

#[test]
fn the_derivation_sees_the_stack() {
    // Guards the test above against deriving nothing: the parsers find what is there.
    let (_, t) = templates();
    let vars = Vars::load();
    let groups = groups(&vars);
    let names: BTreeSet<&str> = groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from(["api", "broker", "collector", "front", "knowledge", "worker"])
    );
    let compute = group_resources(&t);
    assert_eq!(compute.len(), 8, "{compute:?}");
    let all: BTreeSet<String> = compute.keys().cloned().collect();
    let conns = connections(&vars, &groups, &all);
    let pairs: BTreeSet<(String, String)> = conns
        .iter()
        .filter_map(|c| match &c.to {
            To::Group(g) => Some((c.from.clone(), g.clone())),
            To::Local => None,
        })
        .collect();
    for (from, to) in [
        ("front", "api"),
        ("api", "database"),
        ("collector", "knowledge"),
        ("worker", "database"),
    ] {
        assert!(
            pairs.contains(&(from.to_string(), to.to_string())),
            "{from} → {to} not derived: {conns:#?}"
        );
    }
    assert!(groups.iter().any(|g| g.runs_celery), "the celery units are found");
    assert!(ingress_rules(&t).len() >= 10);
}
