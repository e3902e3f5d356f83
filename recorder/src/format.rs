//! The stored format of a recording: object keys, the chunk header that
//! chains chunks by SHA-256, the event lines, and the incremental UTF-8
//! splitter that keeps terminal bytes lossless.
//!
//! A session is a chain of chunks `<session>/chunk-<seq:06>.jsonl` plus one
//! `<session>/manifest.json`. A chunk is JSON lines: a header
//! `{"session":…,"seq":N,"prev":"<sha256 of the previous chunk>"}` then one
//! event per line `{"t":secs,"ch":N,"e":KIND,…}`. Everything here is pure:
//! the sink, the reader and the verifier share these definitions so that
//! what is written is exactly what is checked.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `prev` of the first chunk: there is nothing before it.
pub const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The key of chunk `seq` of `session`.
pub fn chunk_key(session: &str, seq: u64) -> String {
    format!("{session}/{}", chunk_file_name(seq))
}

/// The file name of chunk `seq` (the last part of its key; also its spool name).
pub fn chunk_file_name(seq: u64) -> String {
    format!("chunk-{seq:06}.jsonl")
}

/// The key of a session's manifest.
pub fn manifest_key(session: &str) -> String {
    format!("{session}/manifest.json")
}

/// The sequence number in a chunk file name (`chunk-000012.jsonl` → 12).
pub fn parse_chunk_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("chunk-")?.strip_suffix(".jsonl")?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Session ids become the first part of every key, so only plain names are
/// accepted: a `/` or `..` in an id would let one session write into another's
/// place in the store.
pub fn valid_session_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha256(bytes))
}

/// The first line of every chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkHeader {
    pub session: String,
    pub seq: u64,
    /// Hex SHA-256 of the previous chunk's bytes, or [`ZERO_HASH`].
    pub prev: String,
}

/// Which way an end-of-file went (`in`: client → node, `out`: node → client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flow {
    In,
    Out,
}

/// Which way a file travelled: `up` from the engineer to the node, `down` back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileDir {
    Up,
    Down,
}

/// A file operation seen in an sftp, scp or rsync stream (never its contents).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileOp {
    /// `read`, `write`, `remove`, `rename`, `mkdir`, `rmdir`, `setstat`.
    pub op: String,
    pub path: String,
    /// The new name of a `rename`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<FileDir>,
    /// The server's answer where the protocol gives one (sftp STATUS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// What happened, tagged by `"e"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "e")]
pub enum EventKind {
    /// Output text (stdout, or stderr with `err`). `d` is UTF-8 text; bytes
    /// that are not UTF-8 at all go as `b64` instead.
    #[serde(rename = "o")]
    Output {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        d: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        b64: Option<String>,
        #[serde(default, skip_serializing_if = "is_false")]
        err: bool,
    },
    /// Input text, kept only when the session's policy says `record_input`.
    #[serde(rename = "i")]
    Input {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        d: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        b64: Option<String>,
    },
    /// Window change, `d` = `COLSxROWS`.
    #[serde(rename = "r")]
    Resize { d: String },
    /// A free-text marker (e.g. a parser that lost its stream).
    #[serde(rename = "m")]
    Marker { d: String },
    /// A channel opened: `session`, `direct-tcpip` or `forwarded-tcpip`.
    #[serde(rename = "open")]
    Open {
        kind: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u32>,
    },
    #[serde(rename = "pty")]
    Pty { term: String, cols: u32, rows: u32 },
    #[serde(rename = "env")]
    Env { name: String, value: String },
    #[serde(rename = "shell")]
    Shell {},
    #[serde(rename = "exec")]
    Exec { command: String },
    #[serde(rename = "subsystem")]
    Subsystem { name: String },
    #[serde(rename = "signal")]
    Signal { name: String },
    #[serde(rename = "exit")]
    Exit {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<String>,
        #[serde(default, skip_serializing_if = "is_false")]
        core: bool,
    },
    #[serde(rename = "eof")]
    Eof { dir: Flow },
    /// The channel closed; byte totals each way (`in`: client → node).
    #[serde(rename = "close")]
    Close { bytes_in: u64, bytes_out: u64 },
    #[serde(rename = "refused")]
    Refused { request: String, reason: String },
    #[serde(rename = "file")]
    File(FileOp),
    /// A port forward's destination and byte totals, written when it closes.
    #[serde(rename = "fwd")]
    Fwd {
        host: String,
        port: u32,
        bytes_in: u64,
        bytes_out: u64,
    },
    /// A kind this version does not know (written by a newer recorder).
    #[serde(other)]
    Unknown,
}

/// One event line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Seconds since the session started.
    pub t: f64,
    pub ch: u32,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    /// The line as stored, with its newline.
    pub fn to_line(&self) -> Vec<u8> {
        // Serialising plain strings and numbers cannot fail.
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }
}

/// Rounds a duration to microseconds, as stored in `t`.
pub fn secs(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e6
}

/// A chunk read back.
#[derive(Debug, Clone)]
pub struct ParsedChunk {
    pub header: ChunkHeader,
    pub events: Vec<Event>,
    /// Lines that are not valid events: `(line number from 1, error)`.
    pub bad_lines: Vec<(usize, String)>,
    /// The bytes did not end with a newline: the last line was cut.
    pub torn_tail: bool,
}

/// Parses a chunk. Fails only when the header is unreadable; bad event lines
/// are reported in [`ParsedChunk::bad_lines`] so a reader can show the rest.
pub fn parse_chunk(bytes: &[u8]) -> Result<ParsedChunk, String> {
    let torn_tail = !bytes.is_empty() && !bytes.ends_with(b"\n");
    let mut lines = bytes.split(|b| *b == b'\n');
    let first = lines.next().unwrap_or_default();
    let header: ChunkHeader =
        serde_json::from_slice(first).map_err(|e| format!("the chunk header is not readable: {e}"))?;
    let mut events = Vec::new();
    let mut bad_lines = Vec::new();
    for (i, line) in lines.enumerate() {
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Event>(line) {
            Ok(e) => events.push(e),
            Err(e) => bad_lines.push((i + 2, e.to_string())),
        }
    }
    Ok(ParsedChunk {
        header,
        events,
        bad_lines,
        torn_tail,
    })
}

/// A piece of a byte stream: text, or bytes that are not UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Bytes(Vec<u8>),
}

/// Splits a byte stream into UTF-8 text and non-UTF-8 bytes without losing
/// any: a character cut between two SSH packets is carried to the next push
/// instead of being stored as two broken halves.
#[derive(Debug, Default, Clone)]
pub struct Utf8Carry {
    tail: Vec<u8>,
}

/// A [`Piece`] borrowed from the bytes pushed, see [`Utf8Carry::push_each`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceRef<'a> {
    Text(&'a str),
    Bytes(&'a [u8]),
}

impl Piece {
    pub fn as_ref(&self) -> PieceRef<'_> {
        match self {
            Piece::Text(t) => PieceRef::Text(t),
            Piece::Bytes(b) => PieceRef::Bytes(b),
        }
    }
}

impl PieceRef<'_> {
    pub fn to_owned(self) -> Piece {
        match self {
            PieceRef::Text(t) => Piece::Text(t.to_owned()),
            PieceRef::Bytes(b) => Piece::Bytes(b.to_vec()),
        }
    }
}

impl Utf8Carry {
    /// The pieces complete so far; an incomplete character at the end waits.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Piece> {
        let mut out = Vec::new();
        self.push_each(bytes, |p| out.push(p.to_owned()));
        out
    }

    /// [`Utf8Carry::push`] without copying: `f` gets each piece borrowed,
    /// text and bytes alternating, so the caller copies it once, where it goes.
    pub fn push_each(&mut self, bytes: &[u8], mut f: impl FnMut(PieceRef<'_>)) {
        let joined;
        let whole: &[u8] = if self.tail.is_empty() {
            bytes
        } else {
            let mut t = std::mem::take(&mut self.tail);
            t.extend_from_slice(bytes);
            joined = t;
            &joined
        };
        // What `whole` splits into, in order; adjacent invalid bytes are one piece.
        let mut pieces: Vec<PieceRef<'_>> = Vec::new();
        let mut at = 0;
        let mut invalid = 0;
        let mut end = whole.len();
        loop {
            match std::str::from_utf8(&whole[at..]) {
                Ok(text) => {
                    if !text.is_empty() {
                        pieces.push(PieceRef::Text(text));
                    }
                    break;
                }
                Err(e) => {
                    let valid = at + e.valid_up_to();
                    if valid > at {
                        // from_utf8 said these bytes are valid.
                        pieces.push(PieceRef::Text(
                            std::str::from_utf8(&whole[at..valid]).unwrap_or_default(),
                        ));
                    }
                    let Some(n) = e.error_len() else {
                        end = valid;
                        break;
                    };
                    let bad_from = match pieces.last() {
                        Some(PieceRef::Bytes(b)) => {
                            let from = valid - b.len();
                            pieces.pop();
                            from
                        }
                        _ => valid,
                    };
                    pieces.push(PieceRef::Bytes(&whole[bad_from..valid + n]));
                    at = valid + n;
                    invalid += n;
                    if pieces.len() > BINARY_PIECES && invalid * BINARY_SHARE > at {
                        // Binary output (a `cat` of an executable, random bytes): text
                        // and invalid bytes alternate every few bytes, and one event per
                        // piece would cost a line each (the stored chunk grew 20-fold).
                        // Kept whole as bytes instead: the same bytes read back.
                        f(PieceRef::Bytes(whole));
                        return;
                    }
                }
            }
        }
        for piece in pieces {
            f(piece);
        }
        self.tail = whole[end..].to_vec();
    }

    /// At end of stream: a character that never completed, as bytes.
    pub fn finish(&mut self) -> Option<Piece> {
        if self.tail.is_empty() {
            None
        } else {
            Some(Piece::Bytes(std::mem::take(&mut self.tail)))
        }
    }
}

/// A push that splits into more pieces than this, with more than one byte
/// in [`BINARY_SHARE`] not UTF-8, is stored whole as bytes.
const BINARY_PIECES: usize = 8;
const BINARY_SHARE: usize = 4;

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Whether a byte of `x` is below `n` (n <= 128), eight bytes at a time.
fn has_less(x: u64, n: u8) -> bool {
    x.wrapping_sub(LO * n as u64) & !x & HI != 0
}

/// Whether a byte of `x` is `b`.
fn has_byte(x: u64, b: u8) -> bool {
    let y = x ^ (LO * b as u64);
    y.wrapping_sub(LO) & !y & HI != 0
}

fn word(s: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&s[i..i + 8]);
    u64::from_le_bytes(w)
}

/// A byte that costs a `\u00XX` escape in JSON (terminal controls that
/// have a short escape or are common in output do not count).
fn costly(b: u8) -> bool {
    (b < 0x20 && !matches!(b, b'\n' | b'\r' | b'\t' | 0x1b)) || b == 0x7f
}

/// Whether more than one character in eight would need a `\u00XX` escape.
fn escape_heavy(t: &str) -> bool {
    let s = t.as_bytes();
    let limit = s.len() / 8;
    let mut escaped = 0;
    let mut i = 0;
    while i + 8 <= s.len() {
        let x = word(s, i);
        if has_less(x, 0x20) || has_byte(x, 0x7f) {
            escaped += s[i..i + 8].iter().filter(|b| costly(**b)).count();
            if escaped > limit {
                return true;
            }
        }
        i += 8;
    }
    escaped += s[i..].iter().filter(|b| costly(**b)).count();
    escaped > limit
}

/// Whether the first 256 bytes of `t` are escape-heavy.
fn starts_heavy(t: &str) -> bool {
    let head = &t.as_bytes()[..t.len().min(256)];
    head.iter().filter(|b| costly(**b)).count() * 8 > head.len()
}

/// Whether JSON escapes `b` in a string.
fn json_escaped(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// A byte [`write_json_escaped`] has to look at: one JSON escapes, or DEL
/// (which counts as [`costly`]).
fn special(b: u8) -> bool {
    json_escaped(b) || b == 0x7f
}

/// Whether a byte of `x` is [`special`], eight bytes at a time.
fn has_special(x: u64) -> bool {
    has_less(x, 0x20) || has_byte(x, b'"') || has_byte(x, b'\\') || has_byte(x, 0x7f)
}

/// Writes `s` as a JSON string, quotes included, exactly as serde_json
/// writes it (short escapes where JSON has them, else `\u00xx`), skipping
/// plain bytes sixteen at a time ([`next_special`]).
#[cfg(test)]
fn write_json_str(out: &mut Vec<u8>, s: &str) {
    write_json_escaped(out, s, usize::MAX);
}

/// [`write_json_str`], unless more than `limit` bytes are [`costly`]: then
/// it writes nothing and returns false. One pass over `s` both decides and
/// writes (the decision is [`escape_heavy`]'s with `limit = len / 8`).
fn write_json_escaped(out: &mut Vec<u8>, s: &str, limit: usize) -> bool {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let s = s.as_bytes();
    let mark = out.len();
    out.reserve(s.len() + 2);
    out.push(b'"');
    let mut costly_seen = 0;
    let mut start = 0;
    let mut i = 0;
    loop {
        i = next_special(s, i);
        let Some(&b) = s.get(i) else { break };
        if costly(b) {
            costly_seen += 1;
            if costly_seen > limit {
                out.truncate(mark);
                return false;
            }
        }
        if json_escaped(b) {
            out.extend_from_slice(&s[start..i]);
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                0x08 => out.extend_from_slice(b"\\b"),
                0x0c => out.extend_from_slice(b"\\f"),
                _ => out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]),
            }
            start = i + 1;
        }
        i += 1;
    }
    out.extend_from_slice(&s[start..]);
    out.push(b'"');
    true
}

/// The first index from `i` on whose byte is below 0x20, `"`, `\\` or DEL
/// (`s.len()` if none): sixteen bytes per step with SSE2, which every
/// x86_64 CPU has.
#[cfg(target_arch = "x86_64")]
fn next_special(s: &[u8], mut i: usize) -> usize {
    use std::arch::x86_64::*;
    // SAFETY: SSE2 is part of the x86_64 baseline; every load reads the 16
    // bytes s[i..i + 16], which the loop condition keeps in bounds.
    unsafe {
        let ctl = _mm_set1_epi8(0x1f);
        let quote = _mm_set1_epi8(b'"' as i8);
        let backslash = _mm_set1_epi8(b'\\' as i8);
        let del = _mm_set1_epi8(0x7f);
        while i + 16 <= s.len() {
            let x = _mm_loadu_si128(s.as_ptr().add(i) as *const __m128i);
            // max(x, 0x1f) == 0x1f exactly when x <= 0x1f, unsigned.
            let m = _mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(_mm_max_epu8(x, ctl), ctl), _mm_cmpeq_epi8(x, quote)),
                _mm_or_si128(_mm_cmpeq_epi8(x, backslash), _mm_cmpeq_epi8(x, del)),
            );
            let bits = _mm_movemask_epi8(m) as u32;
            if bits != 0 {
                return i + bits.trailing_zeros() as usize;
            }
            i += 16;
        }
    }
    next_special_scalar(s, i)
}

#[cfg(not(target_arch = "x86_64"))]
fn next_special(s: &[u8], i: usize) -> usize {
    next_special_scalar(s, i)
}

/// [`next_special`] eight bytes at a time, and for the tail.
fn next_special_scalar(s: &[u8], mut i: usize) -> usize {
    while i + 8 <= s.len() && !has_special(word(s, i)) {
        i += 8;
    }
    while i < s.len() && !special(s[i]) {
        i += 1;
    }
    i
}

/// The `(d, b64)` pair of a piece.
pub fn piece_fields(piece: Piece) -> (Option<String>, Option<String>) {
    use base64::Engine;
    match piece {
        // Text that is mostly control characters (NULs, binary output that
        // happens to be UTF-8) costs six bytes per byte as JSON escapes and
        // four thirds as base64: store it as base64. Both read back the same.
        Piece::Text(t) if escape_heavy(&t) => (None, Some(base64::engine::general_purpose::STANDARD.encode(t))),
        Piece::Text(t) => (Some(t), None),
        Piece::Bytes(b) => (None, Some(base64::engine::general_purpose::STANDARD.encode(b))),
    }
}

/// Writes the stored line of an `o` (or, with `input`, `i`) event for
/// `piece` into `out`: byte for byte what [`Event::to_line`] writes for the
/// event [`piece_fields`] makes of it, without building its strings first
/// (the recorder's hot path for session output).
pub fn write_data_line(out: &mut Vec<u8>, t: f64, ch: u32, input: bool, err: bool, piece: &Piece) {
    use std::io::Write;
    out.extend_from_slice(b"{\"t\":");
    // Writing into a Vec cannot fail; the number is formatted as serde_json does it.
    let _ = serde_json::to_writer(&mut *out, &t);
    let _ = write!(out, ",\"ch\":{ch},\"e\":\"{}\"", if input { "i" } else { "o" });
    match piece {
        // Output that starts escape-heavy (NULs, binary) is counted first,
        // without writing escapes only to drop them; other text is decided
        // while it is written. Both decide as `escape_heavy` does.
        Piece::Text(s) if starts_heavy(s) && escape_heavy(s) => write_b64(out, s.as_bytes()),
        Piece::Text(s) => {
            out.extend_from_slice(b",\"d\":");
            if !write_json_escaped(out, s, s.len() / 8) {
                out.truncate(out.len() - b",\"d\":".len());
                write_b64(out, s.as_bytes());
            }
        }
        Piece::Bytes(b) => write_b64(out, b),
    }
    if err && !input {
        out.extend_from_slice(b",\"err\":true");
    }
    out.extend_from_slice(b"}\n");
}

fn write_b64(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(b",\"b64\":\"");
    // The same text as the `base64` crate's STANDARD engine (padded), with SIMD.
    base64_simd::STANDARD.encode_append(bytes, out);
    out.push(b'"');
}

/// The bytes an `o`/`i` event stands for (text and `b64` joined back).
pub fn event_bytes(d: &Option<String>, b64: &Option<String>) -> Vec<u8> {
    use base64::Engine;
    let mut out = Vec::new();
    if let Some(d) = d {
        out.extend_from_slice(d.as_bytes());
    }
    if let Some(b) = b64 {
        out.extend(base64::engine::general_purpose::STANDARD.decode(b).unwrap_or_default());
    }
    out
}

#[cfg(test)]
#[path = "format_tests.rs"]
mod tests;
