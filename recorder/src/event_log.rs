//! A sink that writes one JSON line per channel event (sizes, not contents)
//! to `DIR/<session>.events.jsonl`: enough to see that every channel of every
//! session passed through the seam, and what happened on it.

use std::path::PathBuf;

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::tap::{Record, RecordError, SessionMeta, SessionTap, Sink};

/// Writes event logs into a directory.
pub struct EventLogSink {
    /// Where the `.events.jsonl` files go; created if missing.
    pub dir: PathBuf,
}

impl Sink for EventLogSink {
    fn start(&self, meta: &SessionMeta) -> Result<SessionTap, RecordError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| RecordError(format!("cannot create {}: {e}", self.dir.display())))?;
        let path = self.dir.join(format!("{}.events.jsonl", meta.session_id));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| RecordError(format!("cannot create {}: {e}", path.display())))?;
        let header = serde_json::to_string(meta).map_err(|e| RecordError(e.to_string()))?;
        let (tap, rx) = SessionTap::new();
        tokio::spawn(write_events(tokio::fs::File::from_std(file), header, rx));
        Ok(tap)
    }
}

async fn write_events(file: tokio::fs::File, header: String, mut rx: mpsc::Receiver<Record>) {
    let mut out = tokio::io::BufWriter::new(file);
    let mut ok = out.write_all(format!("{header}\n").as_bytes()).await.is_ok();
    while let Some(record) = rx.recv().await {
        if !ok {
            // Dropping the receiver makes every relay of this session fail
            // its next `record`: a recording that cannot be written closes
            // the session instead of letting it go on unrecorded.
            break;
        }
        let line = match serde_json::to_string(&record) {
            Ok(l) => l,
            Err(_) => continue,
        };
        ok = out.write_all(line.as_bytes()).await.is_ok() && out.write_all(b"\n").await.is_ok();
        if rx.is_empty() {
            ok = ok && out.flush().await.is_ok();
        }
    }
    let _ = out.flush().await;
    let _ = out.get_ref().sync_all().await;
}
