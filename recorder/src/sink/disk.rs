//! A session's disk jobs: the one job at a time (an fsync of the open chunk
//! or the seal of a full one) that runs on a blocking thread beside the
//! recording, when the open chunk is due for it, and the writing of the
//! translator's output into the open chunk (page cache only; durable once
//! a job fsynced it). A job that panicked panics the session, never passes
//! as done.

use std::sync::atomic::Ordering;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::SyncHook;
use super::shared::Shared;
use super::translate::{Out, Translator};
use crate::manifest::{ChannelSummary, ChunkEntry};
use crate::spool::ChunkWriter;

type Sealing = JoinHandle<std::io::Result<(ChunkEntry, u64)>>;

/// The one disk job of a session that runs beside the recording, on a
/// blocking thread (fsync can take a while).
pub(super) enum Job {
    /// The open chunk is fsynced up to a point; appends go on after it.
    Flush(JoinHandle<std::io::Result<u64>>),
    /// The previous chunk is sealed; the next one waits in memory.
    Seal(Sealing),
}

/// What a [`Job`] came to.
pub(super) enum JobDone {
    Flushed(std::io::Result<u64>),
    Sealed(std::io::Result<Option<(ChunkEntry, u64)>>),
}

impl Job {
    pub(super) async fn done(&mut self) -> JobDone {
        match self {
            Job::Flush(h) => JobDone::Flushed(match h.await {
                Ok(r) => r,
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }),
            Job::Seal(h) => JobDone::Sealed(sealed(h).await),
        }
    }
}

async fn sealed(h: &mut Sealing) -> std::io::Result<Option<(ChunkEntry, u64)>> {
    match h.await {
        Ok(r) => r.map(Some),
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// What decides when the open chunk is due for a job (see [`due_job`]),
/// and the hook run before each of its fsyncs.
pub(super) struct Sizes {
    pub(super) chunk_bytes: u64,
    pub(super) flush_bytes: u64,
    pub(super) before_sync: Option<SyncHook>,
}

/// The job the open chunk is due for, if any: a seal once it is full or its
/// time is up, else an fsync once `flush_bytes` are not yet durable.
pub(super) fn due_job(
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

/// Starts sealing the open chunk on a blocking thread; the recording goes on
/// meanwhile (the next chunk waits in memory, see [`ChunkWriter::begin_seal`]).
fn begin_seal(writer: &mut ChunkWriter, tr: &Translator) -> Option<Job> {
    let job = writer.begin_seal()?;
    let channels = tr.summaries();
    Some(Job::Seal(tokio::task::spawn_blocking(move || job.run(channels))))
}

/// Seals the open chunk on a blocking thread (fsync can take a while): the
/// session's last seal, which nothing runs beside.
pub(super) async fn seal(
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

/// Writes what the translator made into the open chunk: one line per
/// [`Out`], made as [`line_of`] makes it.
pub(super) fn append_all(shared: &Shared, writer: &mut ChunkWriter, outs: &[Out]) -> std::io::Result<()> {
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

/// The chunk line of `o`, with its newline, appended to `buf`: the same
/// calls [`ChunkWriter::append`] and [`ChunkWriter::append_data`] make, so
/// a watcher's line is byte for byte the recorded one.
pub(super) fn line_of(o: &Out, buf: &mut Vec<u8>) {
    match o {
        Out::Event(e) => buf.extend_from_slice(&e.to_line()),
        Out::Data {
            t,
            ch,
            input,
            err,
            piece,
        } => crate::format::write_data_line(buf, *t, *ch, *input, *err, piece),
    }
}
