//! The live feed of running sessions, for auditors who watch one as it
//! happens: every event line a session appends to its chunks carries a
//! sequence number (0, 1, 2… in the order written; chunk headers have none),
//! and while somebody watches, the session loop also sends each batch's
//! lines, byte for byte as written, on a bounded broadcast channel.
//!
//! What a watcher sees is what is recorded: a batch is sent only after its
//! lines were appended to the chunk, and the lines are made by the very
//! functions that write them there (see [`super::disk::line_of`]). A slow
//! watcher never slows the session: a send never waits, and a receiver that
//! falls more than [`LIVE_BATCHES`] behind gets `Lagged` and catches up from
//! the files ([`super::follow::Follower`]).
//!
//! An unwatched session pays one uncontended lock, a flag test and an add per
//! batch: nothing is serialised or allocated for the feed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use super::disk::line_of;
use super::shared::lock;
use super::translate::Out;

/// Batches a watcher may fall behind before it gets `Lagged` (and catches
/// up from the files).
pub const LIVE_BATCHES: usize = 256;

/// One batch of a session's event lines, as the session loop appended them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveBatch {
    /// The sequence number of the first line (or, in the end batch, the
    /// number of lines the session recorded).
    pub seq: u64,
    /// The event lines exactly as written to the chunk, without the newline.
    pub lines: Vec<String>,
    /// The session ended: no lines come after this batch's.
    pub end: bool,
}

/// A subscription to a running session's feed: every line with
/// `seq >= from_seq` comes through `rx`; every line before it was appended
/// to the chunks before the subscription (and is read back from the files).
pub struct Watch {
    pub from_seq: u64,
    pub rx: broadcast::Receiver<Arc<LiveBatch>>,
}

/// One session's feed: the sender and the next line's number under one lock,
/// so a subscription and a batch never cross.
struct Feed {
    tx: broadcast::Sender<Arc<LiveBatch>>,
    next_seq: u64,
    /// Somebody subscribed since the last time the receivers were found gone:
    /// spares the unwatched path the channel's own lock.
    watched: bool,
    /// Lines serialised for watchers (tests check an unwatched session makes none).
    built: u64,
}

/// The feeds of the running sessions, by session id.
#[derive(Default)]
pub(super) struct Registry(Arc<Mutex<HashMap<String, Arc<Mutex<Feed>>>>>);

impl Registry {
    /// Registers a session's feed; it goes when the returned handle does.
    pub(super) fn open(&self, session: &str) -> LiveFeed {
        let (tx, _) = broadcast::channel(LIVE_BATCHES);
        let feed = Arc::new(Mutex::new(Feed {
            tx,
            next_seq: 0,
            watched: false,
            built: 0,
        }));
        lock(&self.0).insert(session.to_owned(), feed.clone());
        LiveFeed {
            registry: self.0.clone(),
            session: session.to_owned(),
            feed,
        }
    }

    /// Subscribes to a running session's feed; `None` when it is not running here.
    pub(super) fn watch(&self, session: &str) -> Option<Watch> {
        let feed = lock(&self.0).get(session)?.clone();
        let mut f = lock(&feed);
        f.watched = true;
        Some(Watch {
            from_seq: f.next_seq,
            rx: f.tx.subscribe(),
        })
    }

    /// Lines serialised for watchers so far, and lines recorded, of a running session.
    #[cfg(test)]
    pub(super) fn counts(&self, session: &str) -> Option<(u64, u64)> {
        let feed = lock(&self.0).get(session)?.clone();
        let f = lock(&feed);
        Some((f.built, f.next_seq))
    }
}

/// The session loop's end of its feed; removes the feed from the registry
/// when dropped (also when the loop panics), which closes the channel.
pub(super) struct LiveFeed {
    registry: Arc<Mutex<HashMap<String, Arc<Mutex<Feed>>>>>,
    session: String,
    feed: Arc<Mutex<Feed>>,
}

impl LiveFeed {
    /// `outs` were appended to the chunk (one line each): numbers them, and
    /// sends their lines if anybody watches. Never waits for a watcher.
    pub(super) fn publish(&self, outs: &[Out]) {
        if outs.is_empty() {
            return;
        }
        let mut f = lock(&self.feed);
        if f.watched {
            if f.tx.receiver_count() == 0 {
                f.watched = false;
            } else {
                let lines = lines_of(outs);
                f.built += lines.len() as u64;
                let seq = f.next_seq;
                // An error only means every receiver went meanwhile.
                let _ = f.tx.send(Arc::new(LiveBatch { seq, lines, end: false }));
            }
        }
        f.next_seq += outs.len() as u64;
    }

    /// The session's last line is on disk: tells watchers it ended (how many
    /// lines it had), then the feed goes.
    pub(super) fn end(self) {
        let f = lock(&self.feed);
        let _ = f.tx.send(Arc::new(LiveBatch {
            seq: f.next_seq,
            lines: Vec::new(),
            end: true,
        }));
    }
}

impl Drop for LiveFeed {
    fn drop(&mut self) {
        let mut map = lock(&self.registry);
        if map.get(&self.session).is_some_and(|f| Arc::ptr_eq(f, &self.feed)) {
            map.remove(&self.session);
        }
    }
}

/// The lines of `outs` as the chunk holds them, without their newlines.
fn lines_of(outs: &[Out]) -> Vec<String> {
    let mut buf = Vec::new();
    outs.iter()
        .map(|o| {
            buf.clear();
            line_of(o, &mut buf);
            if buf.last() == Some(&b'\n') {
                buf.pop();
            }
            // Event lines are JSON text: always UTF-8.
            String::from_utf8_lossy(&buf).into_owned()
        })
        .collect()
}

#[cfg(test)]
#[path = "live_tests.rs"]
mod tests;
