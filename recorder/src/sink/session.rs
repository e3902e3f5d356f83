//! One session's recording loop: takes the tap's records in batches, has
//! the translator make their lines, appends them to the open chunk, and
//! runs the disk job it is due for beside the recording; at the end seals
//! the last chunk and writes the signed manifest.
//!
//! It fails closed and bounds what is not durable: once it stops (every tap
//! gone, the recorder shutting down, or the spool failing) the relays' next
//! `record` fails, and while a disk job runs at most [`FLUSHES_IN_FLIGHT`]
//! `flush_bytes` more come in before the queue's back-pressure reaches the
//! relay.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::disk::{Job, JobDone, Sizes, append_all, due_job, seal};
use super::live::LiveFeed;
use super::shared::{Shared, lock};
use super::translate::{Out, Translator};
use crate::manifest::{ChunkEntry, EndedHow, SessionInfo};
use crate::spool::ChunkWriter;
use crate::tap::{ChannelEvent, Record};

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
/// before they are written: consecutive reads become one event (the
/// translator merges one stream's data within a batch).
pub const BATCH_BYTES: u64 = 64 * 1024;

fn record_len(r: &Record) -> u64 {
    match &r.event {
        ChannelEvent::Data { bytes, .. } => bytes.len() as u64,
        _ => 64,
    }
}

/// A running session's recording state.
struct Session {
    shared: Arc<Shared>,
    writer: ChunkWriter,
    tr: Translator,
    sizes: Sizes,
    chunk_interval: Duration,
    /// What may come in while a job runs (a chunk never outgrows
    /// `chunk_bytes` by more than a batch).
    slack: u64,
    chunks: Vec<ChunkEntry>,
    /// When the open chunk is to be sealed (`chunk_interval` after its first event).
    deadline: Option<Instant>,
    job: Option<Job>,
    /// The open chunk's size when the running job started (0 for a seal:
    /// the next chunk starts empty): what came in since may not pass `flush_bytes`.
    job_base: u64,
    /// The last batch's output.
    outs: Vec<Out>,
    /// The time of the last event made.
    last_t: f64,
    /// Numbers the lines written and sends them to watchers.
    live: LiveFeed,
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
pub(super) async fn run_session(
    shared: Arc<Shared>,
    writer: ChunkWriter,
    info: SessionInfo,
    mut rx: mpsc::Receiver<Record>,
    live: LiveFeed,
) {
    let mut session = Session::new(shared, writer, info.record_input, live);
    let ended = session.record(&mut rx).await;
    session.end(info, ended, rx).await;
}

impl Session {
    fn new(shared: Arc<Shared>, writer: ChunkWriter, record_input: bool, live: LiveFeed) -> Session {
        let config = &shared.config;
        let flush_bytes = config.flush_bytes.clamp(1, config.chunk_bytes.max(1));
        let sizes = Sizes {
            chunk_bytes: config.chunk_bytes,
            flush_bytes,
            before_sync: config.before_sync.clone(),
        };
        let slack = (FLUSHES_IN_FLIGHT * flush_bytes).min(config.chunk_bytes.max(1));
        let chunk_interval = config.chunk_interval;
        Session {
            shared,
            writer,
            tr: Translator::new(record_input),
            sizes,
            chunk_interval,
            slack,
            chunks: Vec::new(),
            deadline: None,
            job: None,
            job_base: 0,
            outs: Vec::new(),
            last_t: 0.0,
            live,
        }
    }

    /// Records until the session stops: how it ended, or why it failed.
    async fn record(&mut self, rx: &mut mpsc::Receiver<Record>) -> Result<EndedHow, String> {
        let mut shutdown = self.shared.shutdown.subscribe();
        loop {
            let has_job = self.job.is_some();
            let held = has_job && self.writer.size().saturating_sub(self.job_base) >= self.slack;
            let deadline = self.deadline;
            let job = &mut self.job;
            tokio::select! {
                biased;
                stopping = async { shutdown.wait_for(|s| *s).await.is_ok() } => {
                    if stopping { return Ok(EndedHow::Shutdown) }
                }
                r = async { job.as_mut().unwrap_or_else(|| unreachable!("guarded")).done().await }, if has_job => {
                    self.job = None;
                    self.job_done(r)?;
                }
                rec = rx.recv(), if !held => {
                    let Some(rec) = rec else { return Ok(EndedHow::Closed) };
                    self.take_batch(rec, rx)?;
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() && !has_job => {
                    self.start_due()?;
                }
            }
        }
    }

    /// Notes what the disk job came to, then starts the next one if due.
    fn job_done(&mut self, r: JobDone) -> Result<(), String> {
        match r {
            JobDone::Flushed(Ok(upto)) => self.writer.flushed(upto),
            JobDone::Flushed(Err(e)) => return Err(format!("making the spool durable failed: {e}")),
            JobDone::Sealed(r) => {
                self.writer.sealed();
                self.shared.sealed_chunk(r, &mut self.chunks)?;
                self.writer
                    .write_out()
                    .map_err(|e| format!("writing the spool failed: {e}"))?;
            }
        }
        // What came in meanwhile may be due already.
        self.start_due()
    }

    /// Records `first` and what is already waiting behind it, in one batch
    /// up to the chunk's room.
    fn take_batch(&mut self, first: Record, rx: &mut mpsc::Receiver<Record>) -> Result<(), String> {
        self.outs.clear();
        let limit = BATCH_BYTES.min(self.sizes.chunk_bytes.saturating_sub(self.writer.size()));
        let mut taken = record_len(&first);
        self.tr.translate(first, &mut self.outs);
        while taken < limit {
            let Ok(rec) = rx.try_recv() else { break };
            taken += record_len(&rec);
            self.tr.translate(rec, &mut self.outs);
        }
        if let Some(o) = self.outs.last() {
            self.last_t = o.t();
        }
        let mut res = append_all(&self.shared, &mut self.writer, &self.outs);
        if res.is_ok() && rx.is_empty() {
            res = self.writer.write_out();
        }
        res.map_err(|e| format!("writing the spool failed: {e}"))?;
        // Only lines the chunk holds are shown, and only once they are.
        self.live.publish(&self.outs);
        if self.deadline.is_none() && self.writer.has_events() {
            self.deadline = Some(Instant::now() + self.chunk_interval);
        }
        if self.job.is_none() {
            self.start_due()?;
        }
        Ok(())
    }

    /// Starts the job the open chunk is due for, if any ([`due_job`]), and
    /// notes the chunk's size then (`job_base`).
    fn start_due(&mut self) -> Result<(), String> {
        self.job = due_job(&mut self.writer, &self.tr, &self.sizes, &mut self.deadline)
            .map_err(|e| format!("writing the spool failed: {e}"))?;
        self.job_base = self.writer.size();
        Ok(())
    }

    /// After the loop: no more records are taken, what was accepted is
    /// recorded, the last chunk sealed and the manifest written; a failure
    /// is noted for `/readyz`.
    async fn end(mut self, info: SessionInfo, ended: Result<EndedHow, String>, mut rx: mpsc::Receiver<Record>) {
        let (how, mut failure) = match ended {
            Ok(how) => (how, None),
            Err(f) => (EndedHow::Failed, Some(f)),
        };
        // From here the relays' next `record` fails: nothing is relayed unrecorded.
        rx.close();
        if let Some(e) = self.finish_job().await {
            failure.get_or_insert(e);
        }
        let mut end = Vec::new();
        if failure.is_none() {
            // Events already accepted may have been relayed: they are recorded too.
            while let Some(rec) = rx.recv().await {
                self.tr.translate(rec, &mut end);
            }
            self.last_t = end.last().map(|e| e.t()).unwrap_or(self.last_t);
        }
        drop(rx);
        let shared = self.shared.clone();
        let session = info.session.clone();
        if let Some(f) = &failure {
            *lock(&shared.last_spool_error) = Some(format!("session {session}: {f}"));
        }
        let how = if failure.is_some() { EndedHow::Failed } else { how };
        if let Err(e) = self.seal_and_sign(info, how, failure.is_none(), end).await {
            let first = failure.map(|f| format!("{f}; then ")).unwrap_or_default();
            *lock(&shared.last_spool_error) = Some(format!("session {session}: {first}{e}"));
        }
        shared.open.fetch_sub(1, Ordering::AcqRel);
        shared.ended.notify_waiters();
    }

    /// Waits for the running disk job; what went wrong, if anything.
    async fn finish_job(&mut self) -> Option<String> {
        let mut running = self.job.take()?;
        match running.done().await {
            // The final seal fsyncs the whole chunk anyway.
            JobDone::Flushed(Ok(upto)) => {
                self.writer.flushed(upto);
                None
            }
            JobDone::Flushed(Err(e)) => Some(format!("making the spool durable failed: {e}")),
            JobDone::Sealed(r) => {
                self.writer.sealed();
                self.shared.sealed_chunk(r, &mut self.chunks).err()
            }
        }
    }

    /// Appends `end` (when `clean`, i.e. the spool did not fail) and what
    /// the translator still holds, seals the last chunk and writes the
    /// manifest.
    async fn seal_and_sign(
        mut self,
        info: SessionInfo,
        how: EndedHow,
        clean: bool,
        mut end: Vec<Out>,
    ) -> Result<(), String> {
        self.tr.flush_all(self.last_t, &mut end);
        let mut result: Result<(), String> = Ok(());
        if clean {
            match append_all(&self.shared, &mut self.writer, &end) {
                Ok(()) => self.live.publish(&end),
                Err(e) => result = Err(format!("writing the spool failed: {e}")),
            }
        }
        // Even after a failure, try to close the recording properly; if the disk
        // refuses, the session stays in the spool and start-up recovery ends it.
        let (w, r) = seal(self.writer, self.tr.summaries()).await;
        let dir = w.dir().to_path_buf();
        if let Err(e) = self.shared.sealed_chunk(r, &mut self.chunks) {
            result = Err(e);
        }
        // Every line is in a sealed chunk file now (or the disk refused it):
        // watchers that fell behind find the rest there.
        self.live.end();
        result?;
        let shared = self.shared.clone();
        let channels = self.tr.summaries();
        let notes = self.tr.notes();
        let how = match (&notes.terminated, how) {
            (Some(_), EndedHow::Closed) => EndedHow::Terminated,
            (_, how) => how,
        };
        let chunks = self.chunks;
        let written = tokio::task::spawn_blocking(move || {
            shared.write_manifest(&dir, info, how, None, notes, channels, chunks, SystemTime::now())
        })
        .await;
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("writing the manifest failed: {e}")),
            Err(e) => Err(format!("writing the manifest failed: {e}")),
        }
    }
}
