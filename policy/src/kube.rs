//! Kubernetes credentials: which Kubernetes groups a user's directory
//! groups map to on a cluster, which of them need a break-glass grant, and
//! how long a client certificate may live. The bastion signs; this decides.
//!
//! A cluster's mappings are the only way to credentials: a user none of
//! them covers gets nothing. Mappings marked `break_glass` (the only way to
//! hand out `system:masters`) count only under an active grant for
//! `kube:CLUSTER` whose reason still passes the checks, and the certificate
//! then ends when the grant does.

use std::time::Duration;

use crate::{BreakGlass, BreakGlassUse, Grant, Identity};

/// The shortest certificate the bastion signs: shorter ones expire in
/// transit on a slow link.
pub const MIN_TTL: Duration = Duration::from_secs(10);

/// Kubernetes groups that bypass RBAC: a mapping may hand them out only
/// under break-glass.
pub const PRIVILEGED_GROUPS: &[&str] = &["system:masters"];

/// A cluster the bastion issues credentials for.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    pub mappings: Vec<GroupMapping>,
    /// What `kubeconfig CLUSTER` gets without `--ttl`.
    pub default_ttl: Duration,
    /// The longest `--ttl` allowed.
    pub max_ttl: Duration,
}

/// Directory groups → Kubernetes groups.
#[derive(Debug, Clone)]
pub struct GroupMapping {
    /// For explanations: `clusters[0].groups[1]`.
    pub name: String,
    /// Directory groups, CN or DN, compared without case; `*` is everyone.
    pub from: Vec<String>,
    /// Kubernetes groups (the certificate's `O=`).
    pub to: Vec<String>,
    /// Counts only under an active break-glass grant for `kube:CLUSTER`.
    pub break_glass: bool,
}

impl GroupMapping {
    /// Whether this mapping applies to `who`. Emergency accounts have no
    /// directory groups and are always break-glass: they are covered by
    /// every break-glass mapping and by no other.
    pub fn covers(&self, who: &Identity<'_>) -> bool {
        if who.emergency {
            return self.break_glass;
        }
        self.from.iter().any(|g| g == "*" || who.in_group(g))
    }

    /// The privileged groups this mapping hands out.
    pub fn privileged(&self) -> impl Iterator<Item = &str> {
        self.to
            .iter()
            .map(String::as_str)
            .filter(|g| PRIVILEGED_GROUPS.iter().any(|p| p.eq_ignore_ascii_case(g)))
    }
}

/// The break-glass target name that stands for a cluster in grants.
pub fn grant_target(cluster: &str) -> String {
    format!("kube:{cluster}")
}

/// The answer to "may this user have a credential for this cluster".
#[derive(Debug, Clone)]
pub struct KubeDecision {
    pub verdict: KubeVerdict,
    /// How the answer came about, one line each.
    pub explanation: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeVerdict {
    Issue(Credential),
    /// The message the user reads.
    Deny(String),
}

/// What to sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// Kubernetes groups, sorted, without duplicates; never empty.
    pub groups: Vec<String>,
    /// How long the certificate lives.
    pub ttl: Duration,
    /// Set when break-glass groups are included.
    pub break_glass: Option<BreakGlassUse>,
    /// The TTL was cut to the grant's end.
    pub ttl_capped_by_grant: bool,
    /// Break-glass mappings cover the user but no grant is active, so their
    /// groups are left out.
    pub break_glass_available: bool,
}

/// Decides a credential for `who` on `cluster`. `asked_ttl` is `--ttl`.
pub fn decide_kube(
    cluster: &Cluster,
    break_glass: &BreakGlass,
    who: &Identity<'_>,
    grants: &[Grant],
    asked_ttl: Option<Duration>,
    now: i64,
) -> KubeDecision {
    let mut explanation = Vec::new();
    let deny = |explanation: Vec<String>, message: String| KubeDecision {
        verdict: KubeVerdict::Deny(message),
        explanation,
    };
    let mut ttl = asked_ttl.unwrap_or(cluster.default_ttl).min(cluster.max_ttl);
    if let Some(asked) = asked_ttl {
        if asked > cluster.max_ttl {
            return deny(
                explanation,
                format!(
                    "--ttl {} is more than cluster {}'s maximum of {}",
                    human(asked),
                    cluster.name,
                    human(cluster.max_ttl)
                ),
            );
        }
        if asked < MIN_TTL {
            return deny(explanation, format!("--ttl must be at least {}", human(MIN_TTL)));
        }
    }

    let target = grant_target(&cluster.name);
    let grant = grants.iter().find(|g| {
        g.user == who.user
            && g.starts_at <= now
            && now < g.ends_at
            && g.targets.contains(&target)
            // A grant about to end gives no certificate worth having.
            && g.ends_at - now >= MIN_TTL.as_secs() as i64
            && break_glass.check_reason(&g.reason, g.ticket.as_deref()).is_ok()
    });

    let mut groups: Vec<String> = Vec::new();
    let mut used_grant = false;
    let mut break_glass_available = false;
    for m in &cluster.mappings {
        if !m.covers(who) {
            continue;
        }
        if m.break_glass {
            match grant {
                Some(g) => {
                    explanation.push(format!(
                        "{}: {} under break-glass grant {}",
                        m.name,
                        m.to.join(", "),
                        g.id
                    ));
                    used_grant = true;
                }
                None => {
                    explanation.push(format!(
                        "{}: {} needs an active break-glass grant for {target}; none",
                        m.name,
                        m.to.join(", ")
                    ));
                    break_glass_available = true;
                    continue;
                }
            }
        } else {
            explanation.push(format!("{}: {}", m.name, m.to.join(", ")));
        }
        groups.extend(m.to.iter().cloned());
    }
    groups.sort();
    groups.dedup();

    if groups.is_empty() {
        let message = if break_glass_available {
            format!(
                "on cluster {} your groups map to Kubernetes groups only under break-glass; \
                 run `breakglass {target} --reason TEXT{}` first",
                cluster.name,
                if break_glass.ticket.is_some() {
                    " --ticket ID"
                } else {
                    ""
                }
            )
        } else {
            format!("your groups map to no Kubernetes group on cluster {}", cluster.name)
        };
        explanation.push("no Kubernetes group: refused".into());
        return deny(explanation, message);
    }

    let mut ttl_capped_by_grant = false;
    let break_glass_use = match grant.filter(|_| used_grant) {
        Some(g) => {
            let left = Duration::from_secs((g.ends_at - now) as u64);
            if left < ttl {
                ttl = left;
                ttl_capped_by_grant = true;
                explanation.push(format!("TTL cut to the grant's end: {}", human(ttl)));
            }
            Some(BreakGlassUse {
                grant_id: g.id.clone(),
                ends_at: g.ends_at,
            })
        }
        None => None,
    };
    explanation.push(format!("issue: groups {}, TTL {}", groups.join(", "), human(ttl)));
    KubeDecision {
        verdict: KubeVerdict::Issue(Credential {
            groups,
            ttl,
            break_glass: break_glass_use,
            ttl_capped_by_grant,
            break_glass_available: break_glass_available && !used_grant,
        }),
        explanation,
    }
}

/// `1h`, `15m`, `19m58s`, `90s`: short and exact.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, sec) = (s / 3600, s % 3600 / 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if sec > 0 || out.is_empty() {
        out.push_str(&format!("{sec}s"));
    }
    out
}
