//! Export of one channel of a recording as an asciicast v2 file
//! (<https://docs.asciinema.org/manual/asciicast/v2/>), playable with stock
//! `asciinema play` and asciinema-player. File transfers, forwards and
//! execs of the whole session appear as markers on the same timeline.

use serde_json::json;

use crate::display::escape_json;
use crate::format::{self, Event, EventKind};
use crate::manifest::parse_rfc3339;
use crate::read::Recording;

/// The channel exported by default: the first with a pty, else the first
/// session channel, else channel 0.
pub fn default_channel(events: &[Event]) -> u32 {
    events
        .iter()
        .find(|e| matches!(e.kind, EventKind::Pty { .. }))
        .or_else(|| {
            events
                .iter()
                .find(|e| matches!(&e.kind, EventKind::Open { kind, .. } if kind == "session"))
        })
        .map(|e| e.ch)
        .unwrap_or(0)
}

/// The asciicast v2 text of `channel` (default: [`default_channel`]).
pub fn export(rec: &Recording, channel: Option<u32>) -> String {
    let ch = channel.unwrap_or_else(|| default_channel(&rec.events));
    let (term, cols, rows) = rec
        .events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Pty { term, cols, rows } if e.ch == ch => Some((term.clone(), *cols, *rows)),
            _ => None,
        })
        .unwrap_or_else(|| ("xterm".into(), 80, 24));
    let mut header = json!({
        "version": 2,
        "width": if cols == 0 { 80 } else { cols },
        "height": if rows == 0 { 24 } else { rows },
        "env": { "TERM": term },
    });
    match &rec.manifest {
        Some(m) => {
            header["title"] = json!(format!("{}@{} ({})", m.info.user, m.info.target, rec.session));
            if let Some(t) = parse_rfc3339(&m.info.started)
                && let Ok(d) = t.duration_since(std::time::UNIX_EPOCH)
            {
                header["timestamp"] = json!(d.as_secs());
            }
        }
        None => header["title"] = json!(format!("session {}", rec.session)),
    }
    let mut out = escape_json(&header.to_string()).into_owned();
    out.push('\n');
    // asciicast times must not go backwards; events of different channels
    // are stamped by different relay tasks and may interleave by microseconds.
    let mut last = 0.0f64;
    // Without a pty the node's output has bare line feeds (no tty turned
    // them into CR LF); a player would draw a staircase, and screen search
    // would see indented lines. Translate them as a tty would have.
    let has_pty = rec
        .events
        .iter()
        .any(|e| e.ch == ch && matches!(e.kind, EventKind::Pty { .. }));
    let mut after_cr = false;
    for e in &rec.events {
        let Some((code, mut text)) = line_of(e, ch) else {
            continue;
        };
        if !has_pty && code == "o" {
            let mut cooked = String::with_capacity(text.len() + 8);
            for c in text.chars() {
                if c == '\n' && !after_cr {
                    cooked.push('\r');
                }
                after_cr = c == '\r';
                cooked.push(c);
            }
            text = cooked;
        }
        last = last.max(e.t);
        // JSON escapes only C0: C1 and bidi controls are written as `\u009b`
        // too, so a `cat` of the export acts on no terminal.
        out.push_str(&escape_json(&json!([last, code, text]).to_string()));
        out.push('\n');
    }
    out
}

fn text_of(d: &Option<String>, b64: &Option<String>) -> String {
    match (d, b64) {
        (Some(d), None) => d.clone(),
        // asciicast carries strings only: bytes that are not UTF-8 are shown
        // with replacement characters here (the recording keeps them exactly).
        _ => String::from_utf8_lossy(&format::event_bytes(d, b64)).into_owned(),
    }
}

fn line_of(e: &Event, ch: u32) -> Option<(&'static str, String)> {
    let mine = e.ch == ch;
    Some(match &e.kind {
        EventKind::Output { d, b64, .. } if mine => ("o", text_of(d, b64)),
        EventKind::Input { d, b64 } if mine => ("i", text_of(d, b64)),
        EventKind::Resize { d } if mine => ("r", d.clone()),
        EventKind::Marker { d } => ("m", d.clone()),
        EventKind::Exec { command } => ("m", format!("exec (channel {}): {command}", e.ch)),
        EventKind::Subsystem { name } => ("m", format!("subsystem (channel {}): {name}", e.ch)),
        EventKind::File(f) => {
            let mut s = format!("file {} {}", f.op, f.path);
            if let Some(to) = &f.to {
                s.push_str(&format!(" -> {to}"));
            }
            if let Some(b) = f.bytes {
                s.push_str(&format!(", {b} bytes"));
            }
            if let Some(d) = f.dir {
                s.push_str(if d == format::FileDir::Up { " up" } else { " down" });
            }
            if f.ok == Some(false) {
                s.push_str(" (failed)");
            }
            ("m", s)
        }
        EventKind::Fwd {
            host,
            port,
            bytes_in,
            bytes_out,
        } => (
            "m",
            format!("forward to {host}:{port} closed: {bytes_in} bytes in, {bytes_out} bytes out"),
        ),
        EventKind::Refused { request, reason } => ("m", format!("refused {request}: {reason}")),
        EventKind::Exit { status, signal, .. } if mine => match (status, signal) {
            (Some(s), _) => ("m", format!("exit status {s}")),
            (None, Some(sig)) => ("m", format!("killed by signal {sig}")),
            _ => return None,
        },
        _ => return None,
    })
}
