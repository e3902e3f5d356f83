//! Who may reach what: pure access decisions, no I/O, no async.
//!
//! The proxy calls [`decide`] before it logs in to a node: rules grant
//! (group → targets → logins), targets the break-glass selector covers need
//! an active grant with a valid reason, and the answer carries the limits,
//! the recording and alert flags, and an explanation a human can read.
//! Every channel request afterwards is checked against the [`Access`] that
//! decision returned, so there is no path around it.

mod breakglass;
mod command;
mod destination;
pub mod glob;
pub mod kube;
mod lint;
mod rules;
mod selector;

use std::collections::BTreeMap;
use std::time::Duration;

pub use breakglass::{BreakGlass, TICKET_MAX, TicketRule, WatchRule, is_unsafe};
pub use command::classify_command;
pub use destination::{Destination, HostPattern, Requested};
pub use lint::{Lint, lint};
pub use rules::{Kind, Rule};
pub use selector::Selector;

/// The proven user, as the directory describes them.
#[derive(Debug, Clone)]
pub struct Identity<'a> {
    pub user: &'a str,
    /// Group names (CN), nesting resolved.
    pub groups: &'a [String],
    /// Group DNs, nesting resolved.
    pub group_dns: &'a [String],
    /// An emergency account (directory down): not bound by group rules,
    /// always break-glass.
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
    /// The accounts the bastion may use on the node: a ceiling for every rule.
    pub logins: &'a [String],
    /// Ceiling for `-L` / `-D`, whatever the rules say.
    pub allow_local_forwarding: bool,
    /// Ceiling for `-R`, whatever the rules say.
    pub allow_remote_forwarding: bool,
}

/// A break-glass grant as the state store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub id: String,
    pub user: String,
    /// Target names the grant is for.
    pub targets: Vec<String>,
    pub reason: String,
    pub ticket: Option<String>,
    /// Unix seconds; the grant is active in `[starts_at, ends_at)`.
    pub starts_at: i64,
    pub ends_at: i64,
}

/// All the rules of a bastion.
#[derive(Debug, Clone)]
pub struct Policy {
    pub rules: Vec<Rule>,
    pub break_glass: BreakGlass,
    /// The server's ceilings (`server.max_session`, `server.idle_timeout`).
    pub max_session: Duration,
    pub idle_timeout: Duration,
}

/// What a channel asks to do on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    Shell,
    /// A command, as the client sent it.
    Exec(&'a str),
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

/// The answer to "may this user log in to this target as this login".
#[derive(Debug, Clone)]
pub struct Decision {
    pub verdict: Verdict,
    /// The rule chain that led there, one line each, for logs and `policy explain`.
    pub explanation: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum Verdict {
    Allow(Access),
    /// Rules grant the target but it is break-glass only: a reason (and a
    /// ticket when `ticket` is set) must be stated first.
    NeedsReason {
        ticket: Option<String>,
    },
    /// The message the user reads.
    Deny(String),
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self.verdict, Verdict::Allow(_))
    }

    pub fn access(&self) -> Option<&Access> {
        match &self.verdict {
            Verdict::Allow(a) => Some(a),
            _ => None,
        }
    }
}

/// What an allowed session may do, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub login: String,
    /// Names of the rules that granted it.
    pub rules: Vec<String>,
    kinds: Vec<Kind>,
    local_forward: Vec<Destination>,
    remote_forward: Vec<Destination>,
    allow_local_forwarding: bool,
    allow_remote_forwarding: bool,
    pub limits: Limits,
    /// Set when this is break-glass access.
    pub break_glass: Option<BreakGlassUse>,
    /// Record keystrokes as well as output.
    pub record_input: bool,
    /// Alert (webhooks, audit) when the session starts.
    pub alert: bool,
}

/// The tightest limits of everything that granted the access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_session: Duration,
    pub idle_timeout: Duration,
}

/// The grant a break-glass session runs under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakGlassUse {
    pub grant_id: String,
    /// Unix seconds: the session is closed then.
    pub ends_at: i64,
}

impl Access {
    /// Checks one channel request; the error is what the user reads.
    pub fn check(&self, request: &Request<'_>) -> Result<(), String> {
        let kind_allowed = |k: Kind| self.kinds.contains(&k);
        match request {
            Request::Shell => kind_allowed(Kind::Shell)
                .then_some(())
                .ok_or_else(|| "an interactive shell is not allowed here".to_string()),
            Request::Exec(command) => {
                let kind = classify_command(command);
                if kind_allowed(Kind::Exec) || (kind != Kind::Exec && kind_allowed(kind)) {
                    Ok(())
                } else {
                    Err(format!("running {} is not allowed here", describe(kind)))
                }
            }
            Request::Subsystem("sftp") => kind_allowed(Kind::Sftp)
                .then_some(())
                .ok_or_else(|| "sftp (and scp over sftp) is not allowed here".to_string()),
            Request::Subsystem(name) => Err(format!("subsystem {name} is not relayed")),
            Request::LocalForward { host, port } => {
                if self.allow_local_forwarding && self.local_forward.iter().any(|d| d.matches(host, *port)) {
                    Ok(())
                } else {
                    Err(format!("port forwarding to {host}:{port} is not allowed"))
                }
            }
            Request::RemoteForward { address, port } => {
                if self.allow_remote_forwarding && self.remote_forward.iter().any(|d| d.matches(address, *port)) {
                    Ok(())
                } else {
                    Err(format!("remote forwarding of {address}:{port} is not allowed"))
                }
            }
            Request::AgentForward => Err("agent forwarding is off: the bastion never relays an agent".into()),
            Request::X11Forward => Err("X11 forwarding is off".into()),
        }
    }
}

fn describe(kind: Kind) -> &'static str {
    match kind {
        Kind::Scp => "scp",
        Kind::Rsync => "rsync",
        _ => "commands",
    }
}

/// Decides whether `who` may log in to `target` as `login` at `now` (unix
/// seconds), given the user's break-glass `grants`. Deny unless a rule (or
/// the emergency-account clause) grants; break-glass targets and emergency
/// accounts additionally need an active grant whose reason is valid.
pub fn decide(
    policy: &Policy,
    who: &Identity<'_>,
    target: &Target<'_>,
    login: &str,
    grants: &[Grant],
    now: i64,
) -> Decision {
    let mut why = Vec::new();
    let denied = format!("access to {} as {login} is not granted", target.name);
    if !target.logins.iter().any(|l| l == login) {
        why.push(format!(
            "target {} lists the logins {}; {login} is not one of them",
            target.name,
            target.logins.join(", ")
        ));
        return Decision {
            verdict: Verdict::Deny(denied),
            explanation: why,
        };
    }

    // Rules (or the emergency clause) that grant this login.
    let mut granting: Vec<&Rule> = Vec::new();
    let emergency_rule;
    if who.emergency {
        emergency_rule = Rule {
            local_forward: if target.allow_local_forwarding {
                vec![Destination::parse("*").expect("valid")]
            } else {
                vec![]
            },
            remote_forward: if target.allow_remote_forwarding {
                vec![Destination::parse("*").expect("valid")]
            } else {
                vec![]
            },
            ..Rule::new("emergency account", vec![], vec![], vec!["*".into()])
        };
        why.push(format!(
            "{} is an emergency account: every target, always break-glass",
            who.user
        ));
        granting.push(&emergency_rule);
    } else {
        for rule in policy.rules.iter().filter(|r| r.selects(target)) {
            if !rule.covers_identity(who) {
                why.push(format!(
                    "{} selects {} but {} is in none of its groups ({})",
                    rule.name,
                    target.name,
                    who.user,
                    rule.groups_text()
                ));
            } else if !rule.allows_login(target, login) {
                why.push(format!(
                    "{} selects {} for {} but not as {login} (logins: {})",
                    rule.name,
                    target.name,
                    who.user,
                    rule.logins.join(", ")
                ));
            } else {
                why.push(format!(
                    "{} grants {login} on {} to {} (groups: {}; allows {})",
                    rule.name,
                    target.name,
                    who.user,
                    rule.groups_text(),
                    rule.allow.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
                ));
                granting.push(rule);
            }
        }
    }
    if granting.is_empty() {
        why.push(format!(
            "no rule grants {login} on {} to {}: denied",
            target.name, who.user
        ));
        return Decision {
            verdict: Verdict::Deny(denied),
            explanation: why,
        };
    }

    let mut limits = Limits {
        max_session: policy.max_session,
        idle_timeout: policy.idle_timeout,
    };
    for rule in &granting {
        if let Some(m) = rule.max_session {
            limits.max_session = limits.max_session.min(m);
        }
        if let Some(i) = rule.idle_timeout {
            limits.idle_timeout = limits.idle_timeout.min(i);
        }
    }

    let needs_break_glass = who.emergency || policy.break_glass.covers(target);
    let mut break_glass = None;
    if needs_break_glass {
        if !who.emergency {
            why.push(format!(
                "{} matches the break-glass selector ({}): a stated reason is required",
                target.name,
                policy
                    .break_glass
                    .selector
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let active = grants
            .iter()
            .filter(|g| g.user == who.user && g.targets.iter().any(|t| t == target.name))
            .filter(|g| g.starts_at <= now && now < g.ends_at)
            .filter(|g| policy.break_glass.check_reason(&g.reason, g.ticket.as_deref()).is_ok())
            .max_by_key(|g| g.ends_at);
        match active {
            None => {
                why.push(format!(
                    "no active break-glass grant for {} on {}",
                    who.user, target.name
                ));
                return Decision {
                    verdict: Verdict::NeedsReason {
                        ticket: policy.break_glass.ticket.as_ref().map(|t| t.pattern.clone()),
                    },
                    explanation: why,
                };
            }
            Some(g) => {
                let left = Duration::from_secs((g.ends_at - now).max(0) as u64);
                why.push(format!(
                    "break-glass grant {} is active for {} more seconds (reason: {:?})",
                    g.id,
                    left.as_secs(),
                    g.reason
                ));
                limits.max_session = limits.max_session.min(left);
                break_glass = Some(BreakGlassUse {
                    grant_id: g.id.clone(),
                    ends_at: g.ends_at,
                });
            }
        }
    }

    let record_input = needs_break_glass || granting.iter().any(|r| r.record_input);
    let mut kinds: Vec<Kind> = granting.iter().flat_map(|r| r.allow.iter().copied()).collect();
    kinds.sort();
    kinds.dedup();
    why.push(format!(
        "allowed: max session {} s, idle timeout {} s{}{}",
        limits.max_session.as_secs(),
        limits.idle_timeout.as_secs(),
        if record_input { ", keystrokes recorded" } else { "" },
        if needs_break_glass { ", alerted" } else { "" },
    ));
    Decision {
        verdict: Verdict::Allow(Access {
            login: login.to_string(),
            rules: granting.iter().map(|r| r.name.clone()).collect(),
            kinds,
            local_forward: granting.iter().flat_map(|r| r.local_forward.iter().cloned()).collect(),
            remote_forward: granting.iter().flat_map(|r| r.remote_forward.iter().cloned()).collect(),
            allow_local_forwarding: target.allow_local_forwarding,
            allow_remote_forwarding: target.allow_remote_forwarding,
            limits,
            break_glass,
            record_input,
            alert: needs_break_glass,
        }),
        explanation: why,
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
mod tests;

#[cfg(test)]
mod kube_tests;
