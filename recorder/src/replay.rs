//! Replaying a recorded session on an auditor's terminal, safely.
//!
//! A recording is output some other person's session produced; written raw to the auditor's
//! terminal it could act on that terminal: set the clipboard (OSC 52), change the window title
//! or palette, make the terminal *answer* (device status, device attributes, window reports —
//! answers that arrive as if the auditor typed them), turn on mouse reporting, or resize the
//! window. [`sanitize`] removes those and keeps what only draws (colours, cursor movement,
//! erasing, scroll regions, the alternate screen, bracketed paste mode), so the replay looks
//! like the session did.
//!
//! The filter is an allow-list for CSI and ESC sequences (an unknown sequence is dropped, not
//! passed) and drops every string sequence (OSC, DCS, SOS, PM, APC) and every C1 control.
//! Sequences split across events are handled by the [`SanitizerState`] carried between calls;
//! a string sequence that never ends is abandoned after [`MAX_STRING_SEQUENCE`] bytes so it
//! cannot hide the rest of the recording.
//!
//! [`schedule`] turns events into (delay, text) pieces — pure, so timing is tested without
//! sleeping — and [`replay_to`] writes them with a caller-supplied sleep.

use std::io::Write;
use std::time::Duration;

use crate::cast_parse::{self, CastError, Event, EventKind};
use crate::display;

/// How many bytes of an unterminated OSC/DCS/SOS/PM/APC string are swallowed before the
/// sanitizer gives up on it and resumes passing text. Real payloads that matter here (titles,
/// hyperlinks, clipboard writes of a few lines) are far shorter; a lost terminator must not
/// blank the rest of a recording.
pub const MAX_STRING_SEQUENCE: usize = 4096;

/// A CSI sequence longer than this is not one any terminal uses; it is dropped.
const MAX_CSI: usize = 256;

/// Parser state carried from one [`sanitize`] call to the next.
#[derive(Debug, Default, Clone)]
pub struct SanitizerState {
    mode: Mode,
    /// The raw text of the escape or CSI sequence being read, written out only once it is
    /// complete and allowed.
    pending: String,
    /// Bytes swallowed so far by the current string sequence.
    swallowed: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Mode {
    #[default]
    Ground,
    /// After ESC.
    Escape,
    /// After ESC and one or more intermediate bytes (e.g. `ESC (`).
    EscapeIntermediate,
    /// Inside `ESC [` (or C1 CSI, which is always dropped: `drop_csi`).
    Csi { drop_csi: bool },
    /// Inside OSC, DCS, SOS, PM or APC; `bel_ends` for OSC, where xterm accepts BEL as ST.
    Str { bel_ends: bool },
    /// ESC seen inside a string: ST if `\` follows.
    StrEscape,
}

impl SanitizerState {
    /// Whether no sequence is half read: what follows is treated exactly as a fresh state
    /// would treat it, so a replay may start here (the screen index keys on this).
    pub fn at_rest(&self) -> bool {
        self.mode == Mode::Ground
    }
}

/// Returns `output` with every sequence that could act on the auditor's terminal removed.
/// See the module doc for what is kept.
pub fn sanitize(output: &str, state: &mut SanitizerState) -> String {
    let mut out = String::with_capacity(output.len());
    sanitize_into(output, state, &mut out);
    out
}

/// [`sanitize`], appending to `out`.
pub fn sanitize_into(output: &str, state: &mut SanitizerState, out: &mut String) {
    let mut rest = output;
    while !rest.is_empty() {
        if state.mode == Mode::Ground {
            // Plain text passes unchanged in the ground state: only ESC and C1 controls (two
            // bytes in UTF-8, lead byte 0xC2) start anything, so copy up to the next of those
            // at once instead of a character at a time. Most output is such text.
            let plain = rest.bytes().position(|b| b == 0x1b || b == 0xc2).unwrap_or(rest.len());
            out.push_str(&rest[..plain]);
            rest = &rest[plain..];
        }
        let mut chars = rest.chars();
        let Some(ch) = chars.next() else { break };
        step(ch, state, out);
        rest = chars.as_str();
    }
}

fn step(ch: char, st: &mut SanitizerState, out: &mut String) {
    match st.mode {
        Mode::Ground => ground(ch, st, out),
        Mode::Escape => match ch {
            '[' => {
                st.pending.push(ch);
                st.mode = Mode::Csi { drop_csi: false };
            }
            ']' => start_string(st, true),
            'P' | 'X' | '^' | '_' => start_string(st, false),
            '\x20'..='\x2f' => {
                st.pending.push(ch);
                st.mode = Mode::EscapeIntermediate;
            }
            // Cursor save/restore, keypad modes, index, next line, tab set, reverse index,
            // full reset: display only. Everything else (ESC Z asks the terminal to identify
            // itself; ESC \ is a stray ST; unknown finals) is dropped.
            '7' | '8' | '=' | '>' | 'D' | 'E' | 'H' | 'M' | 'c' => {
                out.push_str(&st.pending);
                out.push(ch);
                reset(st);
            }
            '\x30'..='\x7e' => reset(st),
            // A new ESC restarts the sequence; the dangling one is dropped.
            '\x1b' => {}
            '\x18' | '\x1a' => reset(st),
            // C0 controls execute in the middle of a sequence on a real terminal.
            c if (c as u32) < 0x20 => out.push(c),
            // Not part of any sequence: abandon the escape, treat the character as text.
            c => {
                reset(st);
                ground(c, st, out);
            }
        },
        Mode::EscapeIntermediate => match ch {
            '\x20'..='\x2f' => st.pending.push(ch),
            '\x30'..='\x7e' => {
                // Character set designations (`ESC ( B`, `ESC ) 0`, ...) and `ESC # 8` draw;
                // `ESC SP F/G` (7/8-bit responses) and `ESC %` (leave UTF-8) change how the
                // auditor's terminal talks or decodes, so they are dropped.
                let first = st.pending.chars().nth(1);
                if matches!(first, Some('(' | ')' | '*' | '+' | '-' | '.' | '/' | '#')) {
                    out.push_str(&st.pending);
                    out.push(ch);
                }
                reset(st);
            }
            '\x18' | '\x1a' => reset(st),
            c if (c as u32) < 0x20 && c != '\x1b' => out.push(c),
            c => {
                reset(st);
                ground(c, st, out);
            }
        },
        Mode::Csi { drop_csi } => match ch {
            '\x20'..='\x3f' => {
                st.pending.push(ch);
                if st.pending.len() > MAX_CSI {
                    // Keep reading to the final byte but write nothing.
                    st.mode = Mode::Csi { drop_csi: true };
                    st.pending.truncate(1);
                }
            }
            '\x40'..='\x7e' => {
                if !drop_csi && let Some(kept) = filter_csi(&st.pending[2..], ch) {
                    out.push_str("\x1b[");
                    out.push_str(&kept);
                    out.push(ch);
                }
                reset(st);
            }
            '\x18' | '\x1a' => reset(st),
            '\x1b' => {
                reset(st);
                st.pending.push('\x1b');
                st.mode = Mode::Escape;
            }
            c if (c as u32) < 0x20 => out.push(c),
            c => {
                reset(st);
                ground(c, st, out);
            }
        },
        Mode::Str { bel_ends } => {
            st.swallowed += ch.len_utf8();
            match ch {
                '\x07' if bel_ends => reset(st),
                '\u{9c}' | '\x18' | '\x1a' => reset(st),
                '\x1b' => st.mode = Mode::StrEscape,
                _ if st.swallowed > MAX_STRING_SEQUENCE => reset(st),
                _ => {}
            }
        }
        Mode::StrEscape => {
            reset(st);
            if ch != '\\' {
                // xterm ends a string at any ESC; what follows it is a new escape sequence.
                st.pending.push('\x1b');
                st.mode = Mode::Escape;
                step(ch, st, out);
            }
        }
    }
}

fn ground(ch: char, st: &mut SanitizerState, out: &mut String) {
    match ch {
        '\x1b' => {
            st.pending.push(ch);
            st.mode = Mode::Escape;
        }
        // C1 introducers: the whole sequence they open is dropped, so its parameters do not
        // spill onto the screen as text.
        '\u{9d}' => start_string(st, true),
        '\u{90}' | '\u{98}' | '\u{9e}' | '\u{9f}' => start_string(st, false),
        '\u{9b}' => {
            st.pending.push_str("\x1b[");
            st.mode = Mode::Csi { drop_csi: true };
        }
        // Every other C1 control: a terminal that honours 8-bit controls would act on it.
        '\u{80}'..='\u{9f}' => {}
        c => out.push(c),
    }
}

fn start_string(st: &mut SanitizerState, bel_ends: bool) {
    st.pending.clear();
    st.swallowed = 0;
    st.mode = Mode::Str { bel_ends };
}

fn reset(st: &mut SanitizerState) {
    st.pending.clear();
    st.swallowed = 0;
    st.mode = Mode::Ground;
}

/// DEC private modes that act beyond the screen: mouse and focus reporting (the reports would
/// be typed into whatever runs on the auditor's terminal) and DECCOLM (`?3`, which resizes the
/// window on terminals that allow it).
const DROPPED_DEC_MODES: &[&str] = &[
    "3", "9", "1000", "1001", "1002", "1003", "1004", "1005", "1006", "1015", "1016",
];

/// ANSI modes that only change drawing: insert (IRM) and newline (LNM). Others lock the
/// keyboard (KAM, 2) or turn off local echo (SRM, 12) on terminals that honour them.
const KEPT_ANSI_MODES: &[&str] = &["4", "20"];

/// Keeps the listed modes of a set/reset sequence: `None` if none is left.
fn keep_modes(params: &str, keep: impl Fn(&str) -> bool) -> Option<String> {
    let kept: Vec<&str> = params.split(';').filter(|m| !m.is_empty() && keep(m)).collect();
    (!kept.is_empty()).then(|| kept.join(";"))
}

/// Decides a CSI sequence: `Some(body)` to write `ESC [ body final`, `None` to drop it.
/// `body` is everything between `ESC [` and the final byte.
fn filter_csi(body: &str, fin: char) -> Option<String> {
    let (prefix, rest) = match body.chars().next() {
        Some(p @ ('<' | '=' | '>' | '?')) => (Some(p), &body[1..]),
        _ => (None, body),
    };
    // Intermediates (0x20-0x2f) sit between the parameters and the final byte.
    let split = rest
        .find(|c: char| ('\x20'..='\x2f').contains(&c))
        .unwrap_or(rest.len());
    let (params, inter) = rest.split_at(split);
    if params.contains(['<', '=', '>', '?']) || inter.contains(|c: char| !('\x20'..='\x2f').contains(&c)) {
        return None;
    }
    match (prefix, inter, fin) {
        // Cursor movement, erase, insert/delete, scroll, tabs, SGR, margins, cursor save/restore,
        // repeat. `n` (DSR), `c` (DA), `t` (XTWINOPS), `x` (DECREQTPARM) are not here.
        (None, "", '@' | 'A'..='H' | 'I' | 'J' | 'K' | 'L' | 'M' | 'P' | 'S' | 'X' | 'Z')
        | (None, "", '`' | 'a' | 'b' | 'd' | 'e' | 'f' | 'g' | 'm' | 'r' | 's' | 'u') => Some(body.to_owned()),
        // `CSI Ps T` scrolls down; with more parameters it is xterm's mouse highlight tracking.
        (None, "", 'T') if !params.contains(';') => Some(body.to_owned()),
        (None, "", 'h' | 'l') => keep_modes(params, |m| KEPT_ANSI_MODES.contains(&m)),
        // Selective erase.
        (Some('?'), "", 'J' | 'K') => Some(body.to_owned()),
        // DEC private modes: keep display modes (alternate screen, cursor visibility,
        // autowrap, bracketed paste, ...), strip `DROPPED_DEC_MODES`.
        (Some('?'), "", 'h' | 'l') => {
            keep_modes(params, |m| !DROPPED_DEC_MODES.contains(&m)).map(|kept| format!("?{kept}"))
        }
        // Cursor shape (DECSCUSR) and soft reset (DECSTR).
        (None, " ", 'q') | (None, "!", 'p') => Some(body.to_owned()),
        _ => None,
    }
}

/// How to pace a replay.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayOptions {
    /// Playback speed factor: 2.0 plays twice as fast. Must be finite and > 0.
    pub speed: f64,
    /// Longest pause, in recorded seconds, before speed is applied; `None` keeps pauses whole.
    pub idle_limit: Option<f64>,
    /// Also show what the user typed (`i` events), in reverse video with control characters
    /// in caret notation (`^C`, `^[`), so keystrokes are visible and never interpreted.
    pub include_input: bool,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            speed: 1.0,
            idle_limit: None,
            include_input: false,
        }
    }
}

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read the recording: {0}")]
    Cast(#[from] CastError),
    #[error("replay speed must be a finite number > 0, got {0}")]
    Speed(f64),
    #[error("idle limit must be a finite number >= 0, got {0}")]
    IdleLimit(f64),
    #[error("writing the replay: {0}")]
    Io(#[from] std::io::Error),
}

/// Computes the replay: for each piece to write, the delay to wait before writing it and the
/// sanitized text. Output events always, input events if `include_input`; resizes and markers
/// are not written (a resize could only be replayed with a window operation, which is exactly
/// what the sanitizer removes), but their time still passes.
///
/// An event whose text sanitizes to nothing produces no piece; its wait is carried into the
/// next piece. The idle cap applies to the gap between written pieces. A `speed` that is not
/// finite and > 0 is treated as 1.0 ([`replay_to`] rejects it instead).
pub fn schedule(events: &[Event], opts: &ReplayOptions) -> Vec<(Duration, String)> {
    let speed = if opts.speed.is_finite() && opts.speed > 0.0 {
        opts.speed
    } else {
        1.0
    };
    let mut state = SanitizerState::default();
    let mut pieces = Vec::new();
    let mut last_time = 0.0_f64;
    for ev in events {
        let text = match ev.kind {
            EventKind::Output => sanitize(&ev.data, &mut state),
            EventKind::Input if opts.include_input => show_input(&ev.data),
            _ => continue,
        };
        if text.is_empty() {
            continue;
        }
        let mut gap = (ev.time - last_time).max(0.0);
        if let Some(limit) = opts.idle_limit.filter(|l| l.is_finite() && *l >= 0.0) {
            gap = gap.min(limit);
        }
        last_time = last_time.max(ev.time);
        let delay = Duration::try_from_secs_f64(gap / speed).unwrap_or(Duration::ZERO);
        pieces.push((delay, text));
    }
    pieces
}

/// Typed input as inert, visible text: reverse video, controls in caret notation (how
/// keystrokes are known), every other dangerous character (C1, bidi, format) as
/// [`display::escape`] shows it everywhere else.
fn show_input(data: &str) -> String {
    let mut s = String::from("\x1b[7m");
    for c in data.chars() {
        match c {
            '\x7f' => s.push_str("^?"),
            c if (c as u32) < 0x20 => {
                s.push('^');
                s.push(char::from(c as u8 + 0x40));
            }
            c if display::is_dangerous(c) => s.push_str(&display::escape(c.encode_utf8(&mut [0; 4]))),
            c => s.push(c),
        }
    }
    s.push_str("\x1b[27m");
    s
}

/// Replays asciicast v2 text to `out`: for each piece of [`schedule`], calls `sleep` with its
/// delay, then writes and flushes it. The CLI passes `std::thread::sleep`.
pub fn replay_to<W: Write>(
    cast_text: &str,
    opts: &ReplayOptions,
    out: &mut W,
    mut sleep: impl FnMut(Duration),
) -> Result<(), ReplayError> {
    if !(opts.speed.is_finite() && opts.speed > 0.0) {
        return Err(ReplayError::Speed(opts.speed));
    }
    if let Some(limit) = opts.idle_limit
        && !(limit.is_finite() && limit >= 0.0)
    {
        return Err(ReplayError::IdleLimit(limit));
    }
    let cast = cast_parse::parse(cast_text)?;
    for (delay, text) in schedule(&cast.events, opts) {
        sleep(delay);
        out.write_all(text.as_bytes())?;
        out.flush()?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "replay_tests.rs"]
mod tests;
