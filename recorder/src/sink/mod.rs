//! The recording pipeline: [`RecordingSink`] turns the tap's channel events
//! into chunk lines in the spool, seals chunks by size or time, uploads them
//! to the write-once [`Store`] while the session runs, and ends each session
//! with a signed manifest. At start-up it recovers sessions a crash cut.
//!
//! Recording fails closed: a session whose spool cannot be written loses its
//! queue (the relays' next `record` fails and the channel closes), and no new
//! session starts while the spool is over its bound. Nothing in the spool is
//! deleted before the store confirmed it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ed25519_dalek::SigningKey;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::format::{self, Event, EventKind, Flow, Piece, PieceRef, Utf8Carry};
use crate::manifest::{self, ChannelSummary, ChunkEntry, EndedHow, Gap, Manifest, SessionInfo};
use crate::sftp::{self, ScpParser, SftpParser, Transfer};
use crate::spool::{self, ChunkWriter};
use crate::store::{Store, StoreError};
use crate::tap::{ChannelEvent, ChannelKind, Direction, Record, RecordError, SessionMeta, SessionTap, Sink};

/// Chunks of one running session uploaded per round of the uploader.
const CHUNKS_PER_TURN: usize = 4;

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

struct Shared {
    config: RecorderConfig,
    store: Arc<dyn Store>,
    key_id: String,
    // Signed: the uploader may confirm a chunk a moment before its sealer
    // counts it; the pair always balances, and reads clamp at zero.
    bytes: AtomicI64,
    pending: AtomicI64,
    open: AtomicU64,
    last_upload_error: Mutex<Option<String>>,
    last_spool_error: Mutex<Option<String>>,
    /// The SHA-256 of each chunk sealed by this process, by key, as its
    /// writer hashed it: the uploader hands it to the store (which checks
    /// the bytes it got against it) instead of hashing the file again.
    sealed_sha: Mutex<HashMap<String, [u8; 32]>>,
    /// Uploaded chunk files kept for the running sessions' next chunks.
    spares: spool::Spares,
    /// Wakes the uploader when something was sealed.
    sealed: Notify,
    /// Wakes `drained` when a session ends.
    ended: Notify,
    shutdown: watch::Sender<bool>,
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
        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(Shared {
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
        });
        let mut report = RecoveryReport::default();
        let entries = std::fs::read_dir(&root).map_err(|e| err(format!("cannot read it: {e}")))?;
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let dir = entry.path();
            if !dir.is_dir() {
                continue;
            }
            if dir.join(spool::MANIFEST).exists() {
                continue;
            }
            match recover_one(&shared, &dir, now) {
                Ok(r) => report.recovered.push(r),
                Err(e) => report.errors.push(format!("{}: {e}", dir.display())),
            }
        }
        report.pending_uploads = count_pending(&root);
        shared.pending.store(report.pending_uploads as i64, Ordering::Relaxed);
        shared.bytes.store(spool::spool_bytes(&root) as i64, Ordering::Relaxed);
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
    pub fn spawn_uploader(&self, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let mut delay = shared.config.retry_initial;
            loop {
                if *stop.borrow() {
                    return;
                }
                let wait = match shared.upload_pass().await {
                    Ok(true) => {
                        delay = shared.config.retry_initial;
                        continue;
                    }
                    Ok(false) => {
                        delay = shared.config.retry_initial;
                        // A periodic rescan also picks up work nobody notified.
                        shared.config.retry_max
                    }
                    Err(()) => {
                        let d = delay;
                        delay = (delay * 2).min(shared.config.retry_max);
                        d
                    }
                };
                tokio::select! {
                    _ = shared.sealed.notified(), if delay == shared.config.retry_initial => {}
                    _ = tokio::time::sleep(wait) => {}
                    r = stop.changed() => if r.is_err() || *stop.borrow() { return },
                }
            }
        })
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
        let session = run_session(shared.clone(), writer, info, rx);
        // The runtime is taken only when the sink is dropped.
        let runtime = self
            .runtime
            .as_ref()
            .unwrap_or_else(|| unreachable!("the sink is alive"));
        drop(runtime.spawn(session));
        Ok(tap)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn recover_one(shared: &Shared, dir: &Path, now: SystemTime) -> std::io::Result<RecoveredSession> {
    let cut = spool::recover_cut(dir)?;
    let gap = Gap {
        from: manifest::rfc3339(cut.last_event),
        to: manifest::rfc3339(now),
    };
    shared.write_manifest(
        dir,
        cut.info.clone(),
        EndedHow::Crashed,
        Some(gap.clone()),
        cut.channels,
        cut.chunks.clone(),
        now,
    )?;
    Ok(RecoveredSession {
        session: cut.info.session,
        gap,
        chunks: cut.chunks.len(),
        kept_lines: cut.kept_lines,
        dropped_bytes: cut.dropped_bytes,
    })
}

fn count_pending(root: &Path) -> u64 {
    let mut n = 0;
    for s in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let p = s.path();
        n += spool::list_chunk_files(&p).map(|v| v.len() as u64).unwrap_or(0);
        n += u64::from(p.join(spool::MANIFEST).exists());
    }
    n
}

impl Shared {
    /// Signs and writes the manifest into the session's spool directory.
    #[allow(clippy::too_many_arguments)]
    fn write_manifest(
        &self,
        dir: &Path,
        info: SessionInfo,
        how: EndedHow,
        gap: Option<Gap>,
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

    fn upload_error(&self, e: String) {
        *lock(&self.last_upload_error) = Some(e);
    }

    /// Uploads everything the spool holds. `Err` when something is left to retry.
    /// One round over every spooled session; `Ok(true)` when a running
    /// session still has sealed chunks waiting (the next round comes at once).
    async fn upload_pass(&self) -> Result<bool, ()> {
        let root = &self.config.spool_dir;
        let Ok(mut sessions) = tokio::fs::read_dir(root).await else {
            self.upload_error(format!("cannot read the spool {}", root.display()));
            return Err(());
        };
        let mut dirs = Vec::new();
        while let Ok(Some(e)) = sessions.next_entry().await {
            dirs.push(e.path());
        }
        dirs.sort();
        let mut clean = true;
        let mut more = false;
        for dir in dirs {
            match self.upload_session(&dir).await {
                Ok(left) => more |= left,
                Err(Retry::Later) => return Err(()),
                Err(Retry::SkipSession) => clean = false,
            }
        }
        if clean {
            *lock(&self.last_upload_error) = None;
            Ok(more)
        } else {
            Err(())
        }
    }

    /// Uploads a session's sealed chunks, and its manifest once it ended.
    /// A running session gets at most [`CHUNKS_PER_TURN`] chunks per round,
    /// so one busy session cannot keep the others' recordings waiting;
    /// returns whether it has more.
    async fn upload_session(&self, dir: &Path) -> Result<bool, Retry> {
        let Some(session) = dir.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            return Ok(false);
        };
        // Whether the session has ended is read before the last listing of
        // chunks: the manifest is written after the final seal, so chunks
        // sealed before it are all seen by a later listing.
        let manifest = dir.join(spool::MANIFEST);
        let ended = tokio::fs::try_exists(&manifest).await.unwrap_or(false);
        loop {
            let seqs = {
                let dir = dir.to_path_buf();
                tokio::task::spawn_blocking(move || spool::list_chunk_files(&dir))
                    .await
                    .ok()
                    .and_then(|r| r.ok())
                    .unwrap_or_default()
            };
            if seqs.is_empty() {
                break;
            }
            let turn = if ended { seqs.len() } else { CHUNKS_PER_TURN };
            // A running session's uploaded chunk files become its spares.
            let room = if ended {
                0
            } else {
                spool::SPARES_PER_SESSION.saturating_sub(self.spares.count(dir))
            };
            let mut kept = Vec::new();
            let mut result = Ok(());
            for seq in seqs.iter().take(turn) {
                let path = dir.join(format::chunk_file_name(*seq));
                let spare = (kept.len() < room).then(|| dir.join(format!("{}{seq}", spool::SPARE_PREFIX)));
                match self.upload_file(&path, &format::chunk_key(&session, *seq), spare).await {
                    Ok(Some(spare)) => kept.push(spare),
                    Ok(None) => {}
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            if !kept.is_empty() {
                self.keep_spares(dir, kept).await;
            }
            result?;
            if !ended {
                return Ok(seqs.len() > turn);
            }
        }
        // The manifest goes last: a manifest in the store means its chunks are there.
        if ended {
            self.upload_file(&manifest, &format::manifest_key(&session), None)
                .await?;
            // Hashes of chunks the uploader found before their sealer noted them.
            let prefix = format!("{session}/");
            lock(&self.sealed_sha).retain(|k, _| !k.starts_with(&prefix));
            if let Some(sealed) = &self.config.on_sealed {
                sealed(&session);
            }
            // Only the spool's own bookkeeping is left; `remove_dir` (not
            // `_all`) refuses if anything else is still there.
            let size = spool::spool_bytes_of_dir(dir);
            self.spares.forget(dir);
            let _ = tokio::task::spawn_blocking({
                let dir = dir.to_path_buf();
                move || {
                    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                        if e.file_name().to_string_lossy().starts_with(spool::SPARE_PREFIX) {
                            let _ = std::fs::remove_file(e.path());
                        }
                    }
                }
            })
            .await;
            let _ = tokio::fs::remove_file(dir.join(spool::INDEX)).await;
            let _ = tokio::fs::remove_file(dir.join(spool::META)).await;
            match tokio::fs::remove_dir(dir).await {
                Ok(()) => {
                    self.bytes.fetch_sub(size as i64, Ordering::Relaxed);
                }
                Err(e) => self.upload_error(format!("cannot remove {}: {e}", dir.display())),
            }
        }
        Ok(false)
    }

    /// Makes the renames of uploaded chunks to spares durable (then their
    /// old names can never come back over a reused file), empties them and
    /// offers them to the session's writer; deletes them if that fails.
    async fn keep_spares(&self, dir: &Path, kept: Vec<PathBuf>) {
        let dir = dir.to_path_buf();
        let spares = self.spares.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let synced = spool::fsync_dir(&dir).is_ok();
            for spare in kept {
                let emptied = synced
                    && std::fs::OpenOptions::new()
                        .write(true)
                        .open(&spare)
                        .and_then(|f| f.set_len(0))
                        .is_ok();
                if emptied {
                    spares.offer(&dir, spare);
                } else {
                    let _ = std::fs::remove_file(&spare);
                }
            }
        })
        .await;
    }

    /// Puts one spooled file and deletes it once the store confirmed it, or
    /// renames it to `spare` when given (returned when that worked).
    async fn upload_file(&self, path: &Path, key: &str, spare: Option<PathBuf>) -> Result<Option<PathBuf>, Retry> {
        let len = match tokio::fs::metadata(path).await {
            Ok(m) => m.len(),
            Err(e) => {
                self.upload_error(format!("cannot read {}: {e}", path.display()));
                return Err(Retry::SkipSession);
            }
        };
        let known = lock(&self.sealed_sha).remove(key);
        let sha = match known {
            Some(sha) => sha,
            None => match tokio::fs::read(path).await {
                Ok(b) => format::sha256(&b),
                Err(e) => {
                    self.upload_error(format!("cannot read {}: {e}", path.display()));
                    return Err(Retry::SkipSession);
                }
            },
        };
        // Only a file the store copied may become a spare: one it took (or
        // may have taken, before a crash) is the stored object itself.
        let mut taken = true;
        let confirmed = match self.store.put_file(key, path, sha).await {
            Ok(t) => {
                taken = t;
                true
            }
            // A put confirmed just before a crash, not yet deleted here: the
            // same bytes under the key are a confirmation, anything else is
            // reported and the spool copy kept.
            Err(StoreError::Exists(_)) => match self.store.get(key).await {
                Ok(stored) if format::sha256(&stored) == sha => true,
                Ok(_) => {
                    self.upload_error(format!(
                        "{key} is already in the store with other content; the spool copy is kept"
                    ));
                    return Err(Retry::SkipSession);
                }
                Err(e) => {
                    self.upload_error(format!("{key}: {e}"));
                    return Err(Retry::Later);
                }
            },
            Err(e @ StoreError::Unavailable(_)) => {
                self.upload_error(format!("{key}: {e}"));
                return Err(Retry::Later);
            }
            Err(e) => {
                self.upload_error(format!("{key}: {e}"));
                return Err(Retry::SkipSession);
            }
        };
        if !confirmed {
            return Ok(None);
        }
        // A file the store took (linked) is the stored object: never a spare.
        let kept = match spare {
            Some(spare) if !taken && tokio::fs::rename(path, &spare).await.is_ok() => Some(spare),
            _ => None,
        };
        if taken || kept.is_some() || tokio::fs::remove_file(path).await.is_ok() {
            self.bytes.fetch_sub(len as i64, Ordering::Relaxed);
            self.pending.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(kept)
    }
}

enum Retry {
    /// The store is down: stop the pass, back off.
    Later,
    /// This session has a problem the store will not fix by waiting; go on with the others.
    SkipSession,
}

/// One channel's recording state.
struct Chan {
    forward: Option<(String, u32)>,
    transfer: Option<TransferState>,
    input: Utf8Carry,
    output: Utf8Carry,
    stderr: Utf8Carry,
    summary: ChannelSummary,
}

enum TransferState {
    Sftp(SftpParser),
    Scp(ScpParser, Direction),
    Rsync,
}

/// Turns tap records into stored events for one session.
struct Translator {
    record_input: bool,
    channels: BTreeMap<u32, Chan>,
}

impl Translator {
    fn summaries(&self) -> Vec<ChannelSummary> {
        self.channels.values().map(|c| c.summary.clone()).collect()
    }

    fn chan(&mut self, ch: u32) -> &mut Chan {
        self.channels.entry(ch).or_insert_with(|| Chan {
            forward: None,
            transfer: None,
            input: Utf8Carry::default(),
            output: Utf8Carry::default(),
            stderr: Utf8Carry::default(),
            summary: ChannelSummary {
                index: ch,
                kind: "session".into(),
                ..Default::default()
            },
        })
    }

    fn translate(&mut self, r: Record, out: &mut Vec<Out>) {
        let t = format::secs(r.at);
        let ch = r.channel;
        let record_input = self.record_input;
        macro_rules! push {
            ($kind:expr) => {
                out.push(Out::Event(Event { t, ch, kind: $kind }))
            };
        }
        macro_rules! push_data {
            ($piece:expr, $input:expr, $err:expr) => {
                emit_data(out, t, ch, $input, $err, $piece)
            };
        }
        let c = self.chan(ch);
        match r.event {
            ChannelEvent::Open(kind) => {
                let (name, host, port) = match kind {
                    ChannelKind::Session => ("session", None, None),
                    ChannelKind::DirectTcpip { host, port } => ("direct-tcpip", Some(host), Some(port)),
                    ChannelKind::ForwardedTcpip { address, port } => ("forwarded-tcpip", Some(address), Some(port)),
                };
                c.summary.kind = name.into();
                if let (Some(h), Some(p)) = (&host, port) {
                    c.forward = Some((h.clone(), p));
                    c.summary.destination = Some(format!("{h}:{p}"));
                }
                push!(EventKind::Open {
                    kind: name.into(),
                    host,
                    port,
                });
            }
            ChannelEvent::Pty { term, cols, rows } => {
                c.summary.pty = Some(format!("{term} {cols}x{rows}"));
                push!(EventKind::Pty { term, cols, rows });
            }
            ChannelEvent::Resize { cols, rows } => push!(EventKind::Resize {
                d: format!("{cols}x{rows}"),
            }),
            ChannelEvent::Env { name, value } => push!(EventKind::Env { name, value }),
            ChannelEvent::Shell => push!(EventKind::Shell {}),
            ChannelEvent::Exec { command } => {
                c.transfer = sftp::classify_exec(&command).map(|t| match t {
                    Transfer::ScpSink => TransferState::Scp(ScpParser::new(true), Direction::Input),
                    Transfer::ScpSource => TransferState::Scp(ScpParser::new(false), Direction::Output),
                    Transfer::Rsync => TransferState::Rsync,
                    Transfer::Sftp => TransferState::Sftp(SftpParser::new()),
                });
                c.summary.command = Some(command.clone());
                push!(EventKind::Exec { command });
            }
            ChannelEvent::Subsystem { name } => {
                if sftp::classify_subsystem(&name).is_some() {
                    c.transfer = Some(TransferState::Sftp(SftpParser::new()));
                }
                c.summary.subsystem = Some(name.clone());
                push!(EventKind::Subsystem { name });
            }
            ChannelEvent::Signal { name } => push!(EventKind::Signal { name }),
            ChannelEvent::Data {
                direction,
                stderr,
                bytes,
                ..
            } => {
                match direction {
                    Direction::Input => c.summary.bytes_in += bytes.len() as u64,
                    Direction::Output => c.summary.bytes_out += bytes.len() as u64,
                }
                if c.forward.is_some() {
                    // Forwarded connections: destination and byte counts only.
                    return;
                }
                match (&mut c.transfer, direction, stderr) {
                    // Messages of the transfer program itself are kept as text below.
                    (Some(_), Direction::Output, true) => {}
                    (Some(TransferState::Sftp(p)), Direction::Input, _) => {
                        p.client(&bytes).into_iter().for_each(|k| push!(k));
                        return;
                    }
                    (Some(TransferState::Sftp(p)), Direction::Output, _) => {
                        p.server(&bytes).into_iter().for_each(|k| push!(k));
                        return;
                    }
                    (Some(TransferState::Scp(p, carrying)), d, _) => {
                        if d == *carrying {
                            p.feed(&bytes).into_iter().for_each(|k| push!(k));
                        }
                        return;
                    }
                    (Some(TransferState::Rsync), _, _) => return,
                    (None, _, _) => {}
                }
                let (carry, input) = match (direction, stderr) {
                    (Direction::Input, _) if !record_input => return,
                    (Direction::Input, _) => (&mut c.input, true),
                    (Direction::Output, false) => (&mut c.output, false),
                    (Direction::Output, true) => (&mut c.stderr, false),
                };
                carry.push_each(&bytes, |piece| emit_data_ref(out, t, ch, input, stderr, piece));
            }
            ChannelEvent::Eof { direction } => {
                let carries: Vec<(&mut Utf8Carry, bool, bool)> = match direction {
                    Direction::Input => vec![(&mut c.input, true, false)],
                    Direction::Output => vec![(&mut c.output, false, false), (&mut c.stderr, false, true)],
                };
                for (carry, input, err) in carries {
                    if let Some(piece) = carry.finish() {
                        push_data!(piece, input, err);
                    }
                }
                push!(EventKind::Eof {
                    dir: match direction {
                        Direction::Input => Flow::In,
                        Direction::Output => Flow::Out,
                    },
                });
            }
            ChannelEvent::ExitStatus { status } => {
                c.summary.exit_status = Some(status);
                push!(EventKind::Exit {
                    status: Some(status),
                    signal: None,
                    core: false,
                });
            }
            ChannelEvent::ExitSignal { signal, core_dumped } => {
                c.summary.exit_signal = Some(signal.clone());
                push!(EventKind::Exit {
                    status: None,
                    signal: Some(signal),
                    core: core_dumped,
                });
            }
            ChannelEvent::Refused { request, reason } => push!(EventKind::Refused { request, reason }),
            ChannelEvent::Close => {
                if c.summary.closed {
                    return;
                }
                for (carry, input, err) in [
                    (&mut c.input, true, false),
                    (&mut c.output, false, false),
                    (&mut c.stderr, false, true),
                ] {
                    if let Some(piece) = carry.finish() {
                        push_data!(piece, input, err);
                    }
                }
                match &mut c.transfer {
                    Some(TransferState::Sftp(p)) => p.finish().into_iter().for_each(|k| push!(k)),
                    Some(TransferState::Scp(p, _)) => p.finish().into_iter().for_each(|k| push!(k)),
                    _ => {}
                }
                if let Some((host, port)) = c.forward.clone() {
                    push!(EventKind::Fwd {
                        host,
                        port,
                        bytes_in: c.summary.bytes_in,
                        bytes_out: c.summary.bytes_out,
                    });
                }
                c.summary.closed = true;
                push!(EventKind::Close {
                    bytes_in: c.summary.bytes_in,
                    bytes_out: c.summary.bytes_out,
                });
            }
        }
    }

    /// At the end of a session that did not close all its channels: what the
    /// carries and parsers still hold.
    fn flush_all(&mut self, t: f64, out: &mut Vec<Out>) {
        let open: Vec<u32> = self
            .channels
            .iter()
            .filter(|(_, c)| !c.summary.closed)
            .map(|(k, _)| *k)
            .collect();
        for ch in open {
            let c = self.chan(ch);
            for (carry, input, err) in [
                (&mut c.input, true, false),
                (&mut c.output, false, false),
                (&mut c.stderr, false, true),
            ] {
                if let Some(piece) = carry.finish() {
                    emit_data(out, t, ch, input, err, piece);
                }
            }
            let kinds = match &mut c.transfer {
                Some(TransferState::Sftp(p)) => p.finish(),
                Some(TransferState::Scp(p, _)) => p.finish(),
                _ => Vec::new(),
            };
            out.extend(kinds.into_iter().map(|kind| Out::Event(Event { t, ch, kind })));
        }
    }
}

/// What the translator hands to the chunk writer: an event, or a piece of
/// `o`/`i` data, written straight as its line ([`format::write_data_line`]).
enum Out {
    Event(Event),
    Data {
        t: f64,
        ch: u32,
        input: bool,
        err: bool,
        piece: Piece,
    },
}

impl Out {
    fn t(&self) -> f64 {
        match self {
            Out::Event(e) => e.t,
            Out::Data { t, .. } => *t,
        }
    }
}

/// Consecutive data of one channel and stream is merged into one event up
/// to this many bytes: one line instead of one per SSH packet. It keeps the
/// first packet's time (the others came within the same batch from the queue).
const MERGE_BYTES: usize = 64 * 1024;

/// [`emit_data`] of a borrowed piece: copied once, into the event it merges
/// into or a new one.
fn emit_data_ref(out: &mut Vec<Out>, t: f64, ch: u32, input: bool, err: bool, piece: PieceRef<'_>) {
    if let Some(Out::Data {
        ch: c,
        input: i,
        err: e,
        piece: last,
        ..
    }) = out.last_mut()
        && (*c, *i, *e) == (ch, input, err)
    {
        match (last, piece) {
            (Piece::Text(a), PieceRef::Text(b)) if a.len() + b.len() <= MERGE_BYTES => {
                a.reserve(MERGE_BYTES - a.len());
                a.push_str(b);
                return;
            }
            (Piece::Bytes(a), PieceRef::Bytes(b)) if a.len() + b.len() <= MERGE_BYTES => {
                a.reserve(MERGE_BYTES - a.len());
                a.extend_from_slice(b);
                return;
            }
            _ => {}
        }
    }
    out.push(Out::Data {
        t,
        ch,
        input,
        err,
        piece: piece.to_owned(),
    });
}

fn emit_data(out: &mut Vec<Out>, t: f64, ch: u32, input: bool, err: bool, piece: Piece) {
    // Only for the rare owned piece (a character that never completed).
    emit_data_ref(out, t, ch, input, err, piece.as_ref());
}

/// Seals the open chunk on a blocking thread (fsync can take a while).
async fn seal(
    mut writer: ChunkWriter,
    channels: Vec<ChannelSummary>,
) -> (ChunkWriter, std::io::Result<Option<(ChunkEntry, u64)>>) {
    match tokio::task::spawn_blocking(move || {
        let r = writer.seal(channels);
        (writer, r)
    })
    .await
    {
        Ok(done) => done,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

type Sealing = JoinHandle<std::io::Result<(ChunkEntry, u64)>>;

/// The one disk job of a session that runs beside the recording, on a
/// blocking thread (fsync can take a while).
enum Job {
    /// The open chunk is fsynced up to a point; appends go on after it.
    Flush(JoinHandle<std::io::Result<u64>>),
    /// The previous chunk is sealed; the next one waits in memory.
    Seal(Sealing),
}

/// What a [`Job`] came to.
enum JobDone {
    Flushed(std::io::Result<u64>),
    Sealed(std::io::Result<Option<(ChunkEntry, u64)>>),
}

impl Job {
    async fn done(&mut self) -> JobDone {
        match self {
            Job::Flush(h) => JobDone::Flushed(match h.await {
                Ok(r) => r,
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }),
            Job::Seal(h) => JobDone::Sealed(sealed(h).await),
        }
    }
}

/// Starts sealing the open chunk on a blocking thread; the recording goes on
/// meanwhile (the next chunk waits in memory, see [`ChunkWriter::begin_seal`]).
fn begin_seal(writer: &mut ChunkWriter, tr: &Translator) -> Option<Job> {
    let job = writer.begin_seal()?;
    let channels = tr.summaries();
    Some(Job::Seal(tokio::task::spawn_blocking(move || job.run(channels))))
}

/// The job the open chunk is due for, if any: a seal once it is full or its
/// time is up, else an fsync once `flush_bytes` are not yet durable.
fn due_job(
    writer: &mut ChunkWriter,
    tr: &Translator,
    sizes: &Sizes,
    deadline: &mut Option<Instant>,
) -> std::io::Result<Option<Job>> {
    if writer.size() >= sizes.chunk_bytes || deadline.is_some_and(|d| d <= Instant::now()) {
        *deadline = None;
        return Ok(begin_seal(writer, tr));
    }
    if writer.unsynced() >= sizes.flush_bytes
        && let Some(job) = writer.begin_flush()?
    {
        let before = sizes.before_sync.clone();
        return Ok(Some(Job::Flush(tokio::task::spawn_blocking(move || {
            if let Some(before) = before {
                before();
            }
            job.run()
        }))));
    }
    Ok(None)
}

/// What decides when the open chunk is due for a job (see [`due_job`]),
/// and the hook run before each of its fsyncs.
struct Sizes {
    chunk_bytes: u64,
    flush_bytes: u64,
    before_sync: Option<SyncHook>,
}

/// Starts the job the open chunk is due for, if any ([`due_job`]), and
/// notes the chunk's size then (`job_base`).
fn start_due(
    job: &mut Option<Job>,
    job_base: &mut u64,
    writer: &mut ChunkWriter,
    tr: &Translator,
    sizes: &Sizes,
    deadline: &mut Option<Instant>,
) -> Result<(), String> {
    *job = due_job(writer, tr, sizes, deadline).map_err(|e| format!("writing the spool failed: {e}"))?;
    *job_base = writer.size();
    Ok(())
}

async fn sealed(h: &mut Sealing) -> std::io::Result<Option<(ChunkEntry, u64)>> {
    match h.await {
        Ok(r) => r.map(Some),
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// How many `flush_bytes` may come in while a disk job (an fsync or a seal)
/// runs, before the session waits for the disk.
///
/// Measured with the bastion on a CPU of its own (`tests/bench/run
/// --pin-bastion 1`), a 1 GiB download took 11 s with two and 7.5 s with
/// eight: with two, the relay waited on every fsync (a quarter of the
/// bastion's CPU time was iowait), because every fsync waits for the device
/// (0.9 ms for 256 KiB there, 2.7 ms for 1 MiB). With more in flight each
/// fsync takes what came in meanwhile, so fewer of them carry more. Eight keep what a
/// machine crash can take at about 2.25 MiB, some 15 ms of a bulk download;
/// an interactive session loses at most its last `chunk_interval`.
pub const FLUSHES_IN_FLIGHT: u64 = 8;

/// Raw bytes taken from the queue in one go (when that much is waiting)
/// before they are written: consecutive reads become one event, see [`emit_data`].
pub const BATCH_BYTES: u64 = 64 * 1024;

fn record_len(r: &Record) -> u64 {
    match &r.event {
        ChannelEvent::Data { bytes, .. } => bytes.len() as u64,
        _ => 64,
    }
}

/// Writes what the translator made into the open chunk.
fn append_all(shared: &Shared, writer: &mut ChunkWriter, outs: &[Out]) -> std::io::Result<()> {
    for o in outs {
        let n = match o {
            Out::Event(e) => writer.append(e)?,
            Out::Data {
                t,
                ch,
                input,
                err,
                piece,
            } => writer.append_data(*t, *ch, *input, *err, piece)?,
        };
        shared.bytes.fetch_add(n as i64, Ordering::Relaxed);
    }
    Ok(())
}

/// One session: records until every tap is gone (closed), the recorder
/// shuts down, or the spool fails; then seals and writes the manifest.
///
/// Events go to the open chunk's file as they come (a crash of the process
/// loses what waits in the queue, and during a seal the next chunk's first
/// lines, which wait in memory). One disk job at a time runs on a blocking
/// thread beside the recording: an fsync of the open chunk once
/// `flush_bytes` are not yet durable, or the seal of a full chunk (fsync,
/// rename, directory fsync, index) while the next one fills in memory.
/// While a job runs, at most [`FLUSHES_IN_FLIGHT`] `flush_bytes` more may
/// come in; then the queue's back-pressure reaches the relay. So no more
/// than about nine `flush_bytes` (2.25 MiB by default) are ever not durable.
async fn run_session(shared: Arc<Shared>, mut writer: ChunkWriter, info: SessionInfo, mut rx: mpsc::Receiver<Record>) {
    let mut tr = Translator {
        record_input: info.record_input,
        channels: BTreeMap::new(),
    };
    let config = shared.config.clone();
    let flush_bytes = config.flush_bytes.clamp(1, config.chunk_bytes.max(1));
    let sizes = Sizes {
        chunk_bytes: config.chunk_bytes,
        flush_bytes,
        before_sync: config.before_sync.clone(),
    };
    // What may come in while a job runs (a chunk never outgrows `chunk_bytes` by more than a batch).
    let slack = (FLUSHES_IN_FLIGHT * flush_bytes).min(config.chunk_bytes.max(1));
    let mut chunks: Vec<ChunkEntry> = Vec::new();
    let mut deadline: Option<Instant> = None;
    let mut job: Option<Job> = None;
    // The open chunk's size when the running job started (0 for a seal:
    // the next chunk starts empty): what came in since may not pass `flush_bytes`.
    let mut job_base: u64 = 0;
    let mut shutdown = shared.shutdown.subscribe();
    let mut outs: Vec<Out> = Vec::new();
    let mut last_t = 0.0;
    let mut failure: Option<String> = None;
    let how = loop {
        let held = job.is_some() && writer.size().saturating_sub(job_base) >= slack;
        tokio::select! {
            biased;
            stopping = async { shutdown.wait_for(|s| *s).await.is_ok() } => {
                if stopping { break EndedHow::Shutdown }
            }
            r = async { job.as_mut().unwrap_or_else(|| unreachable!("guarded")).done().await }, if job.is_some() => {
                job = None;
                match r {
                    JobDone::Flushed(Ok(upto)) => writer.flushed(upto),
                    JobDone::Flushed(Err(e)) => {
                        failure = Some(format!("making the spool durable failed: {e}"));
                        break EndedHow::Failed;
                    }
                    JobDone::Sealed(r) => {
                        writer.sealed();
                        if let Err(e) = shared.sealed_chunk(r, &mut chunks) {
                            failure = Some(e);
                            break EndedHow::Failed;
                        }
                        if let Err(e) = writer.write_out() {
                            failure = Some(format!("writing the spool failed: {e}"));
                            break EndedHow::Failed;
                        }
                    }
                }
                // What came in meanwhile may be due already.
                if let Err(e) = start_due(&mut job, &mut job_base, &mut writer, &tr, &sizes, &mut deadline) {
                    failure = Some(e);
                    break EndedHow::Failed;
                }
            }
            rec = rx.recv(), if !held => {
                let Some(rec) = rec else { break EndedHow::Closed };
                outs.clear();
                // What is already waiting goes in one batch, up to the chunk's room.
                let limit = BATCH_BYTES.min(config.chunk_bytes.saturating_sub(writer.size()));
                let mut taken = record_len(&rec);
                tr.translate(rec, &mut outs);
                while taken < limit {
                    let Ok(rec) = rx.try_recv() else { break };
                    taken += record_len(&rec);
                    tr.translate(rec, &mut outs);
                }
                if let Some(o) = outs.last() {
                    last_t = o.t();
                }
                let mut res = append_all(&shared, &mut writer, &outs);
                if res.is_ok() && rx.is_empty() {
                    res = writer.write_out();
                }
                if let Err(e) = res {
                    failure = Some(format!("writing the spool failed: {e}"));
                    break EndedHow::Failed;
                }
                if deadline.is_none() && writer.has_events() {
                    deadline = Some(Instant::now() + config.chunk_interval);
                }
                if job.is_none() && let Err(e) = start_due(&mut job, &mut job_base, &mut writer, &tr, &sizes, &mut deadline) {
                    failure = Some(e);
                    break EndedHow::Failed;
                }
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() && job.is_none() => {
                if let Err(e) = start_due(&mut job, &mut job_base, &mut writer, &tr, &sizes, &mut deadline) {
                    failure = Some(e);
                    break EndedHow::Failed;
                }
            }
        }
    };
    // From here the relays' next `record` fails: nothing is relayed unrecorded.
    rx.close();
    if let Some(mut running) = job.take() {
        match running.done().await {
            // The final seal fsyncs the whole chunk anyway.
            JobDone::Flushed(Ok(upto)) => writer.flushed(upto),
            JobDone::Flushed(Err(e)) => {
                failure.get_or_insert(format!("making the spool durable failed: {e}"));
            }
            JobDone::Sealed(r) => {
                writer.sealed();
                if let Err(e) = shared.sealed_chunk(r, &mut chunks) {
                    failure.get_or_insert(e);
                }
            }
        }
    }
    let mut end = Vec::new();
    if failure.is_none() {
        // Events already accepted may have been relayed: they are recorded too.
        while let Some(rec) = rx.recv().await {
            tr.translate(rec, &mut end);
        }
        last_t = end.last().map(|e| e.t()).unwrap_or(last_t);
    }
    drop(rx);
    let session = info.session.clone();
    if let Some(f) = &failure {
        *lock(&shared.last_spool_error) = Some(format!("session {session}: {f}"));
    }
    tr.flush_all(last_t, &mut end);
    let mut result: Result<(), String> = Ok(());
    if failure.is_none()
        && let Err(e) = append_all(&shared, &mut writer, &end)
    {
        result = Err(format!("writing the spool failed: {e}"));
    }
    // Even after a failure, try to close the recording properly; if the disk
    // refuses, the session stays in the spool and start-up recovery ends it.
    let (w, r) = seal(writer, tr.summaries()).await;
    let dir = w.dir().to_path_buf();
    if let Err(e) = shared.sealed_chunk(r, &mut chunks) {
        result = Err(e);
    }
    if result.is_ok() {
        let how = if failure.is_some() { EndedHow::Failed } else { how };
        let shared2 = shared.clone();
        let channels = tr.summaries();
        let written = tokio::task::spawn_blocking(move || {
            shared2.write_manifest(&dir, info, how, None, channels, chunks, SystemTime::now())
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(format!("writing the manifest failed: {e}")),
            Err(e) => result = Err(format!("writing the manifest failed: {e}")),
        }
    }
    if let Err(e) = result {
        let first = failure.map(|f| format!("{f}; then ")).unwrap_or_default();
        *lock(&shared.last_spool_error) = Some(format!("session {session}: {first}{e}"));
    }
    shared.open.fetch_sub(1, Ordering::AcqRel);
    shared.ended.notify_waiters();
}

impl Shared {
    fn sealed_chunk(
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
}
