//! The inventory generated for each run from what AWS reports (DescribeInstances by tags, the
//! stack outputs), never cached between runs: the original tool's stale cache is gone.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::cloud::instances::InstanceInfo;
use crate::config::{AddressKind, Connection};

/// One host of the inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Inventory name: `<Name tag>-<instance id>`, unique and readable in task output.
    pub name: String,
    pub address: String,
    pub vars: BTreeMap<String, String>,
}

/// Groups of hosts plus the variables every host gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    pub groups: BTreeMap<String, Vec<Host>>,
    pub vars: BTreeMap<String, String>,
}

/// How the inventory reaches hosts.
#[derive(Debug, Clone)]
pub struct Reach {
    pub connection: Connection,
    pub address: AddressKind,
    pub user: String,
    pub python: String,
    pub ssh_port: u16,
}

impl Inventory {
    /// Builds the inventory from instances, grouped by their `Group` tag.
    pub fn from_instances(instances: &[InstanceInfo], reach: &Reach) -> Inventory {
        let mut inv = Inventory::default();
        for i in instances {
            let address = match reach.address {
                AddressKind::Public => i
                    .public_ip
                    .clone()
                    .or_else(|| i.public_dns.clone())
                    .or_else(|| i.private_ip.clone()),
                AddressKind::Private => i.private_ip.clone(),
            }
            .unwrap_or_default();
            let mut vars = BTreeMap::new();
            vars.insert("instance_id".into(), i.id.clone());
            vars.insert("private_ip".into(), i.private_ip.clone().unwrap_or_default());
            vars.insert("public_ip".into(), i.public_ip.clone().unwrap_or_default());
            if reach.connection == Connection::Ssh {
                // Host keys are recorded under the instance id: AWS reuses addresses, never ids.
                let (k, v) = crate::ansible::ssh::host_key_alias(&i.id);
                vars.insert(k, v);
            }
            let name_tag = i.tag(crate::names::tags::NAME).unwrap_or("host");
            let host = Host {
                name: format!("{name_tag}-{}", i.id),
                address,
                vars,
            };
            inv.groups.entry(i.group().to_string()).or_default().push(host);
        }
        inv.vars.insert("ansible_user".into(), reach.user.clone());
        inv.vars
            .insert("ansible_python_interpreter".into(), reach.python.clone());
        inv.vars.insert("ansible_port".into(), reach.ssh_port.to_string());
        if reach.connection == Connection::Local {
            inv.vars.insert("ansible_connection".into(), "local".into());
        }
        inv
    }

    pub fn hosts_in(&self, group: &str) -> &[Host] {
        self.groups.get(group).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The inventory as JSON, which Ansible's YAML inventory plugin reads (`.json`).
    pub fn to_json(&self) -> String {
        let mut children = Map::new();
        for (group, hosts) in &self.groups {
            let mut hs = Map::new();
            for h in hosts {
                let mut vars: Map<String, Value> = h.vars.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
                vars.insert("ansible_host".into(), json!(h.address));
                hs.insert(h.name.clone(), Value::Object(vars));
            }
            children.insert(group.clone(), json!({ "hosts": hs }));
        }
        let inv = json!({ "all": { "vars": self.vars, "children": children } });
        serde_json::to_string_pretty(&inv).expect("inventory serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(id: &str, group: &str) -> InstanceInfo {
        InstanceInfo {
            id: id.into(),
            state: "running".into(),
            instance_type: "t3.small".into(),
            public_ip: Some("1.2.3.4".into()),
            private_ip: Some("10.0.0.4".into()),
            public_dns: None,
            launched: None,
            tags: [("Name", format!("argos-staging-{group}")), ("Group", group.to_string())]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }
    }

    #[test]
    fn groups_by_tag_and_picks_the_address() {
        let reach = Reach {
            connection: Connection::Ssh,
            address: AddressKind::Private,
            user: "ubuntu".into(),
            python: "/usr/bin/python3".into(),
            ssh_port: 22,
        };
        let inv = Inventory::from_instances(&[instance("i-1", "api"), instance("i-2", "knowledge")], &reach);
        assert_eq!(inv.hosts_in("api")[0].name, "argos-staging-api-i-1");
        assert_eq!(inv.hosts_in("api")[0].address, "10.0.0.4");
        assert!(inv.hosts_in("front").is_empty());
        let v: Value = serde_json::from_str(&inv.to_json()).unwrap();
        assert_eq!(
            v["all"]["children"]["knowledge"]["hosts"]["argos-staging-knowledge-i-2"]["ansible_host"],
            "10.0.0.4"
        );
        assert!(v["all"]["vars"].get("ansible_connection").is_none());
        assert_eq!(
            v["all"]["children"]["api"]["hosts"]["argos-staging-api-i-1"]["ansible_ssh_extra_args"],
            "-o HostKeyAlias=i-1"
        );
    }
}
