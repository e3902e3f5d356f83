//! One pass over a session that makes it seekable: per channel the keyframes a viewer starts
//! from, and the session's other events as a timeline (see the [module doc](super)).
//!
//! The pass holds one chunk and, per channel with a screen, one virtual terminal: never the
//! events. Feeding avt is nearly all of its cost, so each chunk is worked through on a
//! blocking thread, off the async workers that serve everything else.

use std::collections::BTreeMap;

use avt::Terminal;
use serde::{Deserialize, Serialize};

use super::parse::{self, Data, Feed, Line};
use crate::format::{Event, EventKind};
use crate::manifest::Manifest;
use crate::store::{Store, StoreError};

/// A keyframe is taken at the first output after this much output of its channel since the
/// last one: a seek replays at most about this much.
pub const KEYFRAME_BYTES: u64 = 2 << 20;

/// The timeline keeps at most this many events (a session of a million file operations
/// would otherwise make a digest of a million entries).
pub const TIMELINE_MAX: usize = 20_000;

/// At most this many problems are listed; the rest are counted.
const PROBLEMS_MAX: usize = 100;

/// What a viewer needs to open a session and seek in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Digest {
    pub session: String,
    /// Every channel that had output, by channel number.
    pub channels: Vec<ChannelIndex>,
    /// The session's events other than `o`, `i` and `r`, in order.
    pub timeline: Vec<Event>,
    /// More than [`TIMELINE_MAX`] events: the rest are not in `timeline`.
    pub timeline_truncated: bool,
    /// Chunks and lines that could not be read, in words; what could be read is indexed.
    pub problems: Vec<String>,
}

/// One channel of a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelIndex {
    pub channel: u32,
    /// The terminal's size at the channel's end: its `pty` request (else 80x24), changed by
    /// resizes.
    pub width: u16,
    pub height: u16,
    /// Whether a pty was requested before its first output. Without one, bare line feeds
    /// are shown as CR LF (no tty did it).
    pub pty: bool,
    /// Seconds since the session start of the channel's last event.
    pub duration: f64,
    pub output_bytes: u64,
    /// Whether keystrokes were recorded on it (`i` events).
    pub input_recorded: bool,
    /// The first at its first screen event (`o`, `i` or `r`), then one every
    /// [`KEYFRAME_BYTES`] of output.
    pub keyframes: Vec<Keyframe>,
}

/// The screen at one moment, and where the events after it start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Keyframe {
    /// The time of the event at `chunk`/`line` (per channel never decreasing).
    pub t: f64,
    /// Index into the manifest's `chunks`.
    pub chunk: u32,
    /// Line number in that chunk (the header is line 1): the first event after the screen.
    pub line: u32,
    pub width: u16,
    pub height: u16,
    /// The channel's output bytes before this moment.
    pub output: u64,
    /// avt's dump: the escape text that draws this screen on a fresh terminal of this size
    /// (empty in the first keyframe, taken before anything was drawn).
    pub screen: String,
}

/// Reads the session's chunks listed in `manifest`, in order, one at a time. Fails only when
/// the store cannot be reached; a chunk that cannot be read or parsed is a problem and the
/// pass goes on with the next.
pub async fn digest(store: &dyn Store, session: &str, manifest: &Manifest) -> Result<Digest, StoreError> {
    let mut pass = Digester::new(session);
    for (index, entry) in manifest.chunks.iter().enumerate() {
        let bytes = match store.get(&entry.key).await {
            Ok(b) => b,
            Err(e @ StoreError::Unavailable(_)) => return Err(e),
            Err(e) => {
                pass.problem(format!("chunk {}: {e}", entry.seq));
                continue;
            }
        };
        let seq = entry.seq;
        pass = tokio::task::spawn_blocking(move || {
            pass.chunk(index as u32, seq, &bytes);
            pass
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    }
    Ok(pass.finish())
}

/// The pass itself, chunk by chunk; no I/O.
pub(crate) struct Digester {
    session: String,
    channels: BTreeMap<u32, Chan>,
    timeline: Vec<Event>,
    timeline_truncated: bool,
    problems: Vec<String>,
    problems_left_off: usize,
    /// Sanitized output on its way to a terminal, reused.
    text: String,
}

/// A channel while the pass runs.
struct Chan {
    size: (u16, u16),
    pty: bool,
    duration: f64,
    output_bytes: u64,
    had_output: bool,
    input_recorded: bool,
    keyframes: Vec<Keyframe>,
    /// From its first screen event until it closes (then dropped: a session may open many
    /// channels, and only the running ones hold a terminal).
    screen: Option<Screen>,
    closed: bool,
}

struct Screen {
    term: Terminal,
    feed: Feed,
    /// The channel's time, never decreasing.
    clock: f64,
    since_keyframe: u64,
}

impl Digester {
    pub(crate) fn new(session: &str) -> Self {
        Digester {
            session: session.to_owned(),
            channels: BTreeMap::new(),
            timeline: Vec::new(),
            timeline_truncated: false,
            problems: Vec::new(),
            problems_left_off: 0,
            text: String::new(),
        }
    }

    pub(crate) fn problem(&mut self, p: String) {
        if self.problems.len() < PROBLEMS_MAX {
            self.problems.push(p);
        } else {
            self.problems_left_off += 1;
        }
    }

    /// Takes in chunk `seq`, the manifest's chunk number `index`.
    pub(crate) fn chunk(&mut self, index: u32, seq: u64, bytes: &[u8]) {
        match parse::check_header(bytes, &self.session, seq) {
            Err(p) => return self.problem(p),
            Ok(Some(p)) => self.problem(p),
            Ok(None) => {}
        }
        for (line, text) in parse::lines_from(bytes, 2) {
            match parse::parse_line(text) {
                Ok(Line::Data { t, ch, kind, d, b64 }) => self.data((index, line), t, ch, kind, &d, &b64),
                Ok(Line::Other(e)) => self.other(e),
                Err(e) => self.problem(format!("chunk {seq} line {line}: {e}")),
            }
        }
    }

    fn data(
        &mut self,
        (chunk, line): (u32, u32),
        t: f64,
        ch: u32,
        kind: Data,
        d: &Option<std::borrow::Cow<'_, str>>,
        b64: &Option<std::borrow::Cow<'_, str>>,
    ) {
        let chan = self.channels.entry(ch).or_insert_with(Chan::new);
        chan.duration = chan.duration.max(t);
        if kind == Data::Output {
            chan.had_output = true;
        }
        if chan.closed {
            // Nothing follows a close; should something, it is counted, not drawn.
            chan.output_bytes += parse::text(d, b64).1 as u64;
            return;
        }
        let screen = chan.screen.get_or_insert_with(|| Screen {
            term: parse::terminal(chan.size),
            feed: Feed::new(chan.pty),
            clock: t,
            since_keyframe: 0,
        });
        screen.clock = screen.clock.max(t);
        if chan.keyframes.is_empty() {
            // A fresh terminal: nothing to draw (its dump would still reset the pen).
            let mut first = screen.keyframe((chunk, line), 0);
            first.screen.clear();
            chan.keyframes.push(first);
        }
        match kind {
            Data::Output => {
                let (text, n) = parse::text(d, b64);
                // Only where the sanitizer is between sequences: a window starts a fresh one.
                if screen.since_keyframe >= KEYFRAME_BYTES && screen.feed.at_rest() {
                    chan.keyframes.push(screen.keyframe((chunk, line), chan.output_bytes));
                    screen.since_keyframe = 0;
                }
                self.text.clear();
                screen.feed.push(&text, &mut self.text);
                screen.term.feed(self.text.as_str());
                chan.output_bytes += n as u64;
                screen.since_keyframe += n as u64;
            }
            Data::Input => chan.input_recorded = true,
            Data::Resize => {
                if let Some(size) = d.as_deref().and_then(parse::resize) {
                    chan.size = size;
                    screen.term.resize(size.0 as usize, size.1 as usize);
                }
            }
        }
    }

    fn other(&mut self, e: Event) {
        let chan = self.channels.entry(e.ch).or_insert_with(Chan::new);
        chan.duration = chan.duration.max(e.t);
        match &e.kind {
            // A pty asked for once the screen runs is not what it started with; not applied.
            EventKind::Pty { cols, rows, .. } if chan.screen.is_none() && !chan.closed => {
                chan.size = parse::size(*cols as u64, *rows as u64);
                chan.pty = true;
            }
            EventKind::Close { .. } => {
                chan.closed = true;
                chan.screen = None;
            }
            _ => {}
        }
        if self.timeline.len() < TIMELINE_MAX {
            self.timeline.push(e);
        } else {
            self.timeline_truncated = true;
        }
    }

    pub(crate) fn finish(mut self) -> Digest {
        if self.problems_left_off > 0 {
            let n = self.problems_left_off;
            self.problems.push(format!("… and {n} more problems"));
        }
        let channels = self
            .channels
            .into_iter()
            .filter(|(_, c)| c.had_output)
            .map(|(channel, c)| ChannelIndex {
                channel,
                width: c.size.0,
                height: c.size.1,
                pty: c.pty,
                duration: c.duration,
                output_bytes: c.output_bytes,
                input_recorded: c.input_recorded,
                keyframes: c.keyframes,
            })
            .collect();
        Digest {
            session: self.session,
            channels,
            timeline: self.timeline,
            timeline_truncated: self.timeline_truncated,
            problems: self.problems,
        }
    }
}

impl Screen {
    /// The screen now, before the event at `chunk`/`line`.
    fn keyframe(&self, (chunk, line): (u32, u32), output: u64) -> Keyframe {
        let (width, height) = self.term.size();
        Keyframe {
            t: self.clock,
            chunk,
            line,
            width: width as u16,
            height: height as u16,
            output,
            screen: self.term.dump(),
        }
    }
}

impl Chan {
    fn new() -> Self {
        Chan {
            size: (80, 24),
            pty: false,
            duration: 0.0,
            output_bytes: 0,
            had_output: false,
            input_recorded: false,
            keyframes: Vec::new(),
            screen: None,
            closed: false,
        }
    }
}

#[cfg(test)]
#[path = "digest_tests.rs"]
mod tests;
