//! What the screen tests share: sessions recorded by the real recording sink into a WORM
//! directory in a temp dir, a store that counts what it is asked for and can damage one
//! object, and the reference the windows are checked against (the asciicast export replayed
//! through the sanitizer into a fresh avt terminal).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use avt::Terminal;
use bytes::Bytes;
use ed25519_dalek::SigningKey;

use crate::cast_parse::{self, EventKind};
use crate::format;
use crate::manifest::Manifest;
use crate::replay::{SanitizerState, sanitize};
use crate::store::worm::WormDir;
use crate::store::{Retention, Store, StoreError};
use crate::{ChannelEvent, ChannelKind, Direction, RecorderConfig, RecordingSink, SessionMeta, Sink, cast, read};

pub(crate) const SESSION: &str = "screen0001";

/// One thing the recorded channel does.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    Out(Vec<u8>),
    In(Vec<u8>),
    Resize(u32, u32),
    Pause(u64),
}

/// A recorded session; the temp dir goes with it.
pub(crate) struct Recorded {
    dir: tempfile::TempDir,
    pub store: Arc<WormDir>,
    pub manifest: Manifest,
}

impl Drop for Recorded {
    fn drop(&mut self) {
        // The WORM directory sets the immutable flag where it may; clear it so the temp
        // dir can be removed.
        let _ = std::process::Command::new("chattr")
            .arg("-R")
            .arg("-i")
            .arg(self.dir.path())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Records one session channel (`pty`: its size, or none) doing `steps`, sealed in chunks
/// of about `chunk_bytes`.
pub(crate) async fn record(pty: Option<(u32, u32)>, record_input: bool, chunk_bytes: u64, steps: &[Step]) -> Recorded {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(WormDir::new(dir.path().join("store")).unwrap());
    let mut config = RecorderConfig::new(dir.path().join("spool"), SigningKey::from_bytes(&[3; 32]), "test");
    config.chunk_bytes = chunk_bytes;
    config.flush_bytes = chunk_bytes;
    config.chunk_interval = Duration::from_secs(60);
    config.retry_initial = Duration::from_millis(20);
    let (sink, _) = RecordingSink::open(config, store.clone()).unwrap();
    let (_stop, rx) = tokio::sync::watch::channel(false);
    sink.spawn_uploader(rx);
    let meta = SessionMeta {
        session_id: SESSION.into(),
        user: "alice".into(),
        groups: vec![],
        client: "192.0.2.1:1".into(),
        target: "node-1".into(),
        login: "root".into(),
        factors: vec!["publickey".into()],
        started: SystemTime::now(),
        record_input,
        break_glass: None,
    };
    let tap = sink.start(&meta).unwrap();
    let ch = tap.channel(ChannelKind::Session).await.unwrap();
    if let Some((cols, rows)) = pty {
        let term = "xterm".into();
        ch.record(ChannelEvent::Pty { term, cols, rows }).await.unwrap();
    }
    ch.record(ChannelEvent::Shell).await.unwrap();
    for step in steps {
        let event = match step {
            Step::Out(b) => ChannelEvent::data(Direction::Output, false, Bytes::copy_from_slice(b)),
            Step::In(b) => ChannelEvent::data(Direction::Input, false, Bytes::copy_from_slice(b)),
            Step::Resize(cols, rows) => ChannelEvent::Resize {
                cols: *cols,
                rows: *rows,
            },
            Step::Pause(ms) => {
                tokio::time::sleep(Duration::from_millis(*ms)).await;
                continue;
            }
        };
        ch.record(event).await.unwrap();
    }
    ch.record(ChannelEvent::ExitStatus { status: 0 }).await.unwrap();
    ch.record(ChannelEvent::Close).await.unwrap();
    drop((ch, tap));
    sink.drained().await;
    let key = format::manifest_key(SESSION);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let manifest = loop {
        if let Ok(bytes) = store.get(&key).await {
            break serde_json::from_slice(&bytes).unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "no manifest");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    Recorded { dir, store, manifest }
}

/// A deterministic screenful of shell-like output: coloured lines, cursor moves, clears,
/// the alternate screen, and what the sanitizer removes (a clipboard write, a title, a
/// status query).
pub(crate) fn busy_output(seed: u64, lines: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::new();
    for i in 0..lines {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let s = match x % 23 {
            0 => "\x1b[2J\x1b[H".to_owned(),
            1 => format!("\x1b[{};{}Hmoved {i}", x % 24 + 1, x % 60 + 1),
            2 => "\x1b[?1049h\x1b[Halt screen\r\n".to_owned(),
            3 => "\x1b[?1049l".to_owned(),
            4 => "\x1b]52;c;c2VjcmV0\x07\x1b]0;title\x1b\\\x1b[6n".to_owned(),
            5 => format!("\x1b[31;1mred {i}\x1b[0m, é 漢字 \u{2028}\r\n"),
            _ => format!("{i:08} {:016x} the quick brown fox\r\n", x),
        };
        out.extend_from_slice(s.as_bytes());
    }
    out
}

/// A store that lists every key it is asked for, and serves `damaged` bytes for one key.
pub(crate) struct Watched {
    pub inner: Arc<dyn Store>,
    pub gets: Mutex<Vec<String>>,
    pub damaged: Option<(String, Bytes)>,
}

impl Watched {
    pub(crate) fn new(inner: Arc<dyn Store>) -> Self {
        Watched {
            inner,
            gets: Mutex::new(Vec::new()),
            damaged: None,
        }
    }
}

#[async_trait::async_trait]
impl Store for Watched {
    async fn put(&self, key: &str, bytes: Bytes, sha256: [u8; 32]) -> Result<(), StoreError> {
        self.inner.put(key, bytes, sha256).await
    }
    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        self.gets.lock().unwrap().push(key.to_owned());
        match &self.damaged {
            Some((k, bytes)) if k == key => Ok(bytes.clone()),
            _ => self.inner.get(key).await,
        }
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn retention(&self, key: &str) -> Result<Retention, StoreError> {
        self.inner.retention(key).await
    }
    async fn check(&self) -> Result<(), StoreError> {
        self.inner.check().await
    }
    fn describe(&self) -> String {
        "watched".into()
    }
}

/// What a terminal shows: size, lines, cursor.
pub(crate) type Shown = (usize, usize, Vec<String>, (usize, usize));

/// The reference: the channel's asciicast export, sanitized as the replay does, into a
/// fresh terminal; what it shows after the events up to and including each of `times`
/// (ascending), in one pass.
pub(crate) async fn full_replay(store: &dyn Store, channel: u32, times: &[f64]) -> Vec<Shown> {
    let rec = read::load(store, SESSION).await.unwrap();
    let parsed = cast_parse::parse(&cast::export(&rec, Some(channel))).unwrap();
    let mut term = Terminal::new(parsed.header.width, parsed.header.height).unwrap();
    let mut state = SanitizerState::default();
    let mut events = parsed.events.iter().peekable();
    let mut out = Vec::new();
    for &t in times {
        while let Some(e) = events.next_if(|e| e.time <= t) {
            match e.kind {
                EventKind::Output => term.feed(sanitize(&e.data, &mut state).as_str()),
                EventKind::Resize => {
                    let (cols, rows) = cast_parse::parse_resize(&e.data).unwrap();
                    term.resize(cols, rows);
                }
                _ => {}
            }
        }
        out.push(shown(&term));
    }
    out
}

/// A player's screen after `rel` seconds of a window's cast: what it was given, fed raw.
pub(crate) fn play(cast_text: &str, rel: f64) -> Terminal {
    let parsed = cast_parse::parse(cast_text).unwrap();
    let mut term = Terminal::new(parsed.header.width, parsed.header.height).unwrap();
    for e in parsed.events.iter().take_while(|e| e.time <= rel) {
        match e.kind {
            EventKind::Output => term.feed(e.data.as_str()),
            EventKind::Resize => {
                let (cols, rows) = cast_parse::parse_resize(&e.data).unwrap();
                term.resize(cols, rows);
            }
            _ => {}
        }
    }
    term
}

pub(crate) fn shown(term: &Terminal) -> Shown {
    let (w, h) = term.size();
    let c = term.cursor();
    (w, h, term.screen().text(), (c.col, c.row))
}
