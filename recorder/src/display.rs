//! Text shown to an auditor: the one escaping of recorded and user-supplied
//! strings before they reach a terminal or a file someone will `cat`.
//!
//! A command line, a subsystem name, an sftp path, a user or target name is
//! chosen by whoever made the session. Printed raw it could act on the
//! auditor's terminal (OSC 52 clipboard writes, `ESC [6n` answers typed back
//! as input, titles) or lie to the auditor (`\r ESC[2K` and a fake line, a
//! right-to-left override reordering what is shown). [`escape`] writes every
//! such character visibly (`\x1b`, `\u{9b}`, `\u{202e}`) and the backslash as
//! `\\`, so the output is unambiguous: two different strings never look the
//! same. [`escape_json`] does the same for JSON text (`--json` outputs, the
//! audit log, asciicast exports) with JSON's own `\u009b` escapes, so the file
//! stays valid and parses back to the same strings.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Characters never written raw: C0 controls and DEL, C1 controls,
/// Unicode format characters (general category Cf: bidi embeddings,
/// overrides, isolates and marks, zero-width characters, soft hyphen, BOM,
/// tags, interlinear annotation), and the line and paragraph separators.
/// Each either acts on a terminal or changes what is seen without being seen.
pub fn is_dangerous(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        | '\u{ad}' | '\u{600}'..='\u{605}' | '\u{61c}' | '\u{6dd}' | '\u{70f}'
        | '\u{890}'..='\u{891}' | '\u{8e2}' | '\u{180e}'
        | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206f}'
        | '\u{feff}' | '\u{fff9}'..='\u{fffb}'
        | '\u{110bd}' | '\u{110cd}' | '\u{13430}'..='\u{1343f}'
        | '\u{1bca0}'..='\u{1bca3}' | '\u{1d173}'..='\u{1d17a}'
        | '\u{e0001}' | '\u{e0020}'..='\u{e007f}')
}

/// Appends the visible form of `c`: itself, or its escape.
fn push_shown(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\t' => out.push_str("\\t"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        c if !is_dangerous(c) => out.push(c),
        // Below 0x80 as a byte, like the C escapes people know (`\x1b`).
        c if (c as u32) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

fn needs_escape(c: char) -> bool {
    c == '\\' || is_dangerous(c)
}

/// `s` as it may be shown on a terminal: every dangerous character (see
/// [`is_dangerous`]) and the backslash escaped; everything else unchanged.
/// Line feeds are escaped too, so one value is one line: a recorded string
/// cannot make up a line of the output around it.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        push_shown(&mut out, c);
    }
    Cow::Owned(out)
}

/// [`escape`] for bytes that may not be UTF-8: valid UTF-8 is escaped as
/// text, every other byte is shown as `\xNN` (always ≥ 0x80, so never
/// confused with an escaped character, which is below 0x80 in that form).
/// A raw 0x9b byte, which an 8-bit terminal takes as CSI, is shown as `\x9b`.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_shown(&mut out, c);
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// [`escape`] for text made of lines (an error message, a report): each
/// line is escaped, the line feeds between them are kept.
pub fn escape_lines(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c != '\n' && needs_escape(c)) {
        return Cow::Borrowed(s);
    }
    let lines: Vec<Cow<'_, str>> = s.split('\n').map(escape).collect();
    Cow::Owned(lines.join("\n"))
}

/// JSON text (as serde_json writes it) with every dangerous character from
/// DEL up written as a `\uXXXX` escape. serde_json escapes C0 controls but
/// writes DEL, C1 controls and format characters raw, so a `cat` of the file
/// would send them to a terminal. Outside strings JSON text is ASCII (the
/// line feeds and spaces of pretty printing among it, left alone), so every
/// such character is inside a string, where the escape means the same
/// character: the text parses to the same value.
pub fn escape_json(json: &str) -> Cow<'_, str> {
    let escaped = |c: char| c >= '\u{7f}' && is_dangerous(c);
    if !json.chars().any(escaped) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if escaped(c) {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{u:04x}");
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
#[path = "display_tests.rs"]
mod tests;
