//! Who may reach what: pure access decisions, no I/O, no async.
//!
//! The proxy asks [`decide`] before it logs in to a node and before every
//! channel request it relays; the answer carries a reason a human can read.
//! The policy-and-break-glass work grows rules, grants and limits here.

use std::collections::BTreeMap;

/// The proven user, as the directory describes them.
#[derive(Debug, Clone)]
pub struct Identity<'a> {
    pub user: &'a str,
    /// Group names (CN), nesting resolved.
    pub groups: &'a [String],
    /// Group DNs, nesting resolved.
    pub group_dns: &'a [String],
    /// An emergency account (directory down): not bound by group rules.
    pub emergency: bool,
}

impl Identity<'_> {
    /// Membership by CN or DN, compared without case as LDAP does.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups
            .iter()
            .chain(self.group_dns.iter())
            .any(|g| g.eq_ignore_ascii_case(group))
    }
}

/// A node and what its configuration allows.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub logins: &'a [String],
    pub allow_local_forwarding: bool,
    pub allow_remote_forwarding: bool,
    /// Groups whose members may log in; empty: any proven user.
    pub groups: &'a [String],
}

/// What the user asks to do on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    /// Log in as `login` (checked once per node connection).
    Login(&'a str),
    Shell,
    Exec,
    Subsystem(&'a str),
    /// `-L` / `-D` through the node.
    LocalForward {
        host: &'a str,
        port: u32,
    },
    /// `-R` on the node.
    RemoteForward {
        address: &'a str,
        port: u32,
    },
    AgentForward,
    X11Forward,
}

/// The outcome, with the reason shown to the user (on deny) and logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(String),
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow)
    }
}

/// Decides one request. Deny unless something allows it.
pub fn decide(identity: &Identity<'_>, target: &Target<'_>, request: &Request<'_>) -> Decision {
    match request {
        Request::Login(login) => {
            let in_a_group =
                target.groups.is_empty() || identity.emergency || target.groups.iter().any(|g| identity.in_group(g));
            if !in_a_group {
                Decision::Deny(format!(
                    "{} is in none of the groups that may reach {} ({})",
                    identity.user,
                    target.name,
                    target.groups.join(", ")
                ))
            } else if target.logins.iter().any(|l| l == login) {
                Decision::Allow
            } else {
                Decision::Deny(format!(
                    "{} may not log in as {login} on {} (allowed logins: {})",
                    identity.user,
                    target.name,
                    target.logins.join(", ")
                ))
            }
        }
        Request::Shell | Request::Exec => Decision::Allow,
        Request::Subsystem(name) => {
            if *name == "sftp" {
                Decision::Allow
            } else {
                Decision::Deny(format!("subsystem {name} is not relayed"))
            }
        }
        Request::LocalForward { host, port } => {
            if target.allow_local_forwarding {
                Decision::Allow
            } else {
                Decision::Deny(format!(
                    "port forwarding to {host}:{port} through {} is not allowed",
                    target.name
                ))
            }
        }
        Request::RemoteForward { address, port } => {
            if target.allow_remote_forwarding {
                Decision::Allow
            } else {
                Decision::Deny(format!(
                    "remote forwarding of {address}:{port} on {} is not allowed",
                    target.name
                ))
            }
        }
        Request::AgentForward => Decision::Deny("agent forwarding is off: the bastion never relays an agent".into()),
        Request::X11Forward => Decision::Deny("X11 forwarding is off".into()),
    }
}

/// Whether an environment variable may be passed to the node. Patterns are
/// exact names or a prefix followed by `*` (e.g. `LC_*`).
pub fn env_allowed(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => p == name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target<'a>(labels: &'a BTreeMap<String, String>, logins: &'a [String]) -> Target<'a> {
        Target {
            name: "node-1",
            labels,
            logins,
            allow_local_forwarding: true,
            allow_remote_forwarding: false,
            groups: &[],
        }
    }

    fn id<'a>(user: &'a str, groups: &'a [String]) -> Identity<'a> {
        Identity {
            user,
            groups,
            group_dns: &[],
            emergency: false,
        }
    }

    #[test]
    fn target_groups_restrict_logins_by_cn_or_dn() {
        let labels = BTreeMap::new();
        let logins = vec!["root".to_string()];
        let allowed = vec!["k8s-ops".to_string()];
        let t = Target {
            groups: &allowed,
            ..target(&labels, &logins)
        };
        let none: Vec<String> = vec![];
        assert!(!decide(&id("bob", &none), &t, &Request::Login("root")).is_allowed());
        let ops = vec!["K8S-OPS".to_string()];
        assert!(decide(&id("alice", &ops), &t, &Request::Login("root")).is_allowed());
        let dns = vec!["CN=k8s-ops,OU=Groups,DC=corp,DC=test".to_string()];
        let by_dn = vec!["CN=k8s-ops,OU=Groups,DC=corp,DC=test".to_string()];
        let t2 = Target {
            groups: &by_dn,
            ..target(&labels, &logins)
        };
        let alice = Identity {
            user: "alice",
            groups: &none,
            group_dns: &dns,
            emergency: false,
        };
        assert!(decide(&alice, &t2, &Request::Login("root")).is_allowed());
        let emergency = Identity {
            emergency: true,
            ..id("sos", &none)
        };
        assert!(decide(&emergency, &t, &Request::Login("root")).is_allowed());
    }

    #[test]
    fn login_must_be_listed() {
        let labels = BTreeMap::new();
        let logins = vec!["root".to_string()];
        let groups = vec![];
        let id = id("alice", &groups);
        let t = target(&labels, &logins);
        assert!(decide(&id, &t, &Request::Login("root")).is_allowed());
        let d = decide(&id, &t, &Request::Login("bob"));
        assert_eq!(
            d,
            Decision::Deny("alice may not log in as bob on node-1 (allowed logins: root)".into())
        );
    }

    #[test]
    fn agent_and_x11_are_always_refused() {
        let labels = BTreeMap::new();
        let logins = vec!["root".to_string()];
        let groups = vec![];
        let id = id("alice", &groups);
        let t = target(&labels, &logins);
        assert!(!decide(&id, &t, &Request::AgentForward).is_allowed());
        assert!(!decide(&id, &t, &Request::X11Forward).is_allowed());
        assert!(!decide(&id, &t, &Request::RemoteForward { address: "", port: 1 }).is_allowed());
        assert!(decide(&id, &t, &Request::LocalForward { host: "x", port: 1 }).is_allowed());
        assert!(!decide(&id, &t, &Request::Subsystem("netconf")).is_allowed());
    }

    #[test]
    fn env_patterns() {
        let p = vec!["LANG".to_string(), "LC_*".to_string()];
        assert!(env_allowed(&p, "LANG"));
        assert!(env_allowed(&p, "LC_ALL"));
        assert!(!env_allowed(&p, "LANGUAGE"));
        assert!(!env_allowed(&p, "LD_PRELOAD"));
        assert!(!env_allowed(&[], "LANG"));
    }
}
