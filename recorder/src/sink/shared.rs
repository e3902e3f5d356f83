//! The state a sink's sessions, its uploader and `/readyz` share: the
//! spool's byte and pending counts, the hashes of chunks sealed here, spare
//! chunk files and the wake-ups between them; and the two ways a session's
//! work reaches it, a sealed chunk noted ([`Shared::sealed_chunk`]) and a
//! signed manifest written ([`Shared::write_manifest`]).
//!
//! Every file counted here as pending is counted down only by the uploader,
//! once the store confirmed it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::{Notify, watch};

use super::RecorderConfig;
use crate::format;
use crate::manifest::{self, ChannelSummary, ChunkEntry, EndedHow, Gap, Manifest, Notes, SessionInfo};
use crate::spool;
use crate::store::Store;

pub(super) struct Shared {
    pub(super) config: RecorderConfig,
    pub(super) store: Arc<dyn Store>,
    pub(super) key_id: String,
    // Signed: the uploader may confirm a chunk a moment before its sealer
    // counts it; the pair always balances, and reads clamp at zero.
    pub(super) bytes: AtomicI64,
    pub(super) pending: AtomicI64,
    pub(super) open: AtomicU64,
    pub(super) last_upload_error: Mutex<Option<String>>,
    pub(super) last_spool_error: Mutex<Option<String>>,
    /// The SHA-256 of each chunk sealed by this process, by key, as its
    /// writer hashed it: the uploader hands it to the store (which checks
    /// the bytes it got against it) instead of hashing the file again.
    pub(super) sealed_sha: Mutex<HashMap<String, [u8; 32]>>,
    /// Uploaded chunk files kept for the running sessions' next chunks.
    pub(super) spares: spool::Spares,
    /// Wakes the uploader when something was sealed.
    pub(super) sealed: Notify,
    /// Wakes `drained` when a session ends.
    pub(super) ended: Notify,
    pub(super) shutdown: watch::Sender<bool>,
    /// The running sessions' live feeds, for watchers.
    pub(super) live: super::live::Registry,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Nothing counted yet: start-up recovery counts what the spool holds.
    pub(super) fn new(config: RecorderConfig, store: Arc<dyn Store>) -> Shared {
        let (shutdown, _) = watch::channel(false);
        Shared {
            key_id: manifest::key_id(&config.signing_key.verifying_key()),
            config,
            store,
            bytes: AtomicI64::new(0),
            pending: AtomicI64::new(0),
            open: AtomicU64::new(0),
            last_upload_error: Mutex::new(None),
            last_spool_error: Mutex::new(None),
            sealed_sha: Mutex::new(HashMap::new()),
            spares: spool::Spares::default(),
            sealed: Notify::new(),
            ended: Notify::new(),
            shutdown,
            live: Default::default(),
        }
    }

    /// Signs and writes the manifest into the session's spool directory.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn write_manifest(
        &self,
        dir: &Path,
        info: SessionInfo,
        how: EndedHow,
        gap: Option<Gap>,
        notes: Notes,
        channels: Vec<ChannelSummary>,
        chunks: Vec<ChunkEntry>,
        ended: SystemTime,
    ) -> std::io::Result<()> {
        let m = Manifest {
            version: 1,
            info,
            ended: manifest::rfc3339(ended),
            ended_how: how,
            gap,
            watchers: notes.watchers,
            terminated: notes.terminated,
            channels,
            chain_head: chunks
                .last()
                .map(|c| c.sha256.clone())
                .unwrap_or_else(|| format::ZERO_HASH.into()),
            chunks,
            bastion: self.config.bastion_id.clone(),
            key_id: self.key_id.clone(),
            signature: None,
        };
        let bytes = m.sign(&self.config.signing_key);
        spool::write_new_synced(&dir.join(spool::MANIFEST), &bytes)?;
        self.bytes.fetch_add(bytes.len() as i64, Ordering::Relaxed);
        self.pending.fetch_add(1, Ordering::Relaxed);
        self.sealed.notify_one();
        Ok(())
    }

    /// Notes what a seal came to: the chunk joins `chunks`, its hash is kept
    /// for the uploader, the counts grow, and the uploader wakes.
    pub(super) fn sealed_chunk(
        &self,
        r: std::io::Result<Option<(ChunkEntry, u64)>>,
        chunks: &mut Vec<ChunkEntry>,
    ) -> Result<(), String> {
        match r {
            Ok(Some((entry, grew))) => {
                let mut sha = [0u8; 32];
                if hex::decode_to_slice(&entry.sha256, &mut sha).is_ok() {
                    lock(&self.sealed_sha).insert(entry.key.clone(), sha);
                }
                self.bytes.fetch_add(grew as i64, Ordering::Relaxed);
                self.pending.fetch_add(1, Ordering::Relaxed);
                chunks.push(entry);
                self.sealed.notify_one();
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => Err(format!("sealing a chunk failed: {e}")),
        }
    }

    pub(super) fn upload_error(&self, e: String) {
        *lock(&self.last_upload_error) = Some(e);
    }
}
