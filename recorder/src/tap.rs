//! The recording seam: the one interface every byte and event of every
//! relayed channel passes through.
//!
//! The proxy cannot open a channel without a [`ChannelTap`] (the relay takes
//! one by value), and a tap exists only through a [`SessionTap`] that a
//! [`Sink`] handed out when the session started. A sink that cannot start
//! refuses the session, so an unrecorded session is never started.
//!
//! Events travel as typed values over one bounded queue per session to the
//! sink's own task: data is `bytes::Bytes` (reference-counted, never copied
//! here), the queue applies back-pressure instead of dropping, and control
//! events (EOF, close, exit status) wait for room like data does — they are
//! never sent with `try_send` and never lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::mpsc;

/// How many events a session may have in flight to its sink before the
/// relay waits. Bounds the memory a slow sink can cost.
pub const SESSION_QUEUE: usize = 256;

/// Which way bytes flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the engineer's client to the node (keystrokes, uploads).
    Input,
    /// From the node to the client (screen output, downloads).
    Output,
}

/// What kind of channel is being relayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ChannelKind {
    /// A session channel: shell, exec or subsystem.
    Session,
    /// `ssh -L` / `-D`: the client asks the node to connect somewhere.
    DirectTcpip { host: String, port: u32 },
    /// `ssh -R`: the node hands back a connection it accepted.
    ForwardedTcpip { address: String, port: u32 },
}

/// One thing that happened on a channel.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum ChannelEvent {
    Open(ChannelKind),
    Pty {
        term: String,
        cols: u32,
        rows: u32,
    },
    Resize {
        cols: u32,
        rows: u32,
    },
    Env {
        name: String,
        value: String,
    },
    Shell,
    Exec {
        command: String,
    },
    Subsystem {
        name: String,
    },
    Signal {
        name: String,
    },
    /// Bytes relayed; `stderr` marks extended data of type 1.
    Data {
        direction: Direction,
        stderr: bool,
        #[serde(skip)]
        bytes: Bytes,
        len: usize,
    },
    Eof {
        direction: Direction,
    },
    ExitStatus {
        status: u32,
    },
    ExitSignal {
        signal: String,
        core_dumped: bool,
    },
    /// A request the bastion refused, and why.
    Refused {
        request: String,
        reason: String,
    },
    Close,
    /// Something about the whole session (see [`SessionNote`]); recorded
    /// under [`NOTE_CHANNEL`], never a channel of its own.
    Note(SessionNote),
}

/// The channel number session notes are recorded under.
pub const NOTE_CHANNEL: u32 = u32::MAX;

/// What happens to a session beside its channels: a second person watching
/// it, or an auditor ending it. Goes into the recording as a marker and into
/// the manifest (`watchers`, `terminated`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "note")]
pub enum SessionNote {
    /// `user` started watching through `door` (`ssh`, `web`, `host`).
    Watching {
        user: String,
        door: String,
        #[serde(serialize_with = "unix")]
        at: SystemTime,
    },
    /// `user` stopped watching.
    StoppedWatching {
        user: String,
        door: String,
        #[serde(serialize_with = "unix")]
        at: SystemTime,
    },
    /// `by` ended the session, saying `reason`.
    Terminated {
        by: String,
        reason: String,
        #[serde(serialize_with = "unix")]
        at: SystemTime,
    },
}

impl ChannelEvent {
    /// A data event; `len` is filled in from the bytes.
    pub fn data(direction: Direction, stderr: bool, bytes: Bytes) -> Self {
        let len = bytes.len();
        ChannelEvent::Data {
            direction,
            stderr,
            bytes,
            len,
        }
    }
}

/// An event with the channel it belongs to and when it happened.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// Channel number within the session, in opening order.
    pub channel: u32,
    /// Time since the session started.
    #[serde(serialize_with = "secs")]
    pub at: Duration,
    #[serde(flatten)]
    pub event: ChannelEvent,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e6)
}

/// Who, where and why: what a recording must say about its session.
#[derive(Debug, Clone, Serialize)]
pub struct SessionMeta {
    pub session_id: String,
    pub user: String,
    pub groups: Vec<String>,
    pub client: String,
    pub target: String,
    pub login: String,
    /// Authentication methods that proved the user.
    pub factors: Vec<String>,
    #[serde(serialize_with = "unix")]
    pub started: SystemTime,
    /// Whether keystrokes must be kept (the policy decision says so).
    pub record_input: bool,
    /// Set when the session runs under a break-glass grant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<BreakGlassMeta>,
}

/// The break-glass grant a session runs under, as reviewers need it.
#[derive(Debug, Clone, Serialize)]
pub struct BreakGlassMeta {
    pub grant_id: String,
    /// Stated verbatim by the engineer.
    pub reason: String,
    pub ticket: Option<String>,
    /// Unix seconds: the end of the time box.
    pub ends_at: i64,
}

fn unix<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    s.serialize_f64(d.as_secs_f64())
}

/// The recorder is gone: the session must stop (recording fails closed).
#[derive(Debug, thiserror::Error)]
#[error("recording stopped: {0}")]
pub struct RecordError(pub String);

/// A recording backend. `start` either returns a tap (the recording runs) or
/// an error (the session must not start).
pub trait Sink: Send + Sync + 'static {
    fn start(&self, meta: &SessionMeta) -> Result<SessionTap, RecordError>;

    /// Subscribes to a running session's recorded lines (see
    /// [`crate::sink::Watch`]); `None` when it is not running here or this
    /// sink has no live feed.
    fn watch(&self, _session: &str) -> Option<crate::sink::Watch> {
        None
    }

    /// A running session's recorded lines from its first, then live, each
    /// once (see [`crate::sink::Follower`]); `None` as for [`Sink::watch`].
    fn follow(&self, _session: &str) -> Option<crate::sink::Follower> {
        None
    }
}

/// A tap with no sink behind it, and the queue a sink would read: for tests
/// of code that takes a tap (built only with the `test-tap` feature).
#[cfg(feature = "test-tap")]
pub fn test_tap() -> (SessionTap, mpsc::Receiver<Record>) {
    SessionTap::new()
}

/// The session's end of the seam; hands out one [`ChannelTap`] per channel.
#[derive(Clone)]
pub struct SessionTap {
    inner: Arc<SessionTapInner>,
}

struct SessionTapInner {
    tx: mpsc::Sender<Record>,
    started: Instant,
    next_channel: AtomicU32,
}

impl SessionTap {
    /// Makes a tap and the receiving end a sink's task consumes.
    pub(crate) fn new() -> (SessionTap, mpsc::Receiver<Record>) {
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        let tap = SessionTap {
            inner: Arc::new(SessionTapInner {
                tx,
                started: Instant::now(),
                next_channel: AtomicU32::new(0),
            }),
        };
        (tap, rx)
    }

    /// Opens a recorded channel; its first event is `Open(kind)`.
    pub async fn channel(&self, kind: ChannelKind) -> Result<ChannelTap, RecordError> {
        let id = self.inner.next_channel.fetch_add(1, Ordering::Relaxed);
        let tap = ChannelTap {
            session: self.inner.clone(),
            channel: id,
        };
        tap.record(ChannelEvent::Open(kind)).await?;
        Ok(tap)
    }

    /// Records a note about the whole session, waiting for room like any event.
    pub async fn note(&self, note: SessionNote) -> Result<(), RecordError> {
        ChannelTap {
            session: self.inner.clone(),
            channel: NOTE_CHANNEL,
        }
        .record(ChannelEvent::Note(note))
        .await
    }
}

/// A channel's end of the seam. Every relayed byte and event goes through
/// [`ChannelTap::record`] before it is forwarded.
pub struct ChannelTap {
    session: Arc<SessionTapInner>,
    channel: u32,
}

impl ChannelTap {
    /// Hands one event to the recorder, waiting for room (back-pressure,
    /// never loss). An error means the recorder is gone and the channel must
    /// be closed.
    pub async fn record(&self, event: ChannelEvent) -> Result<(), RecordError> {
        let record = Record {
            channel: self.channel,
            at: self.session.started.elapsed(),
            event,
        };
        self.session
            .tx
            .send(record)
            .await
            .map_err(|_| RecordError("the recorder stopped".into()))
    }

    pub fn channel_number(&self) -> u32 {
        self.channel
    }
}

impl Clone for ChannelTap {
    fn clone(&self) -> Self {
        ChannelTap {
            session: self.session.clone(),
            channel: self.channel,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_arrive_in_order_with_channel_numbers() {
        let (tap, mut rx) = SessionTap::new();
        let a = tap.channel(ChannelKind::Session).await.unwrap();
        let b = tap
            .channel(ChannelKind::DirectTcpip {
                host: "h".into(),
                port: 1,
            })
            .await
            .unwrap();
        a.record(ChannelEvent::data(Direction::Output, false, Bytes::from_static(b"hi")))
            .await
            .unwrap();
        b.record(ChannelEvent::Close).await.unwrap();
        let got: Vec<Record> = (0..4).map(|_| rx.try_recv().unwrap()).collect();
        assert_eq!(got[0].channel, 0);
        assert_eq!(got[1].channel, 1);
        assert!(matches!(got[2].event, ChannelEvent::Data { len: 2, .. }));
        assert!(matches!(got[3].event, ChannelEvent::Close));
    }

    #[tokio::test]
    async fn a_gone_recorder_is_an_error_not_a_silent_drop() {
        let (tap, rx) = SessionTap::new();
        let a = tap.channel(ChannelKind::Session).await;
        drop(rx);
        let a = match a {
            Ok(a) => a,
            Err(_) => return,
        };
        assert!(a.record(ChannelEvent::Close).await.is_err());
    }

    #[tokio::test]
    async fn a_full_queue_waits_instead_of_dropping() {
        let (tap, mut rx) = SessionTap::new();
        let a = tap.channel(ChannelKind::Session).await.unwrap();
        for _ in 0..SESSION_QUEUE - 1 {
            a.record(ChannelEvent::Shell).await.unwrap();
        }
        let blocked = tokio::time::timeout(Duration::from_millis(50), a.record(ChannelEvent::Close)).await;
        assert!(blocked.is_err(), "a full queue must make the relay wait");
        rx.recv().await.unwrap();
        a.record(ChannelEvent::Close).await.unwrap();
    }
}
