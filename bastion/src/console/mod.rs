//! The auditor's console: what auditors, reviewers and users do with
//! recordings and break-glass grants, the same for every door — the host CLI
//! (`bastion sessions …`), SSH (`ssh bastion sessions …`) and the browser.
//!
//! A [`Viewer`] is who asks and with which [`Role`]: an auditor sees every
//! session, anyone else only their own, and a session they may not see is
//! answered exactly like one that does not exist. Every action is audited
//! (`console.*`: who, through which door, what, which session). What is shown
//! comes from the write-once store; the state store only keeps an index.

mod live;
mod query;
pub mod text;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use recorder::store::Store;

use crate::access::Role;
use crate::audit::AuditLog;
use crate::config::Config;
use crate::state::StateStore;

pub use live::{REASON_MAX, Terminal, Watched, running_rows, terminal_event, terminate, watch};
pub use query::{Filter, MAX_PAGE, SearchHit, VerifyOutcome};

/// `--since`/`--until` and the browser's date filters: a time
/// (`2026-12-01T10:00:00Z`, `2026-12-01 10:00`, `2026-12-01`) or a duration
/// back from `now` (`2d`, `12h`). Pure.
pub fn parse_when(text: &str, now: i64) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(d) = humantime::parse_duration(text) {
        return Ok(now - d.as_secs() as i64);
    }
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_string()
    };
    humantime::parse_rfc3339_weak(&full)
        .map(crate::time::unix)
        .map_err(|_| {
            format!(
                "`{}` is neither a time (2026-12-01T10:00:00Z) nor a duration (2d, 12h)",
                recorder::display::escape(text)
            )
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn when_is_a_time_or_a_duration_back() {
        assert_eq!(super::parse_when("2h", 10_000), Ok(10_000 - 7_200));
        assert_eq!(super::parse_when("1970-01-02", 0), Ok(86_400));
        assert_eq!(super::parse_when("1970-01-01T00:01:00Z", 0), Ok(60));
        assert!(super::parse_when("yesterday", 0).unwrap_err().contains("neither"));
    }
}

/// Where the console reads from and what it writes its audit trail to.
pub struct Reader {
    pub store: Arc<dyn Store>,
    pub state: Arc<StateStore>,
    /// Verifies manifest signatures.
    pub key: ed25519_dalek::VerifyingKey,
    pub audit: Arc<AuditLog>,
    /// The audit log's file, read to find sessions the store lost.
    pub audit_file: PathBuf,
}

impl Reader {
    /// For a running bastion (SSH and browser doors): its own store, state and audit trail.
    pub fn of(bastion: &crate::context::Bastion) -> Reader {
        Reader {
            store: bastion.store.clone(),
            state: bastion.state.clone(),
            key: bastion.recording_key,
            audit: bastion.audit.clone(),
            audit_file: bastion.config.audit.file.clone(),
        }
    }

    /// For the host CLI: opens the store, the state store and the audit log the config names.
    pub async fn open(config: &Config) -> Result<Reader> {
        let mut audit = AuditLog::open(&config.audit.file, false)?;
        if let Some(socket) = &config.audit.syslog {
            audit = audit.with_syslog(socket);
        }
        Ok(Reader {
            store: crate::recording::open_store(config).await?,
            state: Arc::new(crate::context::open_state(config)?),
            key: crate::recording::verifying_key(&config.server.recording_key)?,
            audit: Arc::new(audit),
            audit_file: config.audit.file.clone(),
        })
    }
}

/// The door a console action came through, for the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// `bastion sessions …` on the bastion host (an operator with a shell there).
    Host,
    Ssh,
    Web,
}

impl Door {
    pub fn as_str(self) -> &'static str {
        match self {
            Door::Host => "host",
            Door::Ssh => "ssh",
            Door::Web => "web",
        }
    }
}

/// Who asks, with which role, through which door.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub user: String,
    pub role: Role,
    pub door: Door,
    /// May end running sessions (`[console] terminators`).
    pub terminates: bool,
}

impl Viewer {
    /// An operator on the bastion host: they can read the store directly
    /// anyway, so the console does not pretend to limit them.
    pub fn host(user: String) -> Viewer {
        Viewer {
            user,
            role: Role::Reviewer,
            door: Door::Host,
            terminates: false,
        }
    }

    fn sees(&self, session_user: &str) -> bool {
        self.role.sees_everyone() || self.user == session_user
    }
}

impl Reader {
    /// Audits a view the caller serves itself (the browser's session page).
    pub fn audit_view(&self, viewer: &Viewer, action: &str, session: &str) -> Result<()> {
        self.audited(viewer, action, serde_json::json!({"session": session}))
    }

    /// `console.ACTION` in the audit trail; a trail that cannot be written
    /// refuses the action (an auditor's reading must leave a trace).
    fn audited(&self, viewer: &Viewer, action: &str, fields: serde_json::Value) -> Result<()> {
        let mut entry = serde_json::json!({
            "viewer": viewer.user,
            "role": viewer.role.as_str(),
            "door": viewer.door.as_str(),
        });
        if let (Some(e), serde_json::Value::Object(f)) = (entry.as_object_mut(), fields) {
            e.extend(f);
        }
        self.audit.try_record(&format!("console.{action}"), entry)?;
        Ok(())
    }
}
