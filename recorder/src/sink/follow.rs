//! Following a running session: its recorded event lines from the first,
//! then live, each exactly once and in order, joined by sequence number
//! (see [`super::live`]). The SSH `sessions watch` and the browser's
//! WebSocket both loop on [`Follower::next`].
//!
//! The lines before a subscription, and those a slow watcher missed, are
//! read back from the recording's files ([`Backlog`]): sealed chunks from the
//! spool or, once uploaded, from the store; then the open chunk,
//! `current.jsonl`. A chunk may move meanwhile (sealed: renamed; uploaded:
//! linked into the store, or renamed to a spare and emptied to become a later
//! `current.jsonl`), so a spool file counts only if a name the chunk may
//! still have points at the inode that was read, and its header names the
//! chunk; otherwise it is looked for again.
//!
//! A line sent live may not be in a file yet: the chunk writer buffers up
//! to 64 KiB while more records wait in the queue, and while a seal runs the
//! next chunk's lines wait in memory until the rename is done. Both pass on
//! their own within the time of a batch or a seal, so the reader polls (2 ms
//! doubling to 50 ms) for at most [`WAIT_LIMIT`]. Asking the session loop to
//! flush on subscription would not spare that wait (it cannot write during
//! a seal, and a flag is only seen at the next batch) and would put a check
//! on every batch of every session for the rare watched one.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::broadcast::error::RecvError;

use super::live::{LiveBatch, Watch};
use crate::format::{self, ChunkHeader};
use crate::spool;
use crate::store::{Store, StoreError};

/// How long a line the feed numbered may take to reach the files.
pub const WAIT_LIMIT: Duration = Duration::from_secs(5);

/// Why a follower cannot go on (it yields nothing after this).
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("reading the recording: {0}")]
    Store(#[from] StoreError),
    #[error("reading the spool: {0}")]
    Io(#[from] io::Error),
    #[error("chunk {chunk} of the recording is damaged: {why}")]
    Damaged { chunk: u64, why: String },
    #[error("line {seq} did not reach the recording's files within {WAIT_LIMIT:?}")]
    NotWritten { seq: u64 },
    #[error("the live feed skipped from line {expected} to {got}")]
    Gap { expected: u64, got: u64 },
    #[error("the session's live feed stopped without saying it ended")]
    Cut,
}

/// Reads a session's recorded event lines back by sequence number.
pub struct Backlog {
    store: Arc<dyn Store>,
    dir: PathBuf,
    session: String,
    /// A chunk and the number of its first line: where reading resumes.
    mark: (u64, u64),
}

/// Where a chunk was found: sealed (all its lines) or open (lines so far).
enum Found {
    Sealed(Vec<u8>),
    Open(Vec<u8>),
    Missing,
}

/// The event lines with `seq < upto` of a session recorded into the spool
/// under `spool_root` and `store`, in order.
pub async fn recorded_lines(
    store: Arc<dyn Store>,
    spool_root: &Path,
    session: &str,
    upto: u64,
) -> Result<Vec<String>, FollowError> {
    let mut backlog = Backlog::new(store, spool_root, session);
    let mut out = Vec::new();
    while (out.len() as u64) < upto {
        out.extend(backlog.read_chunk(out.len() as u64, upto).await?);
    }
    Ok(out)
}

impl Backlog {
    pub fn new(store: Arc<dyn Store>, spool_root: &Path, session: &str) -> Backlog {
        Backlog {
            store,
            dir: spool_root.join(session),
            session: session.to_owned(),
            mark: (0, 0),
        }
    }

    /// Lines `from..upto` as far as the chunk holding line `from` has them:
    /// at least one when `from < upto`. Waits up to [`WAIT_LIMIT`] for a
    /// line not yet in a file.
    pub async fn read_chunk(&mut self, from: u64, upto: u64) -> Result<Vec<String>, FollowError> {
        if from >= upto {
            return Ok(Vec::new());
        }
        if from < self.mark.1 {
            self.mark = (0, 0);
        }
        let mut wait = Poll::new();
        loop {
            let (chunk, first) = self.mark;
            let (bytes, sealed) = match self.find(chunk).await? {
                Found::Sealed(b) => (b, true),
                Found::Open(b) => (b, false),
                Found::Missing => {
                    wait.sleep(from).await?;
                    continue;
                }
            };
            let lines = event_lines(&bytes, chunk, &self.session, sealed)?;
            let n = lines.len() as u64;
            if from < first + n {
                let end = (upto - first).min(n);
                if sealed && end == n {
                    self.mark = (chunk + 1, first + n);
                }
                return owned(&lines[(from - first) as usize..end as usize], chunk);
            }
            if sealed {
                self.mark = (chunk + 1, first + n);
                wait = Poll::new();
            } else {
                wait.sleep(from).await?;
            }
        }
    }

    /// Looks for chunk `chunk`: sealed in the spool, in the store, open in
    /// the spool, then (moved meanwhile) sealed again.
    async fn find(&self, chunk: u64) -> Result<Found, FollowError> {
        let sealed = self.dir.join(format::chunk_file_name(chunk));
        let current = self.dir.join(spool::CURRENT);
        if let Some(b) = read_stable(&sealed, &[&sealed]).await? {
            return Ok(Found::Sealed(b));
        }
        if let Some(b) = self.stored(chunk).await? {
            return Ok(Found::Sealed(b));
        }
        if let Some(b) = read_stable(&current, &[&current, &sealed]).await? {
            match header_of(&b).map(|h| h.seq) {
                Some(s) if s == chunk => return Ok(Found::Open(b)),
                // Sealed since the looks above.
                Some(s) if s > chunk => {}
                // Still the chunk before, or no header yet: not written yet.
                _ => return Ok(Found::Missing),
            }
        }
        if let Some(b) = read_stable(&sealed, &[&sealed]).await? {
            return Ok(Found::Sealed(b));
        }
        Ok(self.stored(chunk).await?.map_or(Found::Missing, Found::Sealed))
    }

    async fn stored(&self, chunk: u64) -> Result<Option<Vec<u8>>, StoreError> {
        match self.store.get(&format::chunk_key(&self.session, chunk)).await {
            Ok(b) => Ok(Some(b.to_vec())),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Waiting for a line to reach the files: short sleeps, bounded in all.
struct Poll {
    since: Instant,
    delay: Duration,
}

impl Poll {
    fn new() -> Poll {
        Poll {
            since: Instant::now(),
            delay: Duration::from_millis(2),
        }
    }

    async fn sleep(&mut self, seq: u64) -> Result<(), FollowError> {
        if self.since.elapsed() > WAIT_LIMIT {
            return Err(FollowError::NotWritten { seq });
        }
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(Duration::from_millis(50));
        Ok(())
    }
}

/// Reads `path` whole, on a blocking thread; `None` when it is gone, or
/// when afterwards none of `names` is the file that was read (it was
/// renamed meanwhile, maybe to a spare about to be emptied and reused).
async fn read_stable(path: &Path, names: &[&Path]) -> io::Result<Option<Vec<u8>>> {
    let path = path.to_path_buf();
    let names: Vec<PathBuf> = names.iter().map(|n| n.to_path_buf()).collect();
    let read = tokio::task::spawn_blocking(move || {
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let m = f.metadata()?;
        let id = (m.dev(), m.ino());
        let mut bytes = Vec::with_capacity(m.len() as usize);
        f.read_to_end(&mut bytes)?;
        let same = |n: &PathBuf| std::fs::metadata(n).is_ok_and(|m| (m.dev(), m.ino()) == id);
        Ok(names.iter().any(same).then_some(bytes))
    });
    read.await.map_err(io::Error::other)?
}

fn header_of(bytes: &[u8]) -> Option<ChunkHeader> {
    let end = bytes.iter().position(|b| *b == b'\n')?;
    serde_json::from_slice(&bytes[..end]).ok()
}

/// The complete event lines of chunk `chunk` (without newlines), after its
/// header; a sealed chunk must end with a complete line.
fn event_lines<'a>(bytes: &'a [u8], chunk: u64, session: &str, sealed: bool) -> Result<Vec<&'a [u8]>, FollowError> {
    let damaged = |why: String| FollowError::Damaged { chunk, why };
    if !sealed && !bytes.contains(&b'\n') {
        return Ok(Vec::new());
    }
    let header = header_of(bytes).ok_or_else(|| damaged("its header is not readable".into()))?;
    if header.seq != chunk || header.session != session {
        return Err(damaged(format!(
            "its header names {} chunk {}",
            header.session, header.seq
        )));
    }
    let mut lines: Vec<&[u8]> = bytes.split_inclusive(|b| *b == b'\n').skip(1).collect();
    if lines.last().is_some_and(|l| !l.ends_with(b"\n")) {
        if sealed {
            return Err(damaged("its last line is cut".into()));
        }
        lines.pop();
    }
    Ok(lines.into_iter().map(|l| &l[..l.len() - 1]).collect())
}

fn owned(lines: &[&[u8]], chunk: u64) -> Result<Vec<String>, FollowError> {
    lines
        .iter()
        .map(|l| {
            String::from_utf8(l.to_vec()).map_err(|e| FollowError::Damaged {
                chunk,
                why: format!("a line is not UTF-8: {e}"),
            })
        })
        .collect()
}

/// One watcher of a running session: every recorded line once, in order,
/// from the first; `None` after the session's last line.
///
/// Lines before the subscription come from the files, then the live feed;
/// a batch already covered is dropped, and one that starts past the next
/// line is an error unless the feed said this watcher lagged: then the
/// lines in between are read from the files (the receiver goes on at the
/// oldest batch the channel kept, so the end batch is never missed).
pub struct Follower {
    watch: Watch,
    backlog: Backlog,
    /// The sequence number of the next line handed out (or made ready).
    next: u64,
    /// Lines before this come from the files.
    target: u64,
    /// The batch that goes on after the lines read from the files.
    held: Option<Arc<LiveBatch>>,
    ready: VecDeque<String>,
    lagged: bool,
    resyncs: u64,
    done: bool,
}

impl Follower {
    pub fn new(watch: Watch, backlog: Backlog) -> Follower {
        Follower {
            target: watch.from_seq,
            watch,
            backlog,
            next: 0,
            held: None,
            ready: VecDeque::new(),
            lagged: false,
            resyncs: 0,
            done: false,
        }
    }

    /// The next recorded line; `None` once the session ended and every
    /// line was handed out, or after an error.
    pub async fn next(&mut self) -> Option<Result<String, FollowError>> {
        loop {
            if let Some(line) = self.ready.pop_front() {
                return Some(Ok(line));
            }
            if self.done {
                return None;
            }
            if let Err(e) = self.step().await {
                self.done = true;
                return Some(Err(e));
            }
        }
    }

    /// How many times this watcher fell behind the feed and caught up from the files.
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }

    /// Makes lines ready: from the files while they are due, else from the feed.
    async fn step(&mut self) -> Result<(), FollowError> {
        if self.next < self.target {
            let lines = self.backlog.read_chunk(self.next, self.target).await?;
            self.next += lines.len() as u64;
            self.ready.extend(lines);
            return Ok(());
        }
        if let Some(batch) = self.held.take() {
            return self.take(batch);
        }
        match self.watch.rx.recv().await {
            Ok(batch) => self.take(batch),
            Err(RecvError::Lagged(_)) => {
                self.lagged = true;
                self.resyncs += 1;
                Ok(())
            }
            Err(RecvError::Closed) => Err(FollowError::Cut),
        }
    }

    /// Takes a batch's lines from the next one on.
    fn take(&mut self, batch: Arc<LiveBatch>) -> Result<(), FollowError> {
        if batch.seq > self.next {
            if !self.lagged {
                return Err(FollowError::Gap {
                    expected: self.next,
                    got: batch.seq,
                });
            }
            self.target = batch.seq;
            self.held = Some(batch);
            return Ok(());
        }
        self.lagged = false;
        let skip = (self.next - batch.seq) as usize;
        for line in batch.lines.iter().skip(skip) {
            self.ready.push_back(line.clone());
            self.next += 1;
        }
        self.done = batch.end;
        Ok(())
    }
}
