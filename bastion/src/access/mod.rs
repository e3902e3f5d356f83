//! Access decisions at the edges: the pure `policy` crate decides, this
//! module gives it what the stores say.
//!
//! * [`decide_login`] and [`decide_kube`]: the policy with the user's active
//!   break-glass grants, read once per decision; a store that cannot be read
//!   counts as "no grant" (fail closed).
//! * [`fresh_identity`]: the user as the directory sees them now, for the
//!   live re-check of a connection and for each Kubernetes certificate.
//! * [`grant`]: a break-glass grant, once its reason passed the policy's
//!   checks, stored, audited and alerted; [`session_started`] under one.
//! * [`enrollment_gate`]: what a user in only to enroll TOTP may do.

mod enrollment;
mod roles;

pub use enrollment::{Step, enrollment_gate};
pub use roles::Role;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use tracing::{error, warn};

use crate::config::{Cluster, Target};
use crate::context::Bastion;
use crate::directory::{AccountState, DirError, Identity};
use crate::state::{GrantRecord, NewGrant};
use crate::time::{now, rfc3339};

/// The user's active grants, as the policy reads them. A store that cannot
/// be read counts as "no grant" (fail closed).
fn active_grants(bastion: &Bastion, identity: &Identity, now: i64) -> Vec<policy::Grant> {
    match bastion.state.active_grants(&identity.user, now) {
        Ok(g) => g.iter().map(GrantRecord::to_policy).collect(),
        Err(e) => {
            error!(user = %identity.user, error = %format!("{e:#}"), "cannot read break-glass grants; none counted");
            vec![]
        }
    }
}

/// Decides a login with the user's active grants; a user in only to enroll
/// TOTP reaches no target.
pub fn decide_login(bastion: &Bastion, identity: &Identity, target: &Target, login: &str) -> policy::Decision {
    if let Err(why) = enrollment_gate(identity, Step::Target) {
        return policy::Decision {
            verdict: policy::Verdict::Deny(why.into()),
            explanation: vec!["the user must enroll TOTP before reaching any target".into()],
        };
    }
    let now = now();
    let grants = active_grants(bastion, identity, now);
    policy::decide(
        &bastion.config.policy,
        &identity.as_policy(),
        &target.as_policy(),
        login,
        &grants,
        now,
    )
}

/// Decides a Kubernetes credential on `cluster` with the user's active grants.
pub fn decide_kube(
    bastion: &Bastion,
    identity: &Identity,
    cluster: &Cluster,
    asked_ttl: Option<Duration>,
    now: i64,
) -> policy::kube::KubeDecision {
    policy::kube::decide_kube(
        &cluster.policy,
        &bastion.config.policy.break_glass,
        &identity.as_policy(),
        &active_grants(bastion, identity, now),
        asked_ttl,
        now,
    )
}

/// What the directory says of a proven user now.
#[derive(Debug)]
pub enum Fresh {
    /// Still active: the identity with the directory's current groups.
    Current(Identity),
    /// No longer allowed in (gone, disabled, locked, expired): why.
    Revoked(String),
    /// The directory cannot be reached: why. Callers keep what they had,
    /// so that access works while the directory is down.
    Unavailable(String),
    /// No answer within the wait given.
    Slow,
}

/// Looks the user up again, waiting at most `wait` (if given). Emergency
/// accounts have no directory behind them and stay as they are.
pub async fn fresh_identity(bastion: &Bastion, identity: &Identity, wait: Option<Duration>) -> Fresh {
    if identity.emergency {
        return Fresh::Current(identity.clone());
    }
    let lookup = bastion.directory.lookup(&identity.user);
    let answer = match wait {
        Some(wait) => match tokio::time::timeout(wait, lookup).await {
            Ok(answer) => answer,
            Err(_) => return Fresh::Slow,
        },
        None => lookup.await,
    };
    match answer {
        Ok(u) if u.state == AccountState::Active => Fresh::Current(Identity {
            groups: u.groups,
            group_dns: u.group_dns,
            ..identity.clone()
        }),
        Ok(u) => Fresh::Revoked(format!("account {}", u.state.as_str())),
        Err(DirError::Unavailable(e)) => Fresh::Unavailable(e),
        Err(e) => Fresh::Revoked(e.to_string()),
    }
}

/// What an engineer asked for.
pub struct Ask<'a> {
    /// Target names, or `kube:CLUSTER` for a cluster's break-glass groups.
    pub targets: &'a [String],
    pub reason: &'a str,
    pub ticket: Option<&'a str>,
    pub duration: Duration,
    /// `prompt` or `command`.
    pub source: &'static str,
    pub client: SocketAddr,
}

/// Checks the reason and time box, stores the grant, audits and alerts.
/// The error is what the engineer reads.
pub async fn grant(bastion: &Bastion, identity: &Identity, ask: Ask<'_>) -> Result<GrantRecord, String> {
    let bg = &bastion.config.policy.break_glass;
    bg.check_reason(ask.reason, ask.ticket)?;
    bg.check_duration(ask.duration)?;
    let now = now();
    let new = NewGrant {
        user: identity.user.clone(),
        targets: ask.targets.to_vec(),
        reason: ask.reason.trim().to_string(),
        ticket: ask.ticket.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()),
        source: ask.source,
        client: ask.client.to_string(),
        starts_at: now,
        ends_at: now + ask.duration.as_secs() as i64,
    };
    let record = bastion.state.create_grant(&new, now).map_err(|e| {
        error!(user = %identity.user, error = %format!("{e:#}"), "cannot store a break-glass grant");
        "the grant cannot be stored right now; try again or call the on-call admin".to_string()
    })?;
    warn!(
        grant = %record.id, user = %record.user, targets = %record.targets.join(" "),
        ticket = record.ticket.as_deref().unwrap_or("-"), minutes = ask.duration.as_secs() / 60,
        source = ask.source, "break-glass access granted"
    );
    let body = json!({
        "event": "breakglass.granted",
        "grant": record.id,
        "user": record.user,
        "emergency_account": identity.emergency,
        "groups": identity.groups,
        "targets": record.targets,
        "reason": record.reason,
        "ticket": record.ticket,
        "source": record.source,
        "client": record.client,
        "starts_at": rfc3339(record.starts_at),
        "ends_at": rfc3339(record.ends_at),
        "bastion": crate::recording::hostname(),
    });
    bastion.audit.record("breakglass.granted", body.clone());
    bastion.alerter.alert(body).await;
    Ok(record)
}

/// Notes, audits and alerts a session starting under a grant.
pub async fn session_started(
    bastion: &Bastion,
    identity: &Identity,
    session: &str,
    target: &str,
    login: &str,
    grant_id: &str,
    client: SocketAddr,
) {
    if let Err(e) = bastion.state.grant_used(grant_id, session, target, login, now()) {
        error!(grant = grant_id, error = %format!("{e:#}"), "cannot note the session under the grant");
    }
    let watch = bastion.config.policy.break_glass.watch;
    let watch_url = match (watch, &bastion.config.console.url) {
        (policy::WatchRule::Off, _) | (_, None) => None,
        (_, Some(url)) => Some(format!("{url}/sessions/{session}/live")),
    };
    let body = json!({
        "event": "breakglass.session_started",
        "grant": grant_id,
        "session": session,
        "watch": watch.as_str(),
        "watch_url": watch_url,
        "user": identity.user,
        "emergency_account": identity.emergency,
        "target": target,
        "login": login,
        "client": client.to_string(),
        "bastion": crate::recording::hostname(),
    });
    bastion.audit.record("breakglass.session_started", body.clone());
    bastion.alerter.alert(body).await;
}
