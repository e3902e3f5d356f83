//! Break-glass at the edges: reads grants for a decision, creates a grant
//! once a reason passed the policy's checks, and audits and alerts it.
//! The decisions themselves are in the pure `policy` crate.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use tracing::{error, warn};

use crate::config::Target;
use crate::context::Bastion;
use crate::directory::Identity;
use crate::state::{GrantRecord, NewGrant};
use crate::time::{now, rfc3339};

/// Decides a login with the user's active grants from the state store. A
/// store that cannot be read counts as "no grant" (fail closed).
pub fn decide_login(bastion: &Bastion, identity: &Identity, target: &Target, login: &str) -> policy::Decision {
    let now = now();
    let grants = match bastion.state.active_grants(&identity.user, now) {
        Ok(g) => g.iter().map(GrantRecord::to_policy).collect(),
        Err(e) => {
            error!(user = %identity.user, error = %format!("{e:#}"), "cannot read break-glass grants; none counted");
            vec![]
        }
    };
    policy::decide(
        &bastion.config.policy,
        &identity.as_policy(),
        &target.as_policy(),
        login,
        &grants,
        now,
    )
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
    let body = json!({
        "event": "breakglass.session_started",
        "grant": grant_id,
        "session": session,
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
