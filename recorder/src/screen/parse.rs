//! The pure parts [`super::digest`] and [`super::window`] share, so that both read a
//! recording the same way: a chunk's lines from a given line on, event lines read into no
//! more than the screen needs, and recorded output turned into the text the safe replay
//! draws.

use std::borrow::Cow;

use avt::Terminal;
use base64::Engine;
use serde::Deserialize;

use crate::format::{ChunkHeader, Event};
use crate::replay::{SanitizerState, sanitize_into};

/// Larger sizes are clamped: the size is the engineer's client's to choose, and a virtual
/// terminal of 65535x65535 cells would take all of the console's memory.
pub(crate) const MAX_COLS: u16 = 1000;
pub(crate) const MAX_ROWS: u16 = 500;

/// A terminal size from recorded numbers: zero means unknown (80x24), big ones are clamped.
pub(crate) fn size(cols: u64, rows: u64) -> (u16, u16) {
    if cols == 0 || rows == 0 {
        return (80, 24);
    }
    (cols.min(MAX_COLS as u64) as u16, rows.min(MAX_ROWS as u64) as u16)
}

/// A `COLSxROWS` resize, clamped as [`size`] does.
pub(crate) fn resize(d: &str) -> Option<(u16, u16)> {
    let (cols, rows) = d.trim().split_once('x')?;
    let (cols, rows): (u64, u64) = (cols.parse().ok()?, rows.parse().ok()?);
    (cols > 0 && rows > 0).then(|| size(cols, rows))
}

/// A virtual terminal of a size [`size`] made.
pub(crate) fn terminal((cols, rows): (u16, u16)) -> Terminal {
    // `max(1)`: avt refuses a zero size, and `size` never makes one.
    Terminal::new(cols.max(1) as usize, rows.max(1) as usize).expect("a terminal of at least 1x1 is valid")
}

/// Seconds rounded to microseconds, as recorded: a relative time of `0.30000000000000004`
/// would be noise in every cast.
pub(crate) fn micros(t: f64) -> f64 {
    (t * 1e6).round() / 1e6
}

/// What kind of screen event a line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Data {
    Output,
    Input,
    Resize,
}

/// One event line: an `o`, `i` or `r` with its strings borrowed where JSON lets them be, or
/// any other event whole (they are few, and go to the timeline).
#[derive(Debug)]
pub(crate) enum Line<'a> {
    Data {
        t: f64,
        ch: u32,
        kind: Data,
        d: Option<Cow<'a, str>>,
        b64: Option<Cow<'a, str>>,
    },
    Other(Event),
}

/// The fields of an event line that `o`, `i` and `r` have; others are skipped.
#[derive(Deserialize)]
struct Fields<'a> {
    t: f64,
    ch: u32,
    #[serde(borrow)]
    e: Cow<'a, str>,
    #[serde(default, borrow)]
    d: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    b64: Option<Cow<'a, str>>,
}

/// Reads one event line.
pub(crate) fn parse_line(line: &[u8]) -> Result<Line<'_>, String> {
    if let Ok(f) = serde_json::from_slice::<Fields<'_>>(line) {
        let kind = match &*f.e {
            "o" => Some(Data::Output),
            "i" => Some(Data::Input),
            "r" => Some(Data::Resize),
            _ => None,
        };
        if let Some(kind) = kind {
            return Ok(Line::Data {
                t: f.t,
                ch: f.ch,
                kind,
                d: f.d,
                b64: f.b64,
            });
        }
    }
    // Every other kind, and lines the quick read refused (to be reported as the full read
    // explains them).
    serde_json::from_slice::<Event>(line)
        .map(Line::Other)
        .map_err(|e| e.to_string())
}

/// The text of an `o` or `i` event and how many recorded bytes it stands for. Bytes that are
/// not UTF-8 are shown with replacement characters, as the asciicast export shows them.
pub(crate) fn text<'a>(d: &'a Option<Cow<'a, str>>, b64: &Option<Cow<'_, str>>) -> (Cow<'a, str>, usize) {
    match (d, b64) {
        (Some(d), None) => (Cow::Borrowed(d), d.len()),
        (None, None) => (Cow::Borrowed(""), 0),
        (d, Some(b)) => {
            let mut bytes = d.as_deref().unwrap_or_default().as_bytes().to_vec();
            bytes.extend(
                base64::engine::general_purpose::STANDARD
                    .decode(&**b)
                    .unwrap_or_default(),
            );
            let n = bytes.len();
            (Cow::Owned(String::from_utf8_lossy(&bytes).into_owned()), n)
        }
    }
}

/// The lines of a chunk, numbered from 1 (the header is line 1), from line `from` on. Empty
/// lines are skipped; a last line without its newline is given as it is (it fails to parse
/// and is reported).
pub(crate) fn lines_from(bytes: &[u8], from: u32) -> impl Iterator<Item = (u32, &[u8])> {
    bytes
        .split(|b| *b == b'\n')
        .enumerate()
        .skip(from.saturating_sub(1) as usize)
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| (i as u32 + 1, l))
}

/// Checks a chunk's header line: `Err` when it is unreadable (the chunk is skipped),
/// `Ok(Some(problem))` when it names another session or position.
pub(crate) fn check_header(bytes: &[u8], session: &str, seq: u64) -> Result<Option<String>, String> {
    let first = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    let header: ChunkHeader =
        serde_json::from_slice(first).map_err(|e| format!("chunk {seq}: the chunk header is not readable: {e}"))?;
    Ok((header.session != session || header.seq != seq).then(|| {
        format!(
            "chunk {seq}: its header says session {} chunk {}",
            header.session, header.seq
        )
    }))
}

/// Recorded output of one channel → the text a terminal is fed: bare line feeds turned into
/// CR LF on a channel without a pty (as the asciicast export does: no tty did it, and a
/// player would draw a staircase), then [`crate::replay::sanitize`].
#[derive(Debug, Clone)]
pub(crate) struct Feed {
    sanitizer: SanitizerState,
    cook: bool,
    after_cr: bool,
    cooked: String,
}

impl Feed {
    pub(crate) fn new(pty: bool) -> Self {
        Feed {
            sanitizer: SanitizerState::default(),
            cook: !pty,
            after_cr: false,
            cooked: String::new(),
        }
    }

    /// Whether a fresh `Feed` would go on exactly as this one: no escape sequence is half
    /// read. (A CR just before would only add a harmless CR before the next LF.)
    pub(crate) fn at_rest(&self) -> bool {
        self.sanitizer.at_rest()
    }

    /// Appends what `output` draws to `out`.
    pub(crate) fn push(&mut self, output: &str, out: &mut String) {
        if !self.cook || !output.contains('\n') {
            if self.cook && !output.is_empty() {
                self.after_cr = output.ends_with('\r');
            }
            sanitize_into(output, &mut self.sanitizer, out);
            return;
        }
        let mut cooked = std::mem::take(&mut self.cooked);
        cooked.clear();
        let mut start = 0;
        // CR and LF are single bytes in UTF-8, never inside another character.
        for (i, b) in output.bytes().enumerate() {
            if b == b'\n' && !self.after_cr {
                cooked.push_str(&output[start..i]);
                cooked.push('\r');
                start = i;
            }
            self.after_cr = b == b'\r';
        }
        cooked.push_str(&output[start..]);
        sanitize_into(&cooked, &mut self.sanitizer, out);
        self.cooked = cooked;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_line_feeds_get_a_carriage_return_without_a_pty_only() {
        let mut out = String::new();
        let mut feed = Feed::new(false);
        feed.push("a\nb\r", &mut out);
        feed.push("\nc\r\nd\x1b]0;title\x07\n", &mut out);
        assert_eq!(out, "a\r\nb\r\nc\r\nd\r\n");
        let mut out = String::new();
        Feed::new(true).push("a\nb", &mut out);
        assert_eq!(out, "a\nb");
    }

    #[test]
    fn lines_are_numbered_from_the_header() {
        let chunk = b"{\"h\":1}\nA\n\nB\nC";
        let all: Vec<_> = lines_from(chunk, 1).collect();
        assert_eq!(all, vec![(1, &b"{\"h\":1}"[..]), (2, b"A"), (4, b"B"), (5, b"C")]);
        assert_eq!(lines_from(chunk, 4).next(), Some((4, &b"B"[..])));
    }

    #[test]
    fn sizes_are_defaulted_and_clamped() {
        assert_eq!(size(0, 30), (80, 24));
        assert_eq!(size(65535, 65535), (MAX_COLS, MAX_ROWS));
        assert_eq!(resize("120x40"), Some((120, 40)));
        assert_eq!(resize("0x40"), None);
        assert_eq!(resize("wide"), None);
    }

    #[test]
    fn screen_events_are_read_quickly_and_others_whole() {
        let o = br#"{"t":1.5,"ch":2,"e":"o","d":"hi\u001b[1m"}"#;
        let Ok(Line::Data { t, ch, kind, d, .. }) = parse_line(o) else {
            panic!("not data")
        };
        assert_eq!((t, ch, kind, d.as_deref()), (1.5, 2, Data::Output, Some("hi\x1b[1m")));
        let exec = br#"{"t":1,"ch":0,"e":"exec","command":"ls"}"#;
        assert!(matches!(parse_line(exec), Ok(Line::Other(_))));
        assert!(parse_line(b"{\"t\":1,").is_err());
        let b64 = (Some(Cow::Borrowed("a")), Some(Cow::Borrowed("/w==")));
        assert_eq!(text(&b64.0, &b64.1), (Cow::Borrowed("a\u{fffd}"), 2));
    }
}
