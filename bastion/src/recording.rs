//! Recording at the bastion's edge: opens the configured write-once store,
//! turns the OpenSSH recording key into the recorder's signing key, and
//! starts the recording sink (recovering what a crash left in the spool).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use recorder::store::Store;
use recorder::store::s3::{S3Config, S3Store};
use recorder::store::worm::WormDir;
use recorder::{RecorderConfig, RecordingSink};
use tracing::{info, warn};

use crate::config::{Config, StoreConfig};

/// The recording signing key from the OpenSSH key file `ca init` made.
pub fn signing_key(path: &Path) -> Result<ed25519_dalek::SigningKey> {
    let key = crate::ca::read_private_key(path)?;
    let pair = key.key_data().ed25519().ok_or_else(|| {
        anyhow!(
            "{} is not an Ed25519 key; recordings are signed with Ed25519",
            path.display()
        )
    })?;
    Ok(ed25519_dalek::SigningKey::from_bytes(&pair.private.to_bytes()))
}

/// The key that verifies recordings: from `KEY.pub` (readable by auditors),
/// else derived from the private key.
pub fn verifying_key(path: &Path) -> Result<ed25519_dalek::VerifyingKey> {
    let public = path.with_extension("pub");
    if let Ok(line) = std::fs::read_to_string(&public) {
        let key = russh::keys::PublicKey::from_openssh(line.trim())
            .with_context(|| format!("parsing {}", public.display()))?;
        let ed = key
            .key_data()
            .ed25519()
            .ok_or_else(|| anyhow!("{} is not an Ed25519 key", public.display()))?;
        return ed25519_dalek::VerifyingKey::from_bytes(&ed.0).map_err(|e| anyhow!("{}: {e}", public.display()));
    }
    Ok(signing_key(path)?.verifying_key())
}

/// Opens the configured store. S3 credentials come from the configured
/// files, else from the default AWS chain.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>> {
    Ok(match &config.recording.store {
        StoreConfig::Worm { dir } => {
            Arc::new(WormDir::new(dir).with_context(|| format!("opening the recording directory {}", dir.display()))?)
        }
        StoreConfig::S3(s) => {
            let read = |p: &Option<std::path::PathBuf>| -> Result<Option<String>> {
                match p {
                    None => Ok(None),
                    Some(p) => Ok(Some(
                        std::fs::read_to_string(p)
                            .with_context(|| format!("reading {}", p.display()))?
                            .trim()
                            .to_string(),
                    )),
                }
            };
            let store = S3Store::new(S3Config {
                access_key_id: read(&s.access_key_id_file)?,
                secret_access_key: read(&s.secret_access_key_file)?,
                ..s.s3.clone()
            })
            .await
            .map_err(|e| anyhow!("recording store: {e}"))?;
            Arc::new(store)
        }
    })
}

/// Checks the store can keep its promise, opens the spool (recovering
/// crashed sessions) and returns the sink writing to `store`.
pub async fn open_sink(config: &Config, store: Arc<dyn Store>) -> Result<Arc<RecordingSink>> {
    if let Err(e) = store.check().await {
        bail!(
            "refusing to start: the recording store {} cannot hold recordings: {e}",
            store.describe()
        );
    }
    let r = &config.recording;
    std::fs::create_dir_all(&r.spool_dir).with_context(|| format!("creating {}", r.spool_dir.display()))?;
    let mut audit = crate::audit::AuditLog::open(&config.audit.file, false)?;
    if let Some(socket) = &config.audit.syslog {
        audit = audit.with_syslog(socket);
    }
    let audit = Arc::new(audit);
    let mut rc = RecorderConfig::new(&r.spool_dir, signing_key(&config.server.recording_key)?, hostname());
    let (sealed_audit, sealed_store) = (audit.clone(), store.describe());
    rc.on_sealed = Some(Arc::new(move |session: &str| {
        sealed_audit.record(
            "recording.sealed",
            serde_json::json!({"session": session, "store": sealed_store}),
        );
    }));
    rc.chunk_bytes = r.chunk_bytes as u64;
    rc.flush_bytes = r.flush_bytes as u64;
    rc.chunk_interval = r.chunk_interval;
    rc.spool_limit_bytes = r.spool_limit_bytes;
    let describe = store.describe();
    let (sink, report) = RecordingSink::open(rc, store).map_err(|e| anyhow!("opening the recording spool: {e}"))?;
    for s in &report.recovered {
        warn!(session = %s.session, chunks = s.chunks, kept_lines = s.kept_lines, "recovered a recording cut by a crash");
        audit.record(
            "recording.recovered",
            serde_json::json!({
                "session": s.session, "chunks": s.chunks, "kept_lines": s.kept_lines,
                "dropped_bytes": s.dropped_bytes, "gap": serde_json::to_value(&s.gap).unwrap_or_default(),
            }),
        );
    }
    for e in &report.errors {
        warn!(error = %e, "recording spool recovery");
    }
    info!(store = %describe, spool = %r.spool_dir.display(), pending = report.pending_uploads, "recording to write-once storage");
    Ok(sink)
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "bastion".into())
}
