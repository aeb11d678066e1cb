//! The front's HTTPS (issue 23): with a certificate, a load balancer answers HTTPS on 443 with
//! the certificate and a TLS 1.2+ policy, answers port 80 only with a 301 to HTTPS, forwards
//! only to the front's nginx (which proxies only to the api), and may reach nothing else; the
//! front's port 80 is then open to the load balancer alone. Without one (plain HTTP on
//! purpose) there is no load balancer and the front's nginx is public. This is the narrower
//! rule behind the outside scan's skipped CKV_AWS_260 (scripts/checkov-skips).

use std::collections::BTreeMap;

use super::security_groups::{
    egress_rules, group_resources, ingress_rules, lb_listeners, target_group, ListenerAction, Source, LOAD_BALANCER,
};
use super::templates;

const CERTIFICATE: &str = "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000";

fn params(t: &argos::template::Template, https: bool) -> BTreeMap<String, String> {
    let mut p: BTreeMap<String, String> = t
        .parameters()
        .into_iter()
        .map(|p| (p.name, p.default.unwrap_or_else(|| "unset".into())))
        .collect();
    if https {
        p.insert("CertificateArn".into(), CERTIFICATE.into());
        p.insert("LoadBalancerSubnetIds".into(), "subnet-0aaa1111,subnet-0bbb2222".into());
    }
    p
}

/// The internet-facing rules (CIDR 0.0.0.0/0) that exist under these parameters, as
/// (group, port).
fn public_rules(t: &argos::template::Template, p: &BTreeMap<String, String>) -> Vec<(String, i64)> {
    let compute = group_resources(t);
    let mut out: Vec<(String, i64)> = ingress_rules(t)
        .into_iter()
        .filter(|r| t.resource_active(&r.resource, p))
        .filter(|r| matches!(&r.source, Source::Cidr(c) if c == "0.0.0.0/0"))
        .map(|r| {
            let group = compute
                .iter()
                .find(|(_, (_, sgs))| sgs.contains(&r.sg))
                .map(|(g, _)| g.clone())
                .unwrap_or(r.sg.clone());
            (group, r.from)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn with_a_certificate_the_load_balancer_serves_https_redirects_http_and_forwards_only_to_the_front() {
    let (_, t) = templates();
    let p = params(&t, true);
    let compute = group_resources(&t);
    let (lb, lb_sgs) = &compute[LOAD_BALANCER];
    assert!(t.resource_active(lb, &p), "{lb} exists with a certificate");
    let listeners: Vec<_> = lb_listeners(&t)
        .into_iter()
        .filter(|l| t.resource_active(&l.resource, &p))
        .collect();
    let ports: Vec<(u16, &str)> = listeners.iter().map(|l| (l.port, l.protocol.as_str())).collect();
    assert_eq!(ports.len(), 2, "{ports:?}");
    let https = listeners.iter().find(|l| l.port == 443).expect("a listener on 443");
    assert_eq!(https.protocol, "HTTPS");
    assert_eq!(
        https.certificates,
        ["CertificateArn"],
        "443 presents the environment's certificate"
    );
    let policy = https.ssl_policy.as_deref().unwrap_or_default();
    assert!(
        policy.starts_with("ELBSecurityPolicy-TLS13-1-2"),
        "443 accepts TLS 1.2 and 1.3 only: {policy}"
    );
    let http = listeners.iter().find(|l| l.port == 80).expect("a listener on 80");
    assert_eq!(http.protocol, "HTTP");
    assert_eq!(
        http.actions,
        [ListenerAction::Redirect(
            "HTTPS".into(),
            "443".into(),
            "HTTP_301".into()
        )],
        "port 80 only redirects to HTTPS"
    );
    // Every forward reaches the front's nginx and nothing else.
    let front = &compute["front"];
    for l in &listeners {
        for a in &l.actions {
            if let ListenerAction::Forward(tg) = a {
                let (port, targets) = target_group(&t, tg);
                assert_eq!(
                    (port, targets.clone()),
                    (80, vec![front.0.clone()]),
                    "{} → {tg}",
                    l.resource
                );
            }
        }
    }
    assert!(
        https.actions.iter().all(|a| matches!(a, ListenerAction::Forward(_))),
        "{:?}",
        https.actions
    );
    // The load balancer may reach the front's port 80 only.
    assert_eq!(lb_sgs.len(), 1);
    assert_eq!(
        egress_rules(&t, &lb_sgs[0]),
        [(80, 80, Some(front.1[0].clone()))],
        "the load balancer's group reaches only the front's nginx"
    );
    // From the internet: the load balancer's 80 and 443; nothing else but SSH (AllowedSshCidr).
    assert_eq!(
        public_rules(&t, &p),
        [(LOAD_BALANCER.to_string(), 80), (LOAD_BALANCER.to_string(), 443)]
    );
    let front_80: Vec<_> = ingress_rules(&t)
        .into_iter()
        .filter(|r| t.resource_active(&r.resource, &p) && front.1.contains(&r.sg) && r.covers(80))
        .map(|r| r.source)
        .collect();
    assert!(
        matches!(front_80.as_slice(), [Source::Sg(s)] if s == &lb_sgs[0]),
        "the front's port 80 is open to the load balancer alone: {front_80:?}"
    );
}

#[test]
fn without_a_certificate_there_is_no_load_balancer_and_the_front_is_plain_http() {
    let (_, t) = templates();
    let p = params(&t, false);
    assert_eq!(p["CertificateArn"], "", "the template's default is no certificate");
    for l in lb_listeners(&t) {
        assert!(
            !t.resource_active(&l.resource, &p),
            "{} exists without a certificate",
            l.resource
        );
    }
    let (lb, _) = &group_resources(&t)[LOAD_BALANCER];
    assert!(!t.resource_active(lb, &p));
    assert_eq!(public_rules(&t, &p), [("front".to_string(), 80)]);
}

#[test]
fn a_certificate_without_subnets_for_the_load_balancer_is_refused_before_any_call() {
    let (_, t) = templates();
    let mut p = params(&t, true);
    p.insert("LoadBalancerSubnetIds".into(), String::new());
    let refused = t.rule_violations(&p).join("; ");
    assert!(
        refused.contains("LoadBalancerNeedsSubnets") && refused.contains("LoadBalancerSubnetIds"),
        "{refused}"
    );
}
