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

/// Returns `output` with every sequence that could act on the auditor's terminal removed.
/// See the module doc for what is kept.
pub fn sanitize(output: &str, state: &mut SanitizerState) -> String {
    let mut out = String::with_capacity(output.len());
    for ch in output.chars() {
        step(ch, state, &mut out);
    }
    out
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
mod tests {
    use super::*;

    fn clean(s: &str) -> String {
        sanitize(s, &mut SanitizerState::default())
    }

    #[test]
    fn osc52_clipboard_is_dropped_with_bel_and_with_st() {
        assert_eq!(clean("a\x1b]52;c;ZWNobyBwd25lZA==\x07b"), "ab");
        assert_eq!(clean("a\x1b]52;c;ZWNobyBwd25lZA==\x1b\\b"), "ab");
        // C1 ST as terminator.
        assert_eq!(clean("a\x1b]52;c;Zm9v\u{9c}b"), "ab");
    }

    #[test]
    fn title_palette_hyperlink_and_cwd_oscs_are_dropped() {
        assert_eq!(clean("\x1b]0;evil title\x07x"), "x");
        assert_eq!(clean("\x1b]2;evil title\x1b\\x"), "x");
        assert_eq!(clean("\x1b]4;1;?\x07\x1b]11;?\x07x"), "x");
        assert_eq!(clean("\x1b]8;;https://evil.example/\x07link\x1b]8;;\x07"), "link");
        assert_eq!(clean("\x1b]7;file://host/tmp\x07\x1b]1337;SetMark\x07x"), "x");
    }

    #[test]
    fn device_queries_and_window_ops_are_dropped() {
        assert_eq!(clean("a\x1b[6nb\x1b[5nc"), "abc");
        assert_eq!(clean("a\x1b[cb\x1b[0cc\x1b[>cd\x1b[=ce"), "abcde");
        assert_eq!(clean("a\x1b[21tb\x1b[8;100;200tc\x1b[14t"), "abc");
        assert_eq!(clean("a\x1b[?2004$pb\x1b[>0qc"), "abc");
        assert_eq!(clean("a\x1bZb"), "ab");
    }

    #[test]
    fn dcs_apc_pm_sos_are_dropped() {
        // DECRQSS is a DCS; BEL does not end a DCS, ST does.
        assert_eq!(clean("a\x1bP$qm\x1b\\b"), "ab");
        assert_eq!(clean("a\x1bP1;2|x\x07y\x1b\\b"), "ab");
        assert_eq!(clean("a\x1b_Gf=100;AAAA\x1b\\b\x1b^pm\x1b\\c\x1bXsos\x1b\\d"), "abcd");
    }

    #[test]
    fn c1_controls_and_their_sequences_are_dropped() {
        assert_eq!(clean("a\u{9d}52;c;Zm9v\x07b"), "ab");
        assert_eq!(clean("a\u{9b}6nb"), "ab");
        assert_eq!(clean("a\u{90}$qm\u{9c}b"), "ab");
        assert_eq!(clean("a\u{85}\u{84}b"), "ab");
        // Printable non-ASCII text is untouched.
        assert_eq!(clean("é日本"), "é日本");
    }

    #[test]
    fn mouse_and_focus_reporting_modes_are_stripped_display_modes_kept() {
        assert_eq!(clean("\x1b[?1000h\x1b[?1002h\x1b[?1003h\x1b[?1006h\x1b[?1004h"), "");
        assert_eq!(clean("\x1b[?1049;1000h"), "\x1b[?1049h");
        assert_eq!(clean("\x1b[?1000l"), "");
        // DECCOLM resizes the window.
        assert_eq!(clean("\x1b[?3h\x1b[?3;25h"), "\x1b[?25h");
        // Keyboard lock and local echo are ANSI modes too; insert and newline mode stay.
        assert_eq!(clean("\x1b[2h\x1b[12l\x1b[4;2h"), "\x1b[4h");
    }

    #[test]
    fn display_sequences_survive_byte_for_byte() {
        let display = concat!(
            "\x1b[0m\x1b[1;31mred\x1b[38;5;208mx\x1b[38;2;1;2;3my\x1b[m",
            "\x1b[H\x1b[10;20H\x1b[2A\x1b[3B\x1b[4C\x1b[5D\x1b[G\x1b[12d\x1b[5f",
            "\x1b[2J\x1b[K\x1b[1K\x1b[3X\x1b[2P\x1b[4@\x1b[L\x1b[M\x1b[S\x1b[2T",
            "\x1b[1;20r\x1b[r\x1b[s\x1b[u\x1b7\x1b8\x1bM\x1b(B\x1b)0\x1b#8\x1bc",
            "\x1b[?1049h\x1b[?1049l\x1b[?1047h\x1b[?25l\x1b[?25h\x1b[?7h\x1b[?2004h\x1b[?2004l\x1b[?1h\x1b=",
            "\x1b[4h\x1b[4l\x1b[2 q\x1b[!p\x1b[?2J\x1b[3g\x1b[2b",
            "tab\there\r\n\x08\x07",
        );
        assert_eq!(clean(display), display);
    }

    #[test]
    fn sequences_split_across_calls_are_handled() {
        let mut st = SanitizerState::default();
        let mut out = sanitize("a\x1b]52;c;Zm", &mut st);
        out += &sanitize("9v\x07b", &mut st);
        assert_eq!(out, "ab");

        // A display sequence split mid-parameters comes out whole, in the later call.
        let mut st = SanitizerState::default();
        assert_eq!(sanitize("x\x1b[1;3", &mut st), "x");
        assert_eq!(sanitize("1mred", &mut st), "\x1b[1;31mred");

        // A query split right after ESC.
        let mut st = SanitizerState::default();
        assert_eq!(sanitize("x\x1b", &mut st), "x");
        assert_eq!(sanitize("[6ny", &mut st), "y");

        // ST split between its ESC and backslash.
        let mut st = SanitizerState::default();
        assert_eq!(sanitize("x\x1b]0;title\x1b", &mut st), "x");
        assert_eq!(sanitize("\\y", &mut st), "y");
    }

    #[test]
    fn unterminated_osc_is_capped_and_text_resumes() {
        let mut st = SanitizerState::default();
        let mut out = sanitize("start\x1b]52;c;", &mut st);
        let junk = "A".repeat(MAX_STRING_SEQUENCE + 10);
        out += &sanitize(&junk, &mut st);
        out += &sanitize("visible later", &mut st);
        assert!(out.starts_with("start"));
        assert!(
            out.ends_with("visible later"),
            "text after the cap must come through: {out:?}"
        );
        // The swallowed part is not echoed: only what exceeded the cap can appear.
        assert!(out.len() < "start".len() + 20 + "visible later".len(), "{}", out.len());
    }

    #[test]
    fn esc_inside_osc_ends_it_and_starts_a_new_sequence() {
        assert_eq!(clean("\x1b]0;t\x1b[31mred"), "\x1b[31mred");
    }

    fn ev(time: f64, kind: EventKind, data: &str) -> Event {
        Event {
            time,
            kind,
            data: data.to_owned(),
        }
    }

    #[test]
    fn speed_two_halves_delays() {
        let events = [
            ev(1.0, EventKind::Output, "a"),
            ev(3.0, EventKind::Output, "b"),
            ev(3.5, EventKind::Output, "c"),
        ];
        let normal = schedule(&events, &ReplayOptions::default());
        let fast = schedule(
            &events,
            &ReplayOptions {
                speed: 2.0,
                ..Default::default()
            },
        );
        let d = |v: &[(Duration, String)]| v.iter().map(|p| p.0).collect::<Vec<_>>();
        assert_eq!(
            d(&normal),
            [
                Duration::from_secs(1),
                Duration::from_secs(2),
                Duration::from_millis(500)
            ]
        );
        assert_eq!(
            d(&fast),
            [
                Duration::from_millis(500),
                Duration::from_secs(1),
                Duration::from_millis(250)
            ]
        );
        assert_eq!(fast.iter().map(|p| p.1.as_str()).collect::<String>(), "abc");
    }

    #[test]
    fn idle_limit_caps_long_pauses_only() {
        let events = [
            ev(0.5, EventKind::Output, "a"),
            ev(60.5, EventKind::Output, "b"),
            ev(61.0, EventKind::Output, "c"),
        ];
        let opts = ReplayOptions {
            idle_limit: Some(2.0),
            ..Default::default()
        };
        let delays: Vec<_> = schedule(&events, &opts).into_iter().map(|p| p.0).collect();
        assert_eq!(
            delays,
            [
                Duration::from_millis(500),
                Duration::from_secs(2),
                Duration::from_millis(500)
            ]
        );
        // Cap applies before speed.
        let opts = ReplayOptions {
            idle_limit: Some(2.0),
            speed: 4.0,
            ..Default::default()
        };
        assert_eq!(schedule(&events, &opts)[1].0, Duration::from_millis(500));
    }

    #[test]
    fn input_is_shown_only_when_asked_and_made_inert() {
        let events = [
            ev(0.1, EventKind::Output, "$ "),
            ev(0.2, EventKind::Input, "ls\x1b[A\r"),
            ev(0.3, EventKind::Resize, "100x30"),
            ev(0.4, EventKind::Output, "x"),
        ];
        let without = schedule(&events, &ReplayOptions::default());
        assert_eq!(without.len(), 2);
        // The skipped input's time still passes before the next output.
        assert_eq!(without[1].0, Duration::from_millis(300));
        let with = schedule(
            &events,
            &ReplayOptions {
                include_input: true,
                ..Default::default()
            },
        );
        assert_eq!(with[1].1, "\x1b[7mls^[[A^M\x1b[27m");
        assert_eq!(with[2].0, Duration::from_millis(200));
        // C1 and bidi controls typed are shown as everywhere else, never sent.
        let typed = [ev(0.1, EventKind::Input, "a\u{9b}6n\u{202e}b")];
        let shown = schedule(
            &typed,
            &ReplayOptions {
                include_input: true,
                ..Default::default()
            },
        );
        assert_eq!(shown[0].1, "\x1b[7ma\\u{9b}6n\\u{202e}b\x1b[27m");
    }

    #[test]
    fn event_that_sanitizes_to_nothing_carries_its_wait() {
        let events = [
            ev(1.0, EventKind::Output, "\x1b]0;t\x07"),
            ev(2.0, EventKind::Output, "x"),
        ];
        let pieces = schedule(&events, &ReplayOptions::default());
        assert_eq!(pieces, [(Duration::from_secs(2), "x".to_owned())]);
    }

    /// A writer that logs into the same list as the sleep closure, to check their order.
    struct Logged<'a>(&'a std::cell::RefCell<Vec<String>>);

    impl Write for Logged<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .borrow_mut()
                .push(format!("write {}", String::from_utf8_lossy(buf)));
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn replay_to_sleeps_then_writes_sanitized_output() {
        let cast = concat!(
            "{\"version\":2,\"width\":80,\"height\":24}\n",
            "[0.25,\"o\",\"hello \\u001b]52;c;Zm9v\\u0007\"]\n",
            "[1.25,\"o\",\"\\u001b[31mworld\\u001b[6n\"]\n",
        );
        let log = std::cell::RefCell::new(Vec::new());
        let mut out = Logged(&log);
        replay_to(cast, &ReplayOptions::default(), &mut out, |d| {
            log.borrow_mut().push(format!("sleep {d:?}"))
        })
        .unwrap();
        assert_eq!(
            log.into_inner(),
            ["sleep 250ms", "write hello ", "sleep 1s", "write \x1b[31mworld"]
        );
    }

    #[test]
    fn replay_to_rejects_bad_options_and_bad_casts() {
        let cast = "{\"version\":2,\"width\":80,\"height\":24}\n";
        let mut out = Vec::new();
        let bad_speed = ReplayOptions {
            speed: 0.0,
            ..Default::default()
        };
        assert!(matches!(
            replay_to(cast, &bad_speed, &mut out, |_| {}),
            Err(ReplayError::Speed(_))
        ));
        let bad_idle = ReplayOptions {
            idle_limit: Some(f64::NAN),
            ..Default::default()
        };
        assert!(matches!(
            replay_to(cast, &bad_idle, &mut out, |_| {}),
            Err(ReplayError::IdleLimit(_))
        ));
        assert!(matches!(
            replay_to("{\"version\":1}", &ReplayOptions::default(), &mut out, |_| {}),
            Err(ReplayError::Cast(_))
        ));
    }
}
