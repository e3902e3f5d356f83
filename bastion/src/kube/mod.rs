//! The kubeconfig issuer at the edges: loads each cluster's client-signing
//! CA at start-up, and issues a credential after the `policy` crate said
//! yes: sign offline (the bastion never calls the API server, so this works
//! while the cluster is down), note it in the state store's issued list,
//! audit it, and hand it back for rendering.

pub mod admin;
pub mod render;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use serde_json::json;
use tracing::{error, info};

use crate::access::{Fresh, decide_kube, fresh_identity};
pub use crate::ca::kube::{ClientCa, ClusterKeys, IssuedCert, Issuers};
use crate::config::{Cluster, Config};
use crate::context::Bastion;
use crate::directory::Identity;
use crate::state::KubeIssued;
use crate::time::{now, rfc3339};

/// How the credential leaves the bastion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// Embedded in a kubeconfig.
    Kubeconfig,
    /// An `ExecCredential` for kubectl's exec plugin.
    Exec,
}

impl Form {
    pub fn as_str(self) -> &'static str {
        match self {
            Form::Kubeconfig => "kubeconfig",
            Form::Exec => "exec",
        }
    }
}

/// An issued credential, ready to render.
pub struct Issued {
    pub cert: IssuedCert,
    pub groups: Vec<String>,
    pub ttl: Duration,
    pub grant_id: Option<String>,
    /// Notes for the user (TTL cut by the grant, break-glass groups left out).
    pub notes: Vec<String>,
}

impl Issued {
    /// The notes as `bastion: …` lines for stderr.
    pub fn notes_text(&self) -> bytes::Bytes {
        bytes::Bytes::from(
            self.notes
                .iter()
                .map(|n| format!("bastion: {n}\n"))
                .collect::<String>()
                .into_bytes(),
        )
    }
}

/// How long issuing waits for the directory before it uses the groups the
/// connection has (from login or the last live re-check).
const DIRECTORY_WAIT: Duration = Duration::from_secs(3);

/// The user as the directory sees them now: over a shared (ControlMaster)
/// connection, `kube-credential` runs long after login, and a group taken
/// away must count at the next certificate, not at the next re-check. An
/// account no longer active is refused; a directory that cannot be reached
/// leaves the connection's groups (signing must work while things are down).
async fn current_identity(bastion: &Bastion, identity: &Identity) -> Result<Identity, String> {
    match fresh_identity(bastion, identity, Some(DIRECTORY_WAIT)).await {
        Fresh::Current(fresh) => Ok(fresh),
        Fresh::Revoked(reason) => Err(reason),
        Fresh::Unavailable(e) => {
            tracing::warn!(user = %identity.user, error = %e, "directory unavailable; issuing with the groups from login");
            Ok(identity.clone())
        }
        Fresh::Slow => {
            tracing::warn!(user = %identity.user, "directory slow; issuing with the groups from login");
            Ok(identity.clone())
        }
    }
}

/// Decides, signs, records and audits one credential for `identity` on
/// `cluster`. The error is what the user reads.
pub async fn issue(
    bastion: &Bastion,
    identity: &Identity,
    cluster: &Cluster,
    asked_ttl: Option<Duration>,
    form: Form,
    client: SocketAddr,
) -> Result<Issued, String> {
    let keys = bastion
        .kube
        .get(&cluster.name)
        .ok_or_else(|| format!("cluster {} is not available", cluster.name))?;
    let fresh = current_identity(bastion, identity).await?;
    let identity = &fresh;
    let now_unix = now();
    let decision = decide_kube(bastion, identity, cluster, asked_ttl, now_unix);
    let credential = match decision.verdict {
        policy::kube::KubeVerdict::Issue(c) => c,
        policy::kube::KubeVerdict::Deny(message) => {
            audit_denied(bastion, identity, &cluster.name, form, asked_ttl, &message, client);
            return Err(message);
        }
    };
    let cert = keys
        .ca
        .issue(&identity.user, &credential.groups, credential.ttl, SystemTime::now())
        .map_err(|e| {
            error!(cluster = %cluster.name, error = %format!("{e:#}"), "cannot sign a Kubernetes client certificate");
            format!(
                "the certificate for {} cannot be signed right now; try again, and if it persists tell the bastion operator (the service log says why)",
                cluster.name
            )
        })?;
    let grant_id = credential.break_glass.as_ref().map(|b| b.grant_id.clone());
    let record = KubeIssued {
        serial: cert.serial.clone(),
        cluster: cluster.name.clone(),
        user: identity.user.clone(),
        groups: credential.groups.clone(),
        issued_at: now_unix,
        not_before: cert.not_before,
        not_after: cert.not_after,
        form: form.as_str().into(),
        client: client.to_string(),
        grant_id: grant_id.clone(),
    };
    // Not listed, not issued: the list is what incident response relies on.
    bastion.state.record_kube_issued(&record).map_err(|e| {
        error!(error = %format!("{e:#}"), "cannot record an issued Kubernetes certificate; not issuing it");
        "the certificate cannot be recorded right now, so it is not issued; try again, and if it persists tell the bastion operator".to_string()
    })?;
    bastion.audit.record(
        "kube.issued",
        json!({
            "user": identity.user,
            "cluster": cluster.name,
            "serial": cert.serial,
            "groups": credential.groups,
            "ttl_secs": credential.ttl.as_secs(),
            "not_after": rfc3339(cert.not_after),
            "form": form.as_str(),
            "grant": grant_id,
            "factors": identity.factors,
            "client": client.to_string(),
        }),
    );
    info!(
        user = %identity.user, cluster = %cluster.name, serial = %cert.serial,
        groups = %credential.groups.join(","), ttl_secs = credential.ttl.as_secs(), form = form.as_str(),
        "Kubernetes certificate issued"
    );
    let mut notes = Vec::new();
    if credential.ttl_capped_by_grant && form == Form::Kubeconfig {
        notes.push(format!(
            "valid for {} only: the break-glass grant ends then",
            policy::kube::human(credential.ttl)
        ));
    }
    if credential.break_glass_available && form == Form::Kubeconfig {
        notes.push(format!(
            "more groups need break-glass: `breakglass {} --reason TEXT{}`",
            policy::kube::grant_target(&cluster.name),
            if bastion.config.policy.break_glass.ticket.is_some() {
                " --ticket ID"
            } else {
                ""
            }
        ));
    }
    Ok(Issued {
        cert,
        groups: credential.groups,
        ttl: credential.ttl,
        grant_id,
        notes,
    })
}

/// Audits a refused credential.
pub fn audit_denied(
    bastion: &Bastion,
    identity: &Identity,
    cluster: &str,
    form: Form,
    asked_ttl: Option<Duration>,
    reason: &str,
    client: SocketAddr,
) {
    bastion.audit.record(
        "kube.denied",
        json!({
            "user": identity.user,
            "cluster": cluster,
            "form": form.as_str(),
            "ttl_asked": asked_ttl.map(|t| t.as_secs()),
            "reason": reason,
            "client": client.to_string(),
        }),
    );
}

/// The answer for a cluster name that is not configured: the same as for a
/// cluster the user gets nothing on (no probing for names), audited. The
/// text is what the user reads on stderr.
pub fn unknown_cluster(bastion: &Bastion, identity: &Identity, name: &str, client: SocketAddr) -> String {
    audit_denied(
        bastion,
        identity,
        name,
        Form::Kubeconfig,
        None,
        "no such cluster",
        client,
    );
    format!(
        "bastion: your groups map to no Kubernetes group on cluster {}\n",
        recorder::display::escape(name)
    )
}

/// Where engineers reach the bastion with `ssh`: `server.public_address`,
/// else the listen address (the host name when it listens on all
/// addresses).
pub fn ssh_address(config: &Config) -> render::SshAddress {
    if let Some(a) = config
        .server
        .public_address
        .as_deref()
        .and_then(render::SshAddress::parse)
    {
        return a;
    }
    let listen = config.server.listen;
    let host = if listen.ip().is_unspecified() {
        crate::recording::hostname()
    } else {
        listen.ip().to_string()
    };
    render::SshAddress {
        host,
        port: Some(listen.port()).filter(|p| *p != 22),
    }
}
