//! Full-text search over a recorded session: over what was on the screen, and over what the
//! user typed.
//!
//! Searching the raw output bytes does not work for terminals: a command typed with a typo and
//! corrected with backspace is `etcdctl dle\b\x1b[K\b\x1b[K\b\x1b[Kdel foo` in the stream, and
//! text drawn with cursor positioning is scattered across escape sequences. So output events
//! are fed through a virtual terminal (the `avt` crate, the one asciinema itself uses) of the
//! recording's size, honouring `r` resizes, and the search runs over the rendered lines.
//!
//! # How screen lines are collected
//!
//! Output events are grouped into batches spanning at most [`BATCH_WINDOW`] of recorded time.
//! After each batch the visible screen is read as logical lines (soft-wrapped rows joined,
//! trailing blanks trimmed) and compared with the previous snapshot:
//!
//! - a line whose text was already on screen (at the same row, or anywhere — it scrolled) is
//!   the same line and not recorded again;
//! - a line that *extends* the text previously on the same row (typing) grows that line's
//!   record, so a typed command is one record, not one per keystroke;
//! - a line that is a *prefix* of the previous text on its row (backspace) is already covered
//!   by the longer record and adds nothing; typing on from there starts a new record, so a
//!   corrected command and its typo are two records;
//! - any other text is a new record, stamped with the batch's time.
//!
//! Lines that scrolled off the top (or were pushed out by a primary-screen clear) within a batch
//! are caught as the terminal evicts them and recorded unless they were on screen at the
//! previous snapshot. Records are matched against the query as they are made or grown; a hit
//! carries the time its line first matched, the line's final text, and the neighbouring screen
//! lines at that moment as context.
//!
//! De-duplication is by continuous presence, not global: text that is cleared and drawn again
//! later is a second hit at the later time, while a line that stays on screen through many
//! redraws is one hit.
//!
//! # Limits
//!
//! - Text that was drawn and overwritten within one batch (under [`BATCH_WINDOW`]) without
//!   scrolling off is never seen: fast spinners and progress bars, or a typo erased within
//!   100 ms. Lines scrolled away in the *alternate* screen (pagers, editors) within one batch
//!   are not seen either, since avt evicts only primary-screen lines.
//! - Each line is matched on its own: a query cannot span two lines, and a line wider than the
//!   terminal is matched as one logical line only where the terminal soft-wrapped it.
//! - Lines that change in place (progress bars, `top`) make one record per distinct text seen.
//! - Times are those of the batch's last event, so up to [`BATCH_WINDOW`] after the first
//!   moment the text was visible.
//! - Input lines are rebuilt with a small line-editor model (backspace/DEL, Ctrl-U/-W/-K/-A/-E,
//!   arrow keys, Home/End/Delete, CR/LF ends a line, Ctrl-C abandons it but keeps it). History
//!   recall, tab completion, Alt-key word motions and full-screen programs are not modelled:
//!   what they produced is found by the screen search, not the input search.

use std::collections::HashMap;

use avt::observer::Transcript;
use avt::{ScreenKind, Terminal};

use crate::cast_parse::{self, Cast, CastError, EventKind};

/// Output events closer together than this (seconds of recorded time) are rendered before the
/// screen is read once: a program draws one frame in many writes, and reading mid-frame would
/// record half-drawn lines.
pub const BATCH_WINDOW: f64 = 0.1;

/// How to match.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SearchOptions {
    pub case_insensitive: bool,
    /// How many lines before and after a hit to return with it.
    pub context_lines: usize,
}

/// Where a hit was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// On the rendered screen.
    Screen,
    /// In what the user typed.
    Input,
}

/// One line that contains the query.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// Seconds into the recording: when the matching text was first on screen, or when the
    /// typed line was submitted (its last keystroke if it never was).
    pub time: f64,
    pub source: Source,
    pub line: String,
    /// Up to `context_lines` lines before, then up to `context_lines` after (blank ones left
    /// out); screen neighbours at the time of the hit, or neighbouring typed lines.
    pub context: Vec<String>,
}

/// Why a search could not run.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The recording did not parse: reported rather than answered with "no hits", so a broken
    /// file is never mistaken for a clean session.
    #[error("cannot read the recording: {0}")]
    Cast(#[from] CastError),
}

/// Searches asciicast v2 text for `query`. Hits are in time order; an empty query matches
/// nothing.
pub fn search(cast_text: &str, query: &str, opts: SearchOptions) -> Result<Vec<Hit>, SearchError> {
    let cast = cast_parse::parse(cast_text)?;
    Ok(search_cast(&cast, query, opts))
}

/// [`search`] over an already parsed recording.
pub fn search_cast(cast: &Cast, query: &str, opts: SearchOptions) -> Vec<Hit> {
    let matcher = Matcher::new(query, opts.case_insensitive);
    // The header guarantees a positive size; `max(1)` keeps a hand-built `Cast` safe too.
    let mut term = Terminal::new(cast.header.width.max(1), cast.header.height.max(1))
        .expect("a terminal of at least 1x1 is always valid");
    let mut transcript = Transcript::new();
    let mut screen = ScreenIndex::new(&matcher, opts.context_lines);
    let mut input = InputLines::default();
    let mut evicted = Vec::new();
    // (time of the batch's first event, time of its last).
    let mut batch: Option<(f64, f64)> = None;

    for ev in &cast.events {
        match ev.kind {
            EventKind::Output | EventKind::Resize => {
                if let Some((start, last)) = batch
                    && ev.time - start > BATCH_WINDOW
                {
                    screen.observe(last, &term, std::mem::take(&mut evicted));
                    batch = None;
                }
                if ev.kind == EventKind::Output {
                    evicted.extend(term.feed_with(ev.data.as_str(), &mut transcript));
                } else if let Some((cols, rows)) = cast_parse::parse_resize(&ev.data) {
                    evicted.extend(term.resize_with(cols, rows, &mut transcript));
                }
                batch = Some((batch.map_or(ev.time, |b| b.0), ev.time));
            }
            EventKind::Input => input.feed(ev.time, &ev.data),
            EventKind::Marker | EventKind::Other(_) => {}
        }
    }
    if let Some((_, last)) = batch {
        screen.observe(last, &term, evicted);
    }

    let mut hits = screen.finish();
    hits.extend(input.finish().hits(&matcher, opts.context_lines));
    // Stable: at equal times, screen hits stay before input hits.
    hits.sort_by(|a, b| a.time.total_cmp(&b.time));
    hits
}

struct Matcher {
    needle: String,
    case_insensitive: bool,
}

impl Matcher {
    fn new(query: &str, case_insensitive: bool) -> Self {
        let needle = if case_insensitive {
            query.to_lowercase()
        } else {
            query.to_owned()
        };
        Self {
            needle,
            case_insensitive,
        }
    }

    fn matches(&self, line: &str) -> bool {
        if self.needle.is_empty() {
            return false;
        }
        if self.case_insensitive {
            line.to_lowercase().contains(&self.needle)
        } else {
            line.contains(&self.needle)
        }
    }
}

/// One logical screen line at a snapshot.
#[derive(Debug, Clone)]
struct Row {
    /// The first physical row it occupies.
    start: usize,
    text: String,
    /// `None` for a blank line, or for text that is a prefix of an earlier record (left after
    /// backspacing), which already makes it searchable.
    record: Option<Record>,
}

/// A line of text that is its own record. Records live only in the screen rows that show
/// them: once a line leaves the screen its text is final, so memory stays bounded by the
/// screen size plus the hits, however long the recording.
#[derive(Debug, Clone, Copy)]
struct Record {
    /// Index of its hit in `ScreenIndex::hits`, once it matched.
    hit: Option<usize>,
}

/// What became of a screen line whose text changed since the previous snapshot.
enum Change {
    /// It extends the text of the record on the same row: typing.
    Grow(Record),
    /// It is a prefix of the text that was on its row: backspacing. Already searchable.
    Covered,
    /// Anything else.
    New,
}

/// The screen side of the search: records of every line seen, as described in the module doc.
struct ScreenIndex<'m> {
    matcher: &'m Matcher,
    context_lines: usize,
    /// The active screen's lines at the previous snapshot.
    prev: Vec<Row>,
    /// While the alternate screen is active: the primary screen's lines when it was left, so
    /// returning from a full-screen program does not report the shell's lines again.
    saved_primary: Option<Vec<Row>>,
    alternate: bool,
    hits: Vec<Hit>,
}

impl<'m> ScreenIndex<'m> {
    fn new(matcher: &'m Matcher, context_lines: usize) -> Self {
        Self {
            matcher,
            context_lines,
            prev: Vec::new(),
            saved_primary: None,
            alternate: false,
            hits: Vec::new(),
        }
    }

    /// Takes a snapshot after a batch. `evicted` are the primary-screen lines that left the
    /// terminal during the batch.
    fn observe(&mut self, time: f64, term: &Terminal, evicted: Vec<String>) {
        self.record_evicted(time, evicted);

        let alternate = term.active_screen_kind() == ScreenKind::Alternate;
        if alternate != self.alternate {
            if alternate {
                // A fresh alternate screen: nothing of an earlier one is still on it.
                self.saved_primary = Some(std::mem::take(&mut self.prev));
            } else {
                self.prev = self.saved_primary.take().unwrap_or_default();
            }
            self.alternate = alternate;
        }

        let current = logical_rows(term);
        let mut rows: Vec<Option<Row>> = vec![None; current.len()];
        let mut consumed = vec![false; self.prev.len()];
        let prev_at: HashMap<usize, usize> = self.prev.iter().enumerate().map(|(i, r)| (r.start, i)).collect();
        let mut prev_by_text: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, r) in self.prev.iter().enumerate().rev() {
            if !r.text.is_empty() {
                prev_by_text.entry(r.text.as_str()).or_default().push(i);
            }
        }

        // Pass 1: unchanged or moved lines keep their record. Done for all rows before any
        // growth so that a line scrolling up is not mistaken for the row below it growing.
        for (slot, (start, text)) in rows.iter_mut().zip(&current) {
            if text.is_empty() {
                *slot = Some(Row {
                    start: *start,
                    text: String::new(),
                    record: None,
                });
                continue;
            }
            let same_row = prev_at
                .get(start)
                .copied()
                .filter(|&i| !consumed[i] && self.prev[i].text == *text);
            let found = same_row.or_else(|| {
                let candidates = prev_by_text.get_mut(text.as_str())?;
                while let Some(i) = candidates.pop() {
                    if !consumed[i] {
                        return Some(i);
                    }
                }
                None
            });
            if let Some(i) = found {
                consumed[i] = true;
                *slot = Some(Row {
                    start: *start,
                    text: text.clone(),
                    record: self.prev[i].record,
                });
            }
        }

        // Pass 2: changed lines grow, shrink or start a record.
        let mut new_rows = Vec::with_capacity(current.len());
        for (index, (slot, (start, text))) in rows.into_iter().zip(&current).enumerate() {
            if let Some(row) = slot {
                new_rows.push(row);
                continue;
            }
            let before = prev_at
                .get(start)
                .copied()
                .filter(|&i| !consumed[i] && !self.prev[i].text.is_empty())
                .inspect(|&i| consumed[i] = true);
            let change = match before.map(|i| &self.prev[i]) {
                Some(p) if text.starts_with(p.text.as_str()) => p.record.map_or(Change::New, Change::Grow),
                Some(p) if p.text.starts_with(text.as_str()) => Change::Covered,
                _ => Change::New,
            };
            let context = |n| context_around(&current, index, n);
            let record = match change {
                Change::Grow(Record { hit: Some(h) }) => {
                    // Already a hit: it now shows the longer text, and keeps its time.
                    self.hits[h].line = text.clone();
                    Some(Record { hit: Some(h) })
                }
                Change::Grow(Record { hit: None }) | Change::New => Some(self.new_record(time, text, context)),
                Change::Covered => None,
            };
            new_rows.push(Row {
                start: *start,
                text: text.clone(),
                record,
            });
        }
        self.prev = new_rows;
    }

    fn record_evicted(&mut self, time: f64, evicted: Vec<String>) {
        if evicted.is_empty() {
            return;
        }
        // Evicted lines come from the primary screen, whichever screen was shown.
        let primary_prev = if self.alternate {
            self.saved_primary.as_deref().unwrap_or(&[])
        } else {
            &self.prev
        };
        let mut on_screen: HashMap<&str, usize> = HashMap::new();
        for r in primary_prev {
            *on_screen.entry(r.text.as_str()).or_default() += 1;
        }
        let mut fresh = Vec::new();
        for (i, line) in evicted.iter().enumerate() {
            if line.is_empty() {
                continue;
            }
            match on_screen.get_mut(line.as_str()) {
                Some(n) if *n > 0 => *n -= 1,
                _ => fresh.push(i),
            }
        }
        let lines: Vec<(usize, String)> = evicted.into_iter().enumerate().collect();
        for i in fresh {
            self.new_record(time, &lines[i].1, |n| context_around(&lines, i, n));
        }
    }

    /// A record for `text` (new, or grown from one that had not matched yet): a hit, stamped
    /// `time`, if it matches.
    fn new_record(&mut self, time: f64, text: &str, context: impl FnOnce(usize) -> Vec<String>) -> Record {
        if !self.matcher.matches(text) {
            return Record { hit: None };
        }
        self.hits.push(Hit {
            time,
            source: Source::Screen,
            line: text.to_owned(),
            context: context(self.context_lines),
        });
        Record {
            hit: Some(self.hits.len() - 1),
        }
    }

    fn finish(self) -> Vec<Hit> {
        self.hits
    }
}

/// The active screen as logical lines: soft-wrapped rows joined, trailing blanks trimmed, each
/// with the physical row it starts on.
fn logical_rows(term: &Terminal) -> Vec<(usize, String)> {
    let mut rows = Vec::new();
    let mut text = String::new();
    let mut start = None;
    for (i, line) in term.screen().visible_lines().enumerate() {
        start.get_or_insert(i);
        text.extend(line.chars());
        if !line.is_wrapped() {
            rows.push((start.take().unwrap_or(i), text.trim_end().to_owned()));
            text.clear();
        }
    }
    if let Some(s) = start {
        rows.push((s, text.trim_end().to_owned()));
    }
    rows
}

/// Up to `n` non-blank lines before `index` and `n` after it, in order.
fn context_around<T>(lines: &[(T, String)], index: usize, n: usize) -> Vec<String> {
    let before = lines[..index]
        .iter()
        .rev()
        .filter(|l| !l.1.is_empty())
        .take(n)
        .collect::<Vec<_>>();
    let after = lines[index + 1..].iter().filter(|l| !l.1.is_empty()).take(n);
    before.into_iter().rev().chain(after).map(|l| l.1.clone()).collect()
}

/// Rebuilds typed lines from `i` events with a small line-editor model (see the module doc).
#[derive(Default)]
struct InputLines {
    line: Vec<char>,
    cursor: usize,
    esc: InputEsc,
    last_key: f64,
    done: Vec<(f64, String)>,
}

#[derive(Default)]
enum InputEsc {
    #[default]
    None,
    /// After ESC.
    Esc,
    /// After `ESC [`, with the parameters so far.
    Csi(String),
    /// After `ESC O` (cursor keys in application mode).
    Ss3,
}

impl InputLines {
    fn feed(&mut self, time: f64, data: &str) {
        self.last_key = time;
        for c in data.chars() {
            match std::mem::take(&mut self.esc) {
                InputEsc::Esc => match c {
                    '[' => self.esc = InputEsc::Csi(String::new()),
                    'O' => self.esc = InputEsc::Ss3,
                    // Alt+key: a readline command we do not model.
                    _ => {}
                },
                InputEsc::Csi(mut params) => {
                    if ('\x20'..='\x3f').contains(&c) {
                        // Bounded: a key sequence is short; garbage must not grow this.
                        if params.len() < 16 {
                            params.push(c);
                        }
                        self.esc = InputEsc::Csi(params);
                    } else {
                        self.csi_key(&params, c);
                    }
                }
                InputEsc::Ss3 => self.csi_key("", c),
                InputEsc::None => self.key(time, c),
            }
        }
    }

    fn key(&mut self, time: f64, c: char) {
        match c {
            '\r' | '\n' | '\x03' => self.end_line(time),
            '\x08' | '\x7f' => {
                if self.cursor > 0 {
                    self.cursor -= 1;
                    self.line.remove(self.cursor);
                }
            }
            // Ctrl-D deletes under the cursor (on an empty line it is EOF: nothing to keep).
            '\x04' => self.delete_forward(),
            '\x15' => {
                self.line.drain(..self.cursor);
                self.cursor = 0;
            }
            '\x0b' => self.line.truncate(self.cursor),
            '\x17' => {
                let mut start = self.cursor;
                while start > 0 && self.line[start - 1] == ' ' {
                    start -= 1;
                }
                while start > 0 && self.line[start - 1] != ' ' {
                    start -= 1;
                }
                self.line.drain(start..self.cursor);
                self.cursor = start;
            }
            '\x01' => self.cursor = 0,
            '\x05' => self.cursor = self.line.len(),
            '\x02' => self.cursor = self.cursor.saturating_sub(1),
            '\x06' => self.cursor = (self.cursor + 1).min(self.line.len()),
            '\x1b' => self.esc = InputEsc::Esc,
            // Tab (completion) and other controls insert nothing we can know.
            c if c.is_control() => {}
            c => {
                self.line.insert(self.cursor, c);
                self.cursor += 1;
            }
        }
    }

    fn csi_key(&mut self, params: &str, fin: char) {
        match (params, fin) {
            (_, 'C') => self.cursor = (self.cursor + 1).min(self.line.len()),
            (_, 'D') => self.cursor = self.cursor.saturating_sub(1),
            (_, 'H') | ("1" | "7", '~') => self.cursor = 0,
            (_, 'F') | ("4" | "8", '~') => self.cursor = self.line.len(),
            ("3", '~') => self.delete_forward(),
            // Up/down (history), bracketed paste markers, function keys.
            _ => {}
        }
    }

    fn delete_forward(&mut self) {
        if self.cursor < self.line.len() {
            self.line.remove(self.cursor);
        }
    }

    fn end_line(&mut self, time: f64) {
        let text: String = self.line.drain(..).collect();
        self.cursor = 0;
        if !text.trim().is_empty() {
            self.done.push((time, text));
        }
    }

    /// All typed lines, the unfinished last one stamped with its last keystroke.
    fn finish(mut self) -> TypedLines {
        let last = self.last_key;
        self.end_line(last);
        TypedLines(self.done)
    }
}

struct TypedLines(Vec<(f64, String)>);

impl TypedLines {
    fn hits(&self, matcher: &Matcher, context_lines: usize) -> Vec<Hit> {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, (_, line))| matcher.matches(line))
            .map(|(i, (time, line))| Hit {
                time: *time,
                source: Source::Input,
                line: line.clone(),
                context: context_around(&self.0, i, context_lines),
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "search_tests.rs"]
mod tests;
