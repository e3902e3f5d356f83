//! The console's part in running sessions, the same for SSH and the
//! browser: which are running (as the viewer may see them), watching one
//! (auditors only, never one's own, the watcher noted in the recording
//! before the first byte is shown), and terminating one (terminators only,
//! with a plain-text reason). Every action is audited; a refusal too.

use std::sync::Arc;

use anyhow::{Result, bail};
use recorder::Sink;
use recorder::sink::Follower;
use serde_json::json;

use super::{Reader, Viewer};
use crate::running::{Running, RunningSession, Watching};

/// The longest reason a terminator may give.
pub const REASON_MAX: usize = 300;

/// The running sessions the viewer may see, newest first.
pub fn running_rows(viewer: &Viewer, running: &Running) -> Vec<Arc<RunningSession>> {
    running
        .list()
        .into_iter()
        .filter(|s| viewer.sees(&s.info.user))
        .collect()
}

/// A watch under way: the recorded lines from the first, and the watcher's
/// place in the session (they leave when this is dropped).
pub struct Watched {
    pub follower: Follower,
    pub session: Arc<RunningSession>,
    pub watching: Watching,
}

/// The running session `id` as an auditor may reach it; one they may not
/// see, or that does not run here, is "no running session".
fn reachable(viewer: &Viewer, running: &Running, id: &str) -> Result<Arc<RunningSession>> {
    let found = recorder::format::valid_session_id(id)
        .then(|| running.get(id))
        .flatten()
        .filter(|s| viewer.sees(&s.info.user));
    match found {
        Some(s) => Ok(s),
        None => bail!("no running session {}", recorder::display::escape(id)),
    }
}

/// Starts watching `id`: auditors only, never one's own session.
pub async fn watch(reader: &Reader, viewer: &Viewer, running: &Running, sink: &dyn Sink, id: &str) -> Result<Watched> {
    if !viewer.role.sees_everyone() {
        bail!("watching sessions is for auditors");
    }
    let session = reachable(viewer, running, id)?;
    let Some(follower) = sink.follow(id) else {
        bail!("no running session {}", recorder::display::escape(id));
    };
    let watching = match session.join(&viewer.user, viewer.door.as_str()).await {
        Ok(w) => w,
        Err(refused) => {
            reader.audited(
                viewer,
                "watch_refused",
                json!({"session": id, "why": refused.to_string()}),
            )?;
            bail!("{refused}");
        }
    };
    reader.audited(viewer, "watch", json!({"session": id, "user": session.info.user}))?;
    Ok(Watched {
        follower,
        session,
        watching,
    })
}

/// The asciicast v2 line (`[t, "o", text]` or `[t, "r", "COLSxROWS"]`) an
/// event line makes for the followed terminal: the first channel that asks
/// for a pty, unless `channel` names one.
pub fn terminal_event(line: &str, channel: &mut Option<u32>) -> Terminal {
    use recorder::format::{Event, EventKind};
    // Output is nearly every line of a busy session: its text is already a
    // JSON string as written, so it is passed on without being decoded and
    // escaped again.
    if let Some((t, ch, d)) = output_line(line) {
        return match *channel == Some(ch) {
            true => Terminal::Line(format!("[{t},\"o\",{d}]")),
            false => Terminal::Nothing,
        };
    }
    let Ok(ev) = serde_json::from_str::<Event>(line) else {
        return Terminal::Nothing;
    };
    if let EventKind::Pty { .. } = ev.kind {
        channel.get_or_insert(ev.ch);
    }
    if *channel != Some(ev.ch) {
        return Terminal::Nothing;
    }
    let (code, data) = match &ev.kind {
        EventKind::Output { d, b64, .. } => (
            "o",
            String::from_utf8_lossy(&recorder::format::event_bytes(d, b64)).into_owned(),
        ),
        EventKind::Pty { cols, rows, .. } => match sane_size(*cols, *rows) {
            Some(size) => ("r", size),
            None => return Terminal::Nothing,
        },
        EventKind::Resize { d } => {
            let size = d
                .split_once('x')
                .and_then(|(c, r)| sane_size(c.parse().ok()?, r.parse().ok()?));
            match size {
                Some(size) => ("r", size),
                None => return Terminal::Nothing,
            }
        }
        EventKind::Close { .. } => return Terminal::Closed,
        _ => return Terminal::Nothing,
    };
    Terminal::Line(json!([ev.t, code, data]).to_string())
}

/// The time, channel and text (a JSON string, as written) of an output line
/// as [`recorder::format::write_data_line`] writes it; `None` for any other.
fn output_line(line: &str) -> Option<(&str, u32, &str)> {
    let rest = line.strip_prefix("{\"t\":")?;
    let (t, rest) = rest.split_once(",\"ch\":")?;
    let (ch, rest) = rest.split_once(",\"e\":\"o\",\"d\":")?;
    let d = rest.strip_suffix('}')?;
    let d = d.strip_suffix(",\"err\":true").unwrap_or(d);
    let one_string = d.len() >= 2 && d.starts_with('"') && d.ends_with('"') && !d.ends_with("\\\"");
    (one_string && t.parse::<f64>().is_ok()).then_some(())?;
    Some((t, ch.parse().ok()?, d))
}

/// `COLSxROWS` for a size a terminal can have: a client without a terminal
/// of its own (`ssh -tt` from a script) asks for 0x0, and a hostile one for
/// a million columns; neither is passed to the watcher's player.
fn sane_size(cols: u32, rows: u32) -> Option<String> {
    ((1..=1000).contains(&cols) && (1..=1000).contains(&rows)).then(|| format!("{cols}x{rows}"))
}

/// What one recorded line means for a watcher's terminal.
#[derive(Debug, PartialEq, Eq)]
pub enum Terminal {
    /// An asciicast v2 event line to send.
    Line(String),
    /// Nothing for this terminal.
    Nothing,
    /// The followed channel closed: the watch is over.
    Closed,
}

/// Checks a terminator's reason: what the engineer's terminal prints, so
/// plain text only.
fn check_reason(reason: &str) -> Result<&str> {
    let reason = reason.trim();
    if reason.is_empty() {
        bail!("a reason is required: the engineer reads it");
    }
    if reason.chars().count() > REASON_MAX {
        bail!("the reason is longer than {REASON_MAX} characters");
    }
    if reason.chars().any(policy::is_unsafe) {
        bail!("the reason contains a control or formatting character; use plain text");
    }
    Ok(reason)
}

/// Ends the running session `id`, saying `reason` to its user: terminators
/// only; a refusal is audited too.
pub async fn terminate(reader: &Reader, viewer: &Viewer, running: &Running, id: &str, reason: &str) -> Result<()> {
    let refuse = |why: &str| -> Result<()> {
        reader.audited(viewer, "terminate_refused", json!({"session": id, "why": why}))?;
        bail!("{why}")
    };
    if !viewer.terminates {
        return refuse("terminating sessions is for the groups in [console] terminators");
    }
    let reason = match check_reason(reason) {
        Ok(r) => r,
        Err(e) => return refuse(&e.to_string()),
    };
    let session = match reachable(viewer, running, id) {
        Ok(s) => s,
        Err(e) => return refuse(&e.to_string()),
    };
    reader.audited(
        viewer,
        "terminate",
        json!({"session": id, "user": session.info.user, "target": session.info.target, "reason": reason}),
    )?;
    if let Err(refused) = session.terminate(&viewer.user, reason).await {
        return refuse(&refused.to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_first_pty_channel_is_followed_as_asciicast() {
        let mut ch = None;
        let ev = |l: &str, ch: &mut Option<u32>| super::terminal_event(l, ch);
        assert_eq!(
            ev(r#"{"t":0.1,"ch":0,"e":"o","d":"no pty"}"#, &mut ch),
            super::Terminal::Nothing
        );
        assert_eq!(
            ev(
                r#"{"t":0.2,"ch":1,"e":"pty","term":"xterm","cols":100,"rows":30}"#,
                &mut ch
            ),
            super::Terminal::Line(r#"[0.2,"r","100x30"]"#.into())
        );
        assert_eq!(
            ev(r#"{"t":0.3,"ch":1,"e":"o","d":"hi\u001b[1m"}"#, &mut ch),
            super::Terminal::Line(r#"[0.3,"o","hi\u001b[1m"]"#.into())
        );
        assert_eq!(
            ev(r#"{"t":0.4,"ch":0,"e":"o","d":"other"}"#, &mut ch),
            super::Terminal::Nothing
        );
        assert_eq!(
            ev(r#"{"t":0.5,"ch":1,"e":"r","d":"90x20"}"#, &mut ch),
            super::Terminal::Line(r#"[0.5,"r","90x20"]"#.into())
        );
        for bad in ["0x0", "90x", "5000x20", "x"] {
            let line = format!(r#"{{"t":0.5,"ch":1,"e":"r","d":"{bad}"}}"#);
            assert_eq!(ev(&line, &mut ch), super::Terminal::Nothing, "{bad}");
        }
        assert_eq!(
            ev(
                r#"{"t":0.5,"ch":1,"e":"pty","term":"xterm","cols":0,"rows":0}"#,
                &mut ch
            ),
            super::Terminal::Nothing
        );
        assert_eq!(
            ev(r#"{"t":0.6,"ch":1,"e":"close","bytes_in":0,"bytes_out":2}"#, &mut ch),
            super::Terminal::Closed
        );
    }

    #[test]
    fn output_lines_pass_as_written_and_mean_what_the_parser_reads() {
        use recorder::format::{Piece, write_data_line};
        let texts = [
            "plain",
            "quote \" and \\ back",
            "esc \u{1b}[1m bold",
            "tab\tnl\n",
            "ends with \\",
            "ünï ✓",
            "",
        ];
        for text in texts {
            for err in [false, true] {
                let mut buf = Vec::new();
                write_data_line(&mut buf, 1.25, 3, false, err, &Piece::Text(text.into()));
                let line = String::from_utf8(buf).unwrap();
                let line = line.trim_end_matches('\n');
                let mut ch = Some(3);
                let super::Terminal::Line(fast) = super::terminal_event(line, &mut ch) else {
                    panic!("{line}: no event")
                };
                let v: serde_json::Value = serde_json::from_str(&fast).unwrap();
                assert_eq!(v, serde_json::json!([1.25, "o", text]), "{line}");
                let mut other = Some(4);
                assert_eq!(super::terminal_event(line, &mut other), super::Terminal::Nothing);
            }
        }
        // Bytes that are not text go as base64 and take the parser's way.
        let mut buf = Vec::new();
        write_data_line(&mut buf, 2.0, 3, false, false, &Piece::Bytes(vec![0xff, 0xfe]));
        let line = String::from_utf8(buf).unwrap();
        assert!(super::output_line(line.trim_end()).is_none(), "{line}");
        let mut ch = Some(3);
        assert!(matches!(
            super::terminal_event(line.trim_end(), &mut ch),
            super::Terminal::Line(_)
        ));
    }

    #[test]
    fn a_reason_is_plain_text_of_a_bounded_length() {
        assert_eq!(super::check_reason("  rogue rm -rf  ").unwrap(), "rogue rm -rf");
        assert!(super::check_reason(" ").is_err());
        assert!(super::check_reason("stop\x1b[2J").is_err());
        assert!(super::check_reason("bidi \u{202e}").is_err());
        assert!(super::check_reason(&"x".repeat(super::REASON_MAX + 1)).is_err());
    }
}
