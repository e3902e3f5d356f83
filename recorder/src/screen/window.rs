//! A piece of one channel as asciicast v2, from any moment, for asciinema-player: read from
//! the last keyframe before that moment, and only as far as a bounded amount of output.
//!
//! The events between the keyframe and the moment asked for are fed to a terminal that
//! starts from the keyframe's screen; the cast then opens with that terminal's dump as one
//! `o` event at time 0, so the player shows the screen of that moment at once, and as little
//! as a screen is sent for what came before. Its header has the size of that moment.
//!
//! Every line is written by serde_json, then with DEL, C1 and the other characters
//! [`crate::display::escape_json`] names, and `<`, as `\u` escapes: recorded strings are
//! hostile, and the cast may be read by a terminal or put inside an HTML `<script>`.

use avt::Terminal;
use serde::Serialize;

use super::digest::{ChannelIndex, Keyframe};
use super::parse::{self, Data, Feed, Line};
use crate::display::escape_json;
use crate::format::EventKind;
use crate::manifest::{Manifest, parse_rfc3339};
use crate::store::{Store, StoreError};

/// A piece of a channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// asciicast v2 text; event times are seconds after `from`.
    pub cast: String,
    /// Where it starts, seconds since the session start.
    pub from: f64,
    /// The time of the last event in it (`from` when there is none).
    pub until: f64,
    /// What to ask for next; `None`: the channel ends in this window.
    pub next: Option<f64>,
    /// Keystrokes in it (absolute times, as recorded: the caller escapes them).
    pub input: Vec<(f64, String)>,
    /// Chunks or lines that could not be read; the window goes on without them.
    pub problems: Vec<String>,
}

/// The asciicast text of channel `index.channel` from `from` (seconds since the session
/// start; clamped to 0 and on), until `max_output` bytes of output past `from` (then on to
/// the end of that moment's events) or the channel's end. Fails only when the store cannot
/// be reached.
pub async fn window(
    store: &dyn Store,
    session: &str,
    manifest: &Manifest,
    index: &ChannelIndex,
    from: f64,
    max_output: usize,
) -> Result<Window, StoreError> {
    let from = if from.is_finite() { from.max(0.0) } else { 0.0 };
    let started = parse_rfc3339(&manifest.info.started)
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() + from as u64);
    let Some(keyframe) = start(index, from) else {
        return Ok(Cutter::new(index, None, from, max_output, started).finish());
    };
    let mut cut = Cutter::new(index, Some(keyframe), from, max_output, started);
    for (i, entry) in manifest.chunks.iter().enumerate().skip(keyframe.chunk as usize) {
        let bytes = match store.get(&entry.key).await {
            Ok(b) => b,
            Err(e @ StoreError::Unavailable(_)) => return Err(e),
            Err(e) => {
                cut.problems.push(format!("chunk {}: {e}", entry.seq));
                continue;
            }
        };
        let first = if i == keyframe.chunk as usize { keyframe.line } else { 2 };
        if cut.chunk(&bytes, session, entry.seq, first) {
            break;
        }
    }
    Ok(cut.finish())
}

/// The keyframe a window from `from` starts at: the last one strictly before it (one at
/// exactly `from` may follow events of that same time, which would be missed), else the
/// first.
fn start(index: &ChannelIndex, from: f64) -> Option<&Keyframe> {
    index
        .keyframes
        .iter()
        .rev()
        .find(|k| k.t < from)
        .or(index.keyframes.first())
}

/// The asciicast v2 header, no more than a player needs.
#[derive(Serialize)]
struct Header {
    version: u8,
    width: u16,
    height: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<u64>,
}

/// Cutting the window out of the chunks; no I/O.
struct Cutter<'a> {
    channel: u32,
    keyframe: Option<&'a Keyframe>,
    from: f64,
    max_output: usize,
    timestamp: Option<u64>,
    feed: Feed,
    /// The channel's time, never decreasing (as the digest counts it).
    clock: f64,
    /// The size while no `pre` terminal was needed.
    size: (u16, u16),
    /// The keyframe's screen and what came after it before `from`, if anything did.
    pre: Option<Terminal>,
    cast: Option<String>,
    output: usize,
    /// Once `max_output` is reached: the time whose events are still taken.
    last_time: Option<f64>,
    until: f64,
    next: Option<f64>,
    input: Vec<(f64, String)>,
    problems: Vec<String>,
    text: String,
}

impl<'a> Cutter<'a> {
    fn new(
        index: &ChannelIndex,
        keyframe: Option<&'a Keyframe>,
        from: f64,
        max_output: usize,
        ts: Option<u64>,
    ) -> Self {
        Cutter {
            channel: index.channel,
            keyframe,
            from,
            max_output,
            timestamp: ts,
            feed: Feed::new(index.pty),
            clock: keyframe.map_or(0.0, |k| k.t),
            size: keyframe.map_or((index.width, index.height), |k| (k.width, k.height)),
            pre: None,
            cast: None,
            output: 0,
            last_time: None,
            until: from,
            next: None,
            input: Vec::new(),
            problems: Vec::new(),
            text: String::new(),
        }
    }

    /// Takes in chunk `seq` from line `first` on; true once the window is complete.
    fn chunk(&mut self, bytes: &[u8], session: &str, seq: u64, first: u32) -> bool {
        match parse::check_header(bytes, session, seq) {
            Err(p) => {
                self.problems.push(p);
                return false;
            }
            Ok(Some(p)) => self.problems.push(p),
            Ok(None) => {}
        }
        for (line, text) in parse::lines_from(bytes, first.max(2)) {
            let done = match parse::parse_line(text) {
                Ok(Line::Data { t, ch, kind, d, b64 }) if ch == self.channel => self.data(t, kind, &d, &b64),
                Ok(Line::Other(e)) if e.ch == self.channel => matches!(e.kind, EventKind::Close { .. }),
                Ok(_) => false,
                Err(e) => {
                    self.problems.push(format!("chunk {seq} line {line}: {e}"));
                    false
                }
            };
            if done {
                return true;
            }
        }
        false
    }

    /// One screen event of the channel; true when it is the first past the window.
    fn data(
        &mut self,
        t: f64,
        kind: Data,
        d: &Option<std::borrow::Cow<'_, str>>,
        b64: &Option<std::borrow::Cow<'_, str>>,
    ) -> bool {
        let t = self.clock.max(t);
        self.clock = t;
        if self.last_time.is_some_and(|last| t > last) {
            self.next = Some(t);
            return true;
        }
        if t < self.from {
            self.before(kind, d, b64);
            return false;
        }
        let rel = parse::micros(t - self.from).max(0.0);
        match kind {
            Data::Output => {
                let (text, n) = parse::text(d, b64);
                let mut out = std::mem::take(&mut self.text);
                out.clear();
                self.feed.push(&text, &mut out);
                if !out.is_empty() {
                    self.line(rel, "o", &out);
                }
                self.text = out;
                self.output += n;
            }
            Data::Resize => {
                if let Some((cols, rows)) = d.as_deref().and_then(parse::resize) {
                    self.line(rel, "r", &format!("{cols}x{rows}"));
                }
            }
            Data::Input => {
                let (text, _) = parse::text(d, b64);
                self.line(rel, "i", &text);
                self.input.push((t, text.into_owned()));
            }
        }
        self.until = t;
        if self.output >= self.max_output && self.last_time.is_none() {
            self.last_time = Some(t);
        }
        false
    }

    /// An event between the keyframe and `from`: only its effect on the screen is kept.
    fn before(&mut self, kind: Data, d: &Option<std::borrow::Cow<'_, str>>, b64: &Option<std::borrow::Cow<'_, str>>) {
        let (keyframe, size) = (self.keyframe, self.size);
        let term = self.pre.get_or_insert_with(|| {
            let mut term = parse::terminal(size);
            if let Some(k) = keyframe {
                term.feed(k.screen.as_str());
            }
            term
        });
        match kind {
            Data::Output => {
                self.text.clear();
                self.feed.push(&parse::text(d, b64).0, &mut self.text);
                term.feed(self.text.as_str());
            }
            Data::Resize => {
                if let Some((cols, rows)) = d.as_deref().and_then(parse::resize) {
                    term.resize(cols as usize, rows as usize);
                }
            }
            Data::Input => {}
        }
    }

    /// Appends one event line, opening the cast (header and screen) first.
    fn line(&mut self, t: f64, code: &str, data: &str) {
        if self.cast.is_none() {
            self.open();
        }
        push_json(self.cast.get_or_insert_default(), &(t, code, data));
    }

    fn open(&mut self) {
        let ((width, height), screen) = match &self.pre {
            Some(term) => {
                let (w, h) = term.size();
                ((w as u16, h as u16), term.dump())
            }
            None => (self.size, self.keyframe.map(|k| k.screen.clone()).unwrap_or_default()),
        };
        let mut cast = String::new();
        let header = Header {
            version: 2,
            width,
            height,
            timestamp: self.timestamp,
        };
        push_json(&mut cast, &header);
        if !screen.is_empty() {
            push_json(&mut cast, &(0.0, "o", screen.as_str()));
        }
        self.cast = Some(cast);
    }

    fn finish(mut self) -> Window {
        if self.cast.is_none() {
            self.open();
        }
        Window {
            cast: self.cast.unwrap_or_default(),
            from: self.from,
            until: self.until,
            next: self.next,
            input: self.input,
            problems: self.problems,
        }
    }
}

/// Appends `value` as one line of JSON, hardened as the module doc says.
fn push_json(out: &mut String, value: &impl Serialize) {
    // Plain strings, numbers and a derived struct: serialising cannot fail.
    let json = serde_json::to_string(value).unwrap_or_default();
    let json = escape_json(&json);
    if json.contains('<') {
        out.push_str(&json.replace('<', "\\u003c"));
    } else {
        out.push_str(&json);
    }
    out.push('\n');
}

#[cfg(test)]
#[path = "window_tests.rs"]
mod tests;
