//! The local spool: where a session's chunks are written, made durable and
//! sealed before the uploader hands them to the write-once store, and what
//! start-up recovery reads back after a crash.
//!
//! Layout, one directory per session under the spool root:
//!
//! - `meta.json` — who/where/why ([`SessionInfo`]), written and fsynced at start;
//! - `current.jsonl` — the open chunk, appended to as events arrive and
//!   fsynced every `flush_bytes` while it fills;
//! - `chunk-<seq>.jsonl` — sealed (fsynced, renamed, directory fsynced), waiting for upload;
//! - `index.jsonl` — one line per sealed chunk (its entry, the last event time
//!   and the channel summaries then), so the manifest can list chunks that were
//!   already uploaded and deleted from the spool;
//! - `manifest.json` — the signed manifest, uploaded after every chunk.
//!
//! A file is deleted only after the store confirmed it; the directory goes
//! when the manifest is confirmed.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::format::{self, ChunkHeader, Event, EventKind};
use crate::manifest::{ChannelSummary, ChunkEntry, SessionInfo, parse_rfc3339};

mod files;

use files::open_current;
pub use files::{Spares, drop_cached, fsync_dir, write_new_synced};

pub const META: &str = "meta.json";
pub const CURRENT: &str = "current.jsonl";
pub const INDEX: &str = "index.jsonl";
pub const MANIFEST: &str = "manifest.json";

/// Where an uploaded chunk's file waits to be the session's next
/// `current.jsonl` (see [`Spares`]): `spare-<seq>`.
pub const SPARE_PREFIX: &str = "spare-";

/// At most this many spare files per session.
pub const SPARES_PER_SESSION: usize = 4;

/// Appends one line to `index.jsonl` and fsyncs it.
fn append_index(dir: &Path, entry: &IndexEntry) -> io::Result<u64> {
    let mut line = serde_json::to_vec(entry).map_err(io::Error::other)?;
    line.push(b'\n');
    let mut f = OpenOptions::new().append(true).create(true).open(dir.join(INDEX))?;
    f.write_all(&line)?;
    f.sync_all()?;
    Ok(line.len() as u64)
}

/// What the spool remembers about a sealed chunk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexEntry {
    #[serde(flatten)]
    pub chunk: ChunkEntry,
    /// `t` of the chunk's last event.
    pub last_t: Option<f64>,
    /// Channel summaries as of the end of this chunk.
    pub channels: Vec<ChannelSummary>,
}

/// Reads `index.jsonl`; a torn last line (crash while appending) is ignored.
pub fn read_index(dir: &Path) -> io::Result<Vec<IndexEntry>> {
    let bytes = match fs::read(dir.join(INDEX)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(bytes
        .split(|b| *b == b'\n')
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect())
}

/// The open chunk of one session. Appends go to the page cache as events
/// arrive (a crash of the process loses nothing written); `seal` makes the
/// chunk durable and hands it to the uploader.
///
/// Sealing can run beside the recording: [`ChunkWriter::begin_seal`] takes
/// the open chunk out as a [`SealJob`] (its hash is known at once, so the
/// next chunk can chain to it), and the next chunk's lines wait in memory —
/// not in `current.jsonl`, which is still the sealing chunk's name until its
/// job renamed it — until [`ChunkWriter::sealed`] says the job is done. The
/// spool thus never holds more than one chunk that is not yet durable.
pub struct ChunkWriter {
    dir: PathBuf,
    session: String,
    seq: u64,
    prev: String,
    file: Option<File>,
    /// The open chunk has its header.
    started: bool,
    /// A seal job of the previous chunk runs: no file may be opened yet.
    held: bool,
    buf: Vec<u8>,
    hasher: Sha256,
    size: u64,
    /// Bytes of the open chunk known to be on disk (fsynced by a [`FlushJob`]):
    /// how much a machine crash could take is `size - synced`.
    synced: u64,
    events: u64,
    last_t: Option<f64>,
    spares: Spares,
}

/// Writes are batched up to this much before going to the file.
const WRITE_BUF: usize = 64 * 1024;

/// A chunk taken out of its [`ChunkWriter`] to be sealed: fsync, rename to
/// `chunk-<seq>.jsonl`, fsync of the directory, its line in the index.
pub struct SealJob {
    dir: PathBuf,
    spares: Spares,
    file: Option<File>,
    rest: Vec<u8>,
    entry: ChunkEntry,
    last_t: Option<f64>,
}

impl SealJob {
    /// The chunk as the manifest will list it.
    pub fn entry(&self) -> &ChunkEntry {
        &self.entry
    }

    /// Makes the chunk durable and sealed, notes it in the index with
    /// `channels`. Returns the entry and the bytes the index grew by.
    /// Blocking: call from a blocking thread.
    pub fn run(self, channels: Vec<ChannelSummary>) -> io::Result<(ChunkEntry, u64)> {
        let mut file = match self.file {
            Some(f) => f,
            None => open_current(&self.dir, &self.spares)?,
        };
        if !self.rest.is_empty() {
            file.write_all(&self.rest)?;
        }
        file.sync_all()?;
        drop_cached(&file);
        drop(file);
        let name = format::chunk_file_name(self.entry.seq);
        fs::rename(self.dir.join(CURRENT), self.dir.join(&name))?;
        fsync_dir(&self.dir)?;
        let grew = append_index(
            &self.dir,
            &IndexEntry {
                chunk: self.entry.clone(),
                last_t: self.last_t,
                channels,
            },
        )?;
        Ok((self.entry, grew))
    }
}

/// An fsync of the open chunk's file up to a point, run on a blocking thread
/// while the writer goes on appending after that point (see
/// [`ChunkWriter::begin_flush`]).
pub struct FlushJob {
    file: File,
    upto: u64,
}

impl FlushJob {
    /// Makes the file durable; returns the chunk size it covers. Blocking.
    pub fn run(self) -> io::Result<u64> {
        self.file.sync_data()?;
        drop_cached(&self.file);
        Ok(self.upto)
    }
}

impl ChunkWriter {
    /// The next chunk will be `seq`, chained to `prev`.
    pub fn new(dir: PathBuf, session: String, seq: u64, prev: String) -> Self {
        ChunkWriter {
            dir,
            session,
            seq,
            prev,
            file: None,
            started: false,
            held: false,
            buf: Vec::new(),
            hasher: Sha256::new(),
            size: 0,
            synced: 0,
            events: 0,
            last_t: None,
            spares: Spares::default(),
        }
    }

    /// Takes the chunk files from `spares` where it can (see [`Spares`]).
    pub fn reuse_files(mut self, spares: Spares) -> Self {
        self.spares = spares;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes in the open chunk.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes of the open chunk not yet known to be on disk.
    pub fn unsynced(&self) -> u64 {
        self.size - self.synced
    }

    /// Whether the open chunk holds events.
    pub fn has_events(&self) -> bool {
        self.events > 0
    }

    /// The hash of the last sealed chunk (the chain head so far).
    pub fn prev(&self) -> &str {
        &self.prev
    }

    fn start(&mut self) -> io::Result<u64> {
        if self.started {
            return Ok(0);
        }
        self.started = true;
        let mut header = serde_json::to_vec(&ChunkHeader {
            session: self.session.clone(),
            seq: self.seq,
            prev: self.prev.clone(),
        })
        .map_err(io::Error::other)?;
        header.push(b'\n');
        Ok(self.push(&header))
    }

    /// Adds an event; returns how many bytes the spool grew by.
    pub fn append(&mut self, event: &Event) -> io::Result<u64> {
        self.append_line(event.t, &event.to_line())
    }

    /// Adds an event already written as its line (with the newline, see
    /// [`format::write_data_line`]); returns how many bytes the spool grew by.
    pub fn append_line(&mut self, t: f64, line: &[u8]) -> io::Result<u64> {
        let mut grew = self.start()?;
        grew += self.push(line);
        self.events += 1;
        self.last_t = Some(t);
        if self.buf.len() >= WRITE_BUF {
            self.write_out()?;
        }
        Ok(grew)
    }

    /// Adds an `o`/`i` event of `piece`, written straight into the buffer
    /// ([`format::write_data_line`]); returns how many bytes the spool grew by.
    pub fn append_data(&mut self, t: f64, ch: u32, input: bool, err: bool, piece: &format::Piece) -> io::Result<u64> {
        let mut grew = self.start()?;
        let from = self.buf.len();
        format::write_data_line(&mut self.buf, t, ch, input, err, piece);
        let line = &self.buf[from..];
        self.hasher.update(line);
        self.size += line.len() as u64;
        grew += line.len() as u64;
        self.events += 1;
        self.last_t = Some(t);
        if self.buf.len() >= WRITE_BUF {
            self.write_out()?;
        }
        Ok(grew)
    }

    fn push(&mut self, bytes: &[u8]) -> u64 {
        self.hasher.update(bytes);
        self.buf.extend_from_slice(bytes);
        self.size += bytes.len() as u64;
        bytes.len() as u64
    }

    /// Hands buffered lines to the file (page cache; no fsync). While the
    /// previous chunk's seal job runs they stay in memory.
    pub fn write_out(&mut self) -> io::Result<()> {
        if self.held || self.buf.is_empty() {
            return Ok(());
        }
        if self.file.is_none() {
            self.file = Some(open_current(&self.dir, &self.spares)?);
        }
        if let Some(f) = self.file.as_mut() {
            f.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Hands what is buffered to the file and returns a job that makes the
    /// open chunk durable up to there without closing it, so a long chunk
    /// is fsynced every few hundred KiB while it fills; `None` while a seal
    /// job runs or when everything written is durable already.
    pub fn begin_flush(&mut self) -> io::Result<Option<FlushJob>> {
        if self.held {
            return Ok(None);
        }
        self.write_out()?;
        match &self.file {
            Some(f) if self.size > self.synced => Ok(Some(FlushJob {
                file: f.try_clone()?,
                upto: self.size,
            })),
            _ => Ok(None),
        }
    }

    /// A [`FlushJob`] made the open chunk durable up to `upto` bytes.
    pub fn flushed(&mut self, upto: u64) {
        self.synced = self.synced.max(upto.min(self.size));
    }

    /// Takes the open chunk out to be sealed and starts the next one, chained
    /// to it; `None` when there is nothing to seal. Until [`Self::sealed`] is
    /// called, the next chunk stays in memory. Must not be called while an
    /// earlier job runs.
    pub fn begin_seal(&mut self) -> Option<SealJob> {
        debug_assert!(!self.held, "one seal job at a time");
        if !self.started {
            return None;
        }
        let sha: [u8; 32] = std::mem::take(&mut self.hasher).finalize().into();
        let entry = ChunkEntry {
            seq: self.seq,
            key: format::chunk_key(&self.session, self.seq),
            size: self.size,
            sha256: hex::encode(sha),
        };
        let job = SealJob {
            dir: self.dir.clone(),
            spares: self.spares.clone(),
            file: self.file.take(),
            rest: std::mem::take(&mut self.buf),
            entry,
            last_t: self.last_t,
        };
        self.prev = job.entry.sha256.clone();
        self.seq += 1;
        self.size = 0;
        self.synced = 0;
        self.events = 0;
        self.started = false;
        self.held = true;
        Some(job)
    }

    /// The seal job of the previous chunk is done: the next chunk may have
    /// its file.
    pub fn sealed(&mut self) {
        self.held = false;
    }

    /// Whether a seal job of this writer runs.
    pub fn sealing(&self) -> bool {
        self.held
    }

    /// Makes the open chunk durable and sealed: fsync, rename to
    /// `chunk-<seq>.jsonl`, fsync the directory, note it in the index with
    /// `channels`. Returns the entry and the bytes the index grew by; `None`
    /// when there was nothing to seal. Blocking: call from a blocking thread.
    pub fn seal(&mut self, channels: Vec<ChannelSummary>) -> io::Result<Option<(ChunkEntry, u64)>> {
        let Some(job) = self.begin_seal() else {
            return Ok(None);
        };
        let r = job.run(channels);
        self.sealed();
        r.map(Some)
    }
}

/// A session found in the spool without a manifest: the bastion stopped
/// while it ran. Everything complete was sealed; the manifest is still to write.
#[derive(Debug, Clone)]
pub struct CutSession {
    pub dir: PathBuf,
    pub info: SessionInfo,
    pub chunks: Vec<ChunkEntry>,
    pub channels: Vec<ChannelSummary>,
    /// The time of the last event that reached the disk (else the start).
    pub last_event: SystemTime,
    /// Event lines kept from the open chunk, and bytes of a torn line dropped.
    pub kept_lines: usize,
    pub dropped_bytes: u64,
}

/// Reads back a cut session: seals the complete lines of `current.jsonl`
/// (a torn last line is dropped), indexes sealed chunks the index missed,
/// and rebuilds the channel summaries. Blocking.
pub fn recover_cut(dir: &Path) -> io::Result<CutSession> {
    let info: SessionInfo = serde_json::from_slice(&fs::read(dir.join(META))?).map_err(io::Error::other)?;
    let mut index = read_index(dir)?;
    let mut book = ChannelBook::from_summaries(index.last().map(|e| e.channels.clone()).unwrap_or_default());
    let mut last_t = index.iter().rev().find_map(|e| e.last_t);

    // Chunks sealed (renamed) just before the crash but not yet in the index.
    let indexed_max = index.last().map(|e| e.chunk.seq);
    let mut unindexed: Vec<u64> = list_chunk_files(dir)?
        .into_iter()
        .filter(|s| indexed_max.is_none_or(|m| *s > m))
        .collect();
    unindexed.sort();
    for seq in unindexed {
        let bytes = fs::read(dir.join(format::chunk_file_name(seq)))?;
        let parsed = format::parse_chunk(&bytes).map_err(io::Error::other)?;
        for e in &parsed.events {
            book.apply(e);
            last_t = Some(e.t);
        }
        let entry = IndexEntry {
            chunk: ChunkEntry {
                seq,
                key: format::chunk_key(&info.session, seq),
                size: bytes.len() as u64,
                sha256: format::sha256_hex(&bytes),
            },
            last_t,
            channels: book.summaries(),
        };
        append_index(dir, &entry)?;
        index.push(entry);
    }

    let mut kept_lines = 0;
    let mut dropped_bytes = 0;
    let current = dir.join(CURRENT);
    if let Ok(bytes) = fs::read(&current) {
        // Keep whole lines that parse; the first that does not (a torn
        // write) and anything after it is dropped.
        let mut keep = 0usize;
        let mut events = Vec::new();
        let mut header_ok = false;
        for (i, line) in bytes.split_inclusive(|b| *b == b'\n').enumerate() {
            if !line.ends_with(b"\n") {
                break;
            }
            let body = &line[..line.len() - 1];
            if i == 0 {
                if serde_json::from_slice::<ChunkHeader>(body).is_err() {
                    break;
                }
                header_ok = true;
            } else {
                match serde_json::from_slice::<Event>(body) {
                    Ok(e) => events.push(e),
                    Err(_) => break,
                }
            }
            keep += line.len();
        }
        dropped_bytes = (bytes.len() - keep) as u64;
        if header_ok && !events.is_empty() {
            for e in &events {
                book.apply(e);
                last_t = Some(e.t);
            }
            kept_lines = events.len();
            let f = OpenOptions::new().write(true).open(&current)?;
            f.set_len(keep as u64)?;
            f.sync_all()?;
            drop(f);
            let kept = &bytes[..keep];
            let header: ChunkHeader =
                serde_json::from_slice(&kept[..kept.iter().position(|b| *b == b'\n').unwrap_or(0)])
                    .map_err(io::Error::other)?;
            let name = format::chunk_file_name(header.seq);
            fs::rename(&current, dir.join(&name))?;
            fsync_dir(dir)?;
            let entry = IndexEntry {
                chunk: ChunkEntry {
                    seq: header.seq,
                    key: format::chunk_key(&info.session, header.seq),
                    size: keep as u64,
                    sha256: format::sha256_hex(kept),
                },
                last_t,
                channels: book.summaries(),
            };
            append_index(dir, &entry)?;
            index.push(entry);
        } else {
            // Only a header, or not even that: nothing of the session is in
            // it, and its key was never uploaded, so it simply goes.
            fs::remove_file(&current)?;
            fsync_dir(dir)?;
        }
    }

    let started = parse_rfc3339(&info.started).unwrap_or(SystemTime::UNIX_EPOCH);
    let last_event = started + last_t.map(|t| Duration::from_secs_f64(t.max(0.0))).unwrap_or_default();
    Ok(CutSession {
        dir: dir.to_path_buf(),
        info,
        chunks: index.into_iter().map(|e| e.chunk).collect(),
        channels: book.summaries(),
        last_event,
        kept_lines,
        dropped_bytes,
    })
}

/// Sequence numbers of the sealed chunk files in a session directory.
pub fn list_chunk_files(dir: &Path) -> io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(seq) = name.to_str().and_then(format::parse_chunk_file_name) {
            out.push(seq);
        }
    }
    out.sort();
    Ok(out)
}

/// Total size of the files under `root` (one level of session directories).
pub fn spool_bytes(root: &Path) -> u64 {
    let Ok(sessions) = fs::read_dir(root) else { return 0 };
    sessions.flatten().map(|s| spool_bytes_of_dir(&s.path())).sum()
}

/// Total size of the files in one session directory.
pub fn spool_bytes_of_dir(dir: &Path) -> u64 {
    let Ok(files) = fs::read_dir(dir) else { return 0 };
    files.flatten().filter_map(|f| f.metadata().ok()).map(|m| m.len()).sum()
}

/// Channel summaries rebuilt from stored events (used by recovery, where
/// only what reached the disk is known).
#[derive(Debug, Default, Clone)]
pub struct ChannelBook {
    channels: BTreeMap<u32, ChannelSummary>,
}

impl ChannelBook {
    pub fn from_summaries(list: Vec<ChannelSummary>) -> Self {
        ChannelBook {
            channels: list.into_iter().map(|c| (c.index, c)).collect(),
        }
    }

    pub fn summaries(&self) -> Vec<ChannelSummary> {
        self.channels.values().cloned().collect()
    }

    /// Folds one stored event into the summaries.
    pub fn apply(&mut self, e: &Event) {
        let c = self.channels.entry(e.ch).or_insert_with(|| ChannelSummary {
            index: e.ch,
            ..Default::default()
        });
        match &e.kind {
            EventKind::Open { kind, host, port } => {
                c.kind = kind.clone();
                if let (Some(h), Some(p)) = (host, port) {
                    c.destination = Some(format!("{h}:{p}"));
                }
            }
            EventKind::Pty { term, cols, rows } => c.pty = Some(format!("{term} {cols}x{rows}")),
            EventKind::Exec { command } => c.command = Some(command.clone()),
            EventKind::Subsystem { name } => c.subsystem = Some(name.clone()),
            EventKind::Exit { status, signal, .. } => {
                c.exit_status = *status;
                c.exit_signal = signal.clone();
            }
            EventKind::Output { d, b64, .. } => c.bytes_out += format::event_bytes(d, b64).len() as u64,
            EventKind::Input { d, b64 } => c.bytes_in += format::event_bytes(d, b64).len() as u64,
            EventKind::Close { bytes_in, bytes_out }
            | EventKind::Fwd {
                bytes_in, bytes_out, ..
            } => {
                c.bytes_in = c.bytes_in.max(*bytes_in);
                c.bytes_out = c.bytes_out.max(*bytes_out);
                if matches!(e.kind, EventKind::Close { .. }) {
                    c.closed = true;
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
#[path = "spool_tests.rs"]
mod tests;
