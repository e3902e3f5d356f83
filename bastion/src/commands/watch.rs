//! `sessions watch ID`: an auditor follows a running session in their own
//! terminal, from its first recorded byte (so the current screen is drawn)
//! to its end, through the replay's sanitiser. It reads the recorder's own
//! stream (`Sink::follow`: the lines written to the recording, joined to
//! the live feed by sequence number), never a side path; a slow watcher
//! never slows the session (the feed drops, the follower catches up from
//! the files). Ctrl-] or `~.` at the start of a line leaves.

use recorder::format::{Event, EventKind};
use recorder::replay::{SanitizerState, sanitize};

use super::io::ChannelIo;
use crate::console::Viewer;

/// Ctrl-], as telnet taught.
const LEAVE: u8 = 0x1d;

/// Where the watcher's typing is, for the `~.` escape (keys come one per
/// packet, so this carries across reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Typing {
    LineStart,
    Tilde,
    MidLine,
}

/// Whether the watcher typed a way out: Ctrl-] anywhere, or `~.` at the
/// start of a line (as ssh's escape).
fn leaves(typed: &[u8], at: &mut Typing) -> bool {
    for &b in typed {
        if b == LEAVE || (*at == Typing::Tilde && b == b'.') {
            return true;
        }
        *at = match b {
            b'\r' | b'\n' => Typing::LineStart,
            b'~' if *at == Typing::LineStart => Typing::Tilde,
            _ => Typing::MidLine,
        };
    }
    false
}

/// The terminal text an event line carries for `channel` (the first channel
/// that prints, unless one is named), or `None`; `Err` when the channel closed.
fn output_of(line: &str, channel: &mut Option<u32>) -> Result<Option<String>, ()> {
    let Ok(ev) = serde_json::from_str::<Event>(line) else {
        return Ok(None);
    };
    match &ev.kind {
        EventKind::Output { d, b64, .. } => {
            if *channel.get_or_insert(ev.ch) != ev.ch {
                return Ok(None);
            }
            Ok(Some(
                String::from_utf8_lossy(&recorder::format::event_bytes(d, b64)).into_owned(),
            ))
        }
        EventKind::Close { .. } if *channel == Some(ev.ch) => Err(()),
        _ => Ok(None),
    }
}

pub async fn run(
    bastion: &crate::context::Bastion,
    viewer: &Viewer,
    id: &str,
    channel: Option<u32>,
    io: &mut ChannelIo,
) -> anyhow::Result<u32> {
    let reader = crate::console::Reader::of(bastion);
    let watched = crate::console::watch(&reader, viewer, &bastion.running, bastion.sink.as_ref(), id).await?;
    let crate::console::Watched {
        mut follower, watching, ..
    } = watched;
    io.write("[watching; Ctrl-] or ~. leaves]\n").await;
    let (mut channel, mut state, mut typing) = (channel, SanitizerState::default(), Typing::LineStart);
    let ended = loop {
        tokio::select! {
            line = follower.next() => match line {
                None => break "the session ended",
                Some(Err(e)) => break if matches!(e, recorder::sink::FollowError::Cut) { "the recording stopped" } else { "the feed broke" },
                Some(Ok(line)) => match output_of(&line, &mut channel) {
                    Ok(Some(text)) => {
                        let shown = sanitize(&text, &mut state);
                        if !shown.is_empty() && !io.write_raw(shown.into_bytes()).await {
                            break "left";
                        }
                    }
                    Ok(None) => {}
                    Err(()) => break "the channel closed",
                },
            },
            typed = io.read_bytes() => match typed {
                Some(t) if !leaves(&t, &mut typing) => {}
                _ => break "left",
            },
        }
    };
    drop(watching);
    let _ = reader.audit_view(viewer, "watch_end", id);
    io.write_raw(format!("\x1b[0m\r\n[{ended}]\r\n").into_bytes()).await;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctrl_bracket_or_tilde_dot_after_a_newline_leave() {
        let typed = |reads: &[&[u8]]| {
            let mut at = Typing::LineStart;
            reads.iter().any(|r| leaves(r, &mut at))
        };
        assert!(typed(&[b"~."]));
        assert!(typed(&[b"~", b"."]), "one key per packet");
        assert!(typed(&[b"l", b"s", b"\r", b"~", b"."]));
        assert!(typed(&[b"ls\r~."]));
        assert!(typed(&[b"x\x1dy"]));
        assert!(!typed(&[b"a~."]), "~. in the middle of a line is text");
        assert!(!typed(&[b"a", b"~", b"."]));
        assert!(!typed(&[b"~~", b"."]));
        assert!(!typed(&[b"ls -la\r"]));
    }

    #[test]
    fn only_the_followed_channel_prints_and_its_close_ends() {
        let mut ch = None;
        assert_eq!(
            output_of(r#"{"t":0.1,"ch":2,"k":"open","kind":"session"}"#, &mut ch),
            Ok(None)
        );
        assert_eq!(ch, None);
        let out = serde_json::to_string(&Event {
            t: 0.2,
            ch: 2,
            kind: EventKind::Output {
                d: Some("hi".into()),
                b64: None,
                err: false,
            },
        })
        .unwrap();
        assert_eq!(output_of(&out, &mut ch), Ok(Some("hi".into())));
        assert_eq!(ch, Some(2));
        let other = out.replace("\"ch\":2", "\"ch\":3");
        assert_eq!(output_of(&other, &mut ch), Ok(None));
        let close = serde_json::to_string(&Event {
            t: 0.3,
            ch: 2,
            kind: EventKind::Close {
                bytes_in: 0,
                bytes_out: 2,
            },
        })
        .unwrap();
        assert_eq!(output_of(&close, &mut ch), Err(()));
    }
}
