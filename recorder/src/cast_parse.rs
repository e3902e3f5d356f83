//! Reading asciicast v2 recordings (<https://docs.asciinema.org/manual/asciicast/v2/>) into a
//! header and a list of events, for the auditor tools ([`crate::replay`], [`crate::search`]).
//!
//! It works from the published file format alone, not from the recorder's own types, so the
//! auditor side keeps reading any v2 file — ours, or one exported by another tool.
//!
//! The parser is strict about what it cannot guess (a header that is not version 2, a zero
//! terminal size, an event that is not `[time, "code", "data"]`), because an auditor must not be
//! shown a silently reinterpreted recording. The one tolerance is a final line without its
//! newline that does not parse: that is what a recorder killed mid-write leaves behind, and
//! refusing the whole session for it would hide everything before it. [`Cast::truncated`] says
//! when that happened.

use serde_json::Value;

/// The header line's fields the auditor tools use. Other header keys (`env`, `theme`, ...) are
/// accepted and ignored.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// Terminal columns at the start of the recording.
    pub width: usize,
    /// Terminal rows at the start of the recording.
    pub height: usize,
    /// Unix time the recording started, if the header has it.
    pub timestamp: Option<i64>,
    /// The idle cap the recorder suggested for playback, if any.
    pub idle_time_limit: Option<f64>,
    /// The recording's title, if any.
    pub title: Option<String>,
}

/// What an event line carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// `"o"`: bytes the session wrote to the terminal.
    Output,
    /// `"i"`: bytes typed by the user.
    Input,
    /// `"r"`: the terminal was resized; data is `"COLSxROWS"` (see [`parse_resize`]).
    Resize,
    /// `"m"`: a marker (a label the recorder or user put on the timeline).
    Marker,
    /// Any other code. Kept, not rejected, so a later format addition does not make a
    /// recording unreadable; the auditor tools skip it.
    Other(String),
}

/// One event line: `[time, code, data]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Seconds since the start of the recording.
    pub time: f64,
    pub kind: EventKind,
    pub data: String,
}

/// A parsed recording.
#[derive(Debug, Clone, PartialEq)]
pub struct Cast {
    pub header: Header,
    pub events: Vec<Event>,
    /// True when an unterminated, unparsable last line was dropped (see the module doc).
    pub truncated: bool,
}

/// Why a recording could not be read. Line numbers are 1-based, as an editor shows them.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CastError {
    #[error("the recording is empty")]
    Empty,
    #[error("line 1: header is not a JSON object: {0}")]
    HeaderJson(String),
    #[error("line 1: header `version` is {0}, only asciicast version 2 is supported")]
    Version(String),
    #[error("line 1: header `{0}` must be a positive integer")]
    Size(&'static str),
    #[error("line {line}: {reason}")]
    Event { line: usize, reason: String },
}

/// Parses asciicast v2 text. Blank lines between events are skipped.
pub fn parse(text: &str) -> Result<Cast, CastError> {
    let mut lines = text.split('\n').enumerate();
    let header_line = loop {
        match lines.next() {
            Some((_, l)) if l.trim().is_empty() => continue,
            Some((_, l)) => break l,
            None => return Err(CastError::Empty),
        }
    };
    let header = parse_header(header_line)?;

    // `split('\n')` yields a final piece after the last newline; it is the unterminated tail
    // (empty for a well-formed file).
    let all: Vec<(usize, &str)> = lines.collect();
    let last_index = all.len().saturating_sub(1);
    let mut events = Vec::new();
    let mut truncated = false;
    for (i, (n, raw)) in all.into_iter().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        match parse_event(line) {
            Ok(ev) => events.push(ev),
            Err(_) if i == last_index => truncated = true,
            Err(reason) => return Err(CastError::Event { line: n + 1, reason }),
        }
    }
    Ok(Cast {
        header,
        events,
        truncated,
    })
}

fn parse_header(line: &str) -> Result<Header, CastError> {
    let v: Value = serde_json::from_str(line).map_err(|e| CastError::HeaderJson(e.to_string()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| CastError::HeaderJson("not an object".into()))?;
    match obj.get("version") {
        Some(Value::Number(n)) if n.as_u64() == Some(2) => {}
        Some(other) => return Err(CastError::Version(other.to_string())),
        None => return Err(CastError::Version("missing".into())),
    }
    let size = |key: &'static str| -> Result<usize, CastError> {
        obj.get(key)
            .and_then(Value::as_u64)
            .filter(|&n| n > 0)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or(CastError::Size(key))
    };
    Ok(Header {
        width: size("width")?,
        height: size("height")?,
        timestamp: obj.get("timestamp").and_then(Value::as_i64),
        idle_time_limit: obj.get("idle_time_limit").and_then(Value::as_f64),
        title: obj.get("title").and_then(Value::as_str).map(str::to_owned),
    })
}

fn parse_event(line: &str) -> Result<Event, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("event is not JSON: {e}"))?;
    let arr = v.as_array().ok_or("event is not a JSON array")?;
    let [time, code, data] = arr.as_slice() else {
        return Err(format!("event has {} elements, expected [time, code, data]", arr.len()));
    };
    let time = time
        .as_f64()
        .filter(|t| t.is_finite() && *t >= 0.0)
        .ok_or("event time is not a number >= 0")?;
    let code = code.as_str().ok_or("event code is not a string")?;
    let data = data.as_str().ok_or("event data is not a string")?;
    let kind = match code {
        "o" => EventKind::Output,
        "i" => EventKind::Input,
        "r" => EventKind::Resize,
        "m" => EventKind::Marker,
        other => EventKind::Other(other.to_owned()),
    };
    Ok(Event {
        time,
        kind,
        data: data.to_owned(),
    })
}

/// Reads an `r` event's `"COLSxROWS"`. `None` for anything else, including a zero size, which
/// no terminal can have.
pub fn parse_resize(data: &str) -> Option<(usize, usize)> {
    let (cols, rows) = data.trim().split_once('x')?;
    let cols: usize = cols.parse().ok()?;
    let rows: usize = rows.parse().ok()?;
    (cols > 0 && rows > 0).then_some((cols, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_header_and_all_event_kinds() {
        let text = concat!(
            r#"{"version":2,"width":80,"height":24,"timestamp":1700000000,"title":"t","env":{"TERM":"xterm"}}"#,
            "\n",
            r#"[0.5,"o","hi\r\n"]"#,
            "\n",
            r#"[0.75,"i","ls\r"]"#,
            "\n\n",
            r#"[1.0,"r","100x30"]"#,
            "\n",
            r#"[2,"m","mark"]"#,
            "\n",
            r#"[3,"x","future"]"#,
            "\n",
        );
        let cast = parse(text).unwrap();
        assert_eq!(cast.header.width, 80);
        assert_eq!(cast.header.height, 24);
        assert_eq!(cast.header.timestamp, Some(1_700_000_000));
        assert_eq!(cast.header.title.as_deref(), Some("t"));
        assert!(!cast.truncated);
        let kinds: Vec<_> = cast.events.iter().map(|e| e.kind.clone()).collect();
        assert_eq!(
            kinds,
            [
                EventKind::Output,
                EventKind::Input,
                EventKind::Resize,
                EventKind::Marker,
                EventKind::Other("x".into())
            ]
        );
        assert_eq!(cast.events[0].data, "hi\r\n");
        assert_eq!(cast.events[3].time, 2.0);
    }

    #[test]
    fn rejects_other_versions_and_bad_sizes() {
        assert_eq!(
            parse(r#"{"version":1,"width":80,"height":24}"#),
            Err(CastError::Version("1".into()))
        );
        assert_eq!(
            parse(r#"{"version":2,"width":0,"height":24}"#),
            Err(CastError::Size("width"))
        );
        assert_eq!(parse(r#"{"version":2,"width":80}"#), Err(CastError::Size("height")));
        assert_eq!(parse(""), Err(CastError::Empty));
    }

    #[test]
    fn malformed_event_in_the_middle_names_its_line() {
        let text = "{\"version\":2,\"width\":80,\"height\":24}\n[0.1,\"o\",\"a\"]\n[0.2,\"o\"]\n[0.3,\"o\",\"b\"]\n";
        match parse(text) {
            Err(CastError::Event { line, .. }) => assert_eq!(line, 3),
            other => panic!("expected an event error, got {other:?}"),
        }
        let negative = "{\"version\":2,\"width\":80,\"height\":24}\n[-1,\"o\",\"a\"]\n";
        assert!(matches!(parse(negative), Err(CastError::Event { line: 2, .. })));
    }

    #[test]
    fn unterminated_broken_last_line_is_dropped_and_flagged() {
        let text = "{\"version\":2,\"width\":80,\"height\":24}\n[0.1,\"o\",\"a\"]\n[0.2,\"o\",\"b";
        let cast = parse(text).unwrap();
        assert!(cast.truncated);
        assert_eq!(cast.events.len(), 1);
        // The same broken line followed by a newline was written whole, so it is an error.
        assert!(parse(&format!("{text}\n")).is_err());
    }

    #[test]
    fn resize_data() {
        assert_eq!(parse_resize("120x40"), Some((120, 40)));
        assert_eq!(parse_resize("0x40"), None);
        assert_eq!(parse_resize("120"), None);
        assert_eq!(parse_resize("ax4"), None);
    }
}
