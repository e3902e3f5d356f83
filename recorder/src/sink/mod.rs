//! The recording pipeline: [`RecordingSink`] turns the tap's channel events
//! into chunk lines in the spool, seals chunks by size or time, uploads them
//! to the write-once [`Store`] while the session runs, and ends each session
//! with a signed manifest. At start-up it recovers sessions a crash cut.
//!
//! Recording fails closed: a session whose spool cannot be written loses its
//! queue (the relays' next `record` fails and the channel closes), and no new
//! session starts while the spool is over its bound. Nothing in the spool is
//! deleted before the store confirmed it.
//!
//! The parts, in the order a session's events pass them: `session` (one
//! session's loop: records from the tap's queue in batches, one disk job
//! at a time beside it, the last seal and the manifest), `translate` (records
//! into event lines; pure), `disk` (the fsync and seal jobs, and appending
//! lines to the open chunk), `upload` (sealed chunks, then manifests, to the
//! store), `recover` (start-up: `crashed` manifests for cut sessions), and
//! `shared` (the counts and wake-ups they share). For auditors watching a
//! running session, `live` numbers the lines written and sends them to
//! watchers, and `follow` joins that feed to the lines read back from the
//! files ([`Follower`]). This file holds the
//! public API: the configuration, the reports, and [`RecordingSink`].

mod disk;
mod follow;
mod live;
mod recover;
mod session;
mod shared;
mod translate;
mod upload;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use ed25519_dalek::SigningKey;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use self::shared::{Shared, lock};
use crate::format;
use crate::manifest::{Gap, SessionInfo};
use crate::spool::{self, ChunkWriter};
use crate::store::Store;
use crate::tap::{RecordError, SessionMeta, SessionTap, Sink};

pub use self::follow::{Backlog, FollowError, Follower, recorded_lines};
pub use self::live::{LIVE_BATCHES, LiveBatch, Watch};
pub use self::session::{BATCH_BYTES, FLUSHES_IN_FLIGHT};

/// What the bastion runs when a recording is sealed in the store.
pub type SealedHook = Arc<dyn Fn(&str) + Send + Sync>;

/// Runs on the blocking thread just before an open chunk is fsynced.
pub type SyncHook = Arc<dyn Fn() + Send + Sync>;

/// How the recorder is set up.
#[derive(Clone)]
pub struct RecorderConfig {
    /// Local spool directory (created if missing).
    pub spool_dir: PathBuf,
    /// Seal a chunk (one object in the store, one link of the hash chain)
    /// once it holds this many bytes.
    pub chunk_bytes: u64,
    /// Fsync the open chunk whenever this many bytes were appended since
    /// the last fsync: what a machine crash can take, whatever the chunk
    /// size. Chunks bigger than this cost fewer seals (renames, index lines,
    /// store objects) per GiB without holding more data at risk.
    pub flush_bytes: u64,
    /// Seal a chunk this long after its first event.
    pub chunk_interval: Duration,
    /// Past this much spooled data no new session starts.
    pub spool_limit_bytes: u64,
    /// The bastion's recording key (signs manifests).
    pub signing_key: SigningKey,
    /// Names this bastion in manifests.
    pub bastion_id: String,
    /// First wait after a failed upload; doubles up to `retry_max`.
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// Called with the session id once its manifest is confirmed by the
    /// store (the recording is sealed): the bastion audits it.
    pub on_sealed: Option<SealedHook>,
    /// Called before each fsync of an open chunk (not of a seal), on the
    /// thread that then fsyncs. A test that blocks in it has a disk that is
    /// slow to sync, and can see what the session takes in meanwhile.
    pub before_sync: Option<SyncHook>,
}

impl RecorderConfig {
    /// The design's defaults: an fsync every 256 KiB or 1 s, chunks sealed
    /// at 4 MiB or 1 s, a 2 GiB spool bound, retries from 0.5 s to 30 s.
    pub fn new(spool_dir: impl Into<PathBuf>, signing_key: SigningKey, bastion_id: impl Into<String>) -> Self {
        RecorderConfig {
            spool_dir: spool_dir.into(),
            chunk_bytes: 4 << 20,
            flush_bytes: 256 << 10,
            chunk_interval: Duration::from_secs(1),
            spool_limit_bytes: 2 << 30,
            signing_key,
            bastion_id: bastion_id.into(),
            retry_initial: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
            on_sealed: None,
            before_sync: None,
        }
    }
}

/// Why the recorder cannot start.
#[derive(Debug, thiserror::Error)]
#[error("the recording spool {path}: {message}")]
pub struct SpoolError {
    pub path: PathBuf,
    pub message: String,
}

/// What start-up recovery found and did.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    /// Sessions a crash cut; each now has a `crashed` manifest.
    pub recovered: Vec<RecoveredSession>,
    /// Sealed chunks and manifests waiting for the uploader.
    pub pending_uploads: u64,
    /// Sessions that could not be recovered (left in the spool untouched).
    pub errors: Vec<String>,
}

/// One session recovered after a crash.
#[derive(Debug, Clone)]
pub struct RecoveredSession {
    pub session: String,
    pub gap: Gap,
    pub chunks: usize,
    /// Event lines kept from the chunk that was open at the crash.
    pub kept_lines: usize,
    /// Bytes of a torn last line that were dropped.
    pub dropped_bytes: u64,
}

/// The spool and uploader as `/readyz` sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolStatus {
    pub bytes: u64,
    /// Sealed chunks and manifests not yet confirmed by the store.
    pub sealed_pending: u64,
    pub sessions_open: u64,
    pub last_upload_error: Option<String>,
    /// The last session whose spool could not be written (it was closed).
    pub last_spool_error: Option<String>,
}

/// The sink the proxy records through.
pub struct RecordingSink {
    shared: Arc<Shared>,
    /// Where sessions are recorded: threads of their own, so that escaping,
    /// hashing and writing output never holds up the tokio workers that
    /// relay it (the kernel's scheduler shares the CPUs, not tokio's
    /// cooperative one); and at most half the CPUs, so that recording many
    /// busy sessions at once slows them through the queue's back-pressure
    /// rather than starving every other session's relay.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for RecordingSink {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl RecordingSink {
    /// Opens the spool and recovers what a crash left in it: every session
    /// without a manifest is sealed and gets a signed `crashed` manifest with
    /// its gap. Uploads start with [`RecordingSink::spawn_uploader`].
    pub fn open(
        config: RecorderConfig,
        store: Arc<dyn Store>,
    ) -> Result<(Arc<RecordingSink>, RecoveryReport), SpoolError> {
        let root = config.spool_dir.clone();
        let err = |message: String| SpoolError {
            path: root.clone(),
            message,
        };
        std::fs::create_dir_all(&root).map_err(|e| err(format!("cannot create it: {e}")))?;
        let shared = Arc::new(Shared::new(config, store));
        let entries = std::fs::read_dir(&root).map_err(|e| err(format!("cannot read it: {e}")))?;
        let report = recover::recover_spool(&shared, &root, entries, SystemTime::now());
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).div_ceil(2);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("recorder")
            .enable_all()
            .build()
            .map_err(|e| err(format!("cannot start the recorder threads: {e}")))?;
        Ok((
            Arc::new(RecordingSink {
                shared,
                runtime: Some(runtime),
            }),
            report,
        ))
    }

    /// The uploader: puts sealed chunks, then manifests, to the store and
    /// deletes the spool copies once confirmed. While the store is down it
    /// retries with back-off and deletes nothing. Ends when `stop` turns true
    /// (or its sender goes).
    pub fn spawn_uploader(&self, stop: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(upload::run(self.shared.clone(), stop))
    }

    /// For `/readyz`.
    pub fn status(&self) -> SpoolStatus {
        SpoolStatus {
            bytes: self.shared.bytes.load(Ordering::Relaxed).max(0) as u64,
            sealed_pending: self.shared.pending.load(Ordering::Relaxed).max(0) as u64,
            sessions_open: self.shared.open.load(Ordering::Relaxed),
            last_upload_error: lock(&self.shared.last_upload_error).clone(),
            last_spool_error: lock(&self.shared.last_spool_error).clone(),
        }
    }

    /// Ends every running session now (their manifests say `shutdown`);
    /// their relays' next `record` fails. New sessions are refused after this.
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }

    /// Waits until no session is being recorded.
    pub async fn drained(&self) {
        loop {
            let notified = self.shared.ended.notified();
            if self.shared.open.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// The store recordings go to.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.shared.store
    }
}

impl Sink for RecordingSink {
    fn start(&self, meta: &SessionMeta) -> Result<SessionTap, RecordError> {
        let shared = &self.shared;
        if *shared.shutdown.borrow() {
            return Err(RecordError("the recorder is shutting down".into()));
        }
        if !format::valid_session_id(&meta.session_id) {
            return Err(RecordError(format!("{:?} is not a valid session id", meta.session_id)));
        }
        let used = shared.bytes.load(Ordering::Relaxed).max(0) as u64;
        let limit = shared.config.spool_limit_bytes;
        if used > limit {
            return Err(RecordError(format!(
                "the recording spool is full ({} MiB of {}): new sessions are refused until the store catches up",
                used >> 20,
                limit >> 20
            )));
        }
        let dir = shared.config.spool_dir.join(&meta.session_id);
        let info = SessionInfo::from_meta(meta);
        let fail = |what: &str, e: std::io::Error| RecordError(format!("cannot {what} {}: {e}", dir.display()));
        std::fs::create_dir(&dir).map_err(|e| fail("create the spool directory", e))?;
        let meta_json = serde_json::to_vec(&info).map_err(|e| RecordError(e.to_string()))?;
        spool::write_new_synced(&dir.join(spool::META), &meta_json)
            .map_err(|e| fail("write the session header in", e))?;
        shared.bytes.fetch_add(meta_json.len() as i64, Ordering::Relaxed);
        let (tap, rx) = SessionTap::new();
        shared.open.fetch_add(1, Ordering::AcqRel);
        let writer = ChunkWriter::new(dir, meta.session_id.clone(), 0, format::ZERO_HASH.into())
            .reuse_files(shared.spares.clone());
        let live = shared.live.open(&meta.session_id);
        let session = session::run_session(shared.clone(), writer, info, rx, live);
        // The runtime is taken only when the sink is dropped.
        let runtime = self
            .runtime
            .as_ref()
            .unwrap_or_else(|| unreachable!("the sink is alive"));
        drop(runtime.spawn(session));
        Ok(tap)
    }

    fn watch(&self, session: &str) -> Option<Watch> {
        self.shared.live.watch(session)
    }

    fn follow(&self, session: &str) -> Option<Follower> {
        let watch = self.shared.live.watch(session)?;
        let backlog = Backlog::new(self.shared.store.clone(), &self.shared.config.spool_dir, session);
        Some(Follower::new(watch, backlog))
    }
}
