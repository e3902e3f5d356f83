//! The `[audit]` section: where the hash-chained audit trail is written,
//! and whether it is also sent to stdout or syslog.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    file: Option<Spanned<String>>,
    #[serde(default)]
    stdout: bool,
    #[serde(default)]
    syslog: bool,
    syslog_socket: Option<Spanned<String>>,
}

/// Where the audit trail goes (`[audit]`).
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// The hash-chained JSON-lines file.
    pub file: PathBuf,
    /// Also print each event on stdout.
    pub stdout: bool,
    /// Also send each event to syslog through this socket (`syslog = true`).
    pub syslog: Option<PathBuf>,
}

pub(super) fn parse_audit(
    raw: Option<&Spanned<RawAudit>>,
    base_dir: &Path,
    path: &dyn Fn(&Spanned<String>) -> PathBuf,
) -> AuditConfig {
    let default = base_dir.join("audit/audit.jsonl");
    match raw.map(|r| r.get_ref()) {
        None => AuditConfig {
            file: default,
            stdout: false,
            syslog: None,
        },
        Some(r) => AuditConfig {
            file: r.file.as_ref().map(path).unwrap_or(default),
            stdout: r.stdout,
            syslog: r.syslog.then(|| {
                r.syslog_socket
                    .as_ref()
                    .map(path)
                    .unwrap_or_else(|| PathBuf::from("/dev/log"))
            }),
        },
    }
}
