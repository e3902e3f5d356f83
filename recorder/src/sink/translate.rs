//! The translator: turns one session's tap records into the events of its
//! chunk lines. Pure: no disk, no clock (an event's time is its record's,
//! the end of a session's is passed in), no async; what it makes goes to
//! the chunk writer as [`Out`] values.
//!
//! It loses nothing it is meant to keep: a UTF-8 character cut between two
//! SSH packets is carried to the next one (or kept as bytes if it never
//! completes), consecutive data of one stream within a batch becomes one
//! event of up to [`MERGE_BYTES`], and a closing channel (or the session's
//! end) gives back what its carries and transfer parsers still hold.
//! Forwarded connections keep only their destination and byte counts;
//! keystrokes only when the session records input; sftp, scp and rsync
//! streams only their file operations.

use std::collections::BTreeMap;

use crate::format::{Event, EventKind, Flow, Piece, PieceRef, Utf8Carry};
use crate::manifest::{self, ChannelSummary, Notes, Termination, Watcher};
use crate::sftp::{self, ScpParser, SftpParser, Transfer};
use crate::tap::{ChannelEvent, ChannelKind, Direction, Record, SessionNote};

/// Consecutive data of one channel and stream is merged into one event up
/// to this many bytes: one line instead of one per SSH packet. It keeps the
/// first packet's time (the others came within the same batch from the queue).
pub(super) const MERGE_BYTES: usize = 64 * 1024;

/// What the translator hands to the chunk writer: an event, or a piece of
/// `o`/`i` data, written straight as its line ([`crate::format::write_data_line`]).
#[derive(Debug)]
pub(super) enum Out {
    Event(Event),
    Data {
        t: f64,
        ch: u32,
        input: bool,
        err: bool,
        piece: Piece,
    },
}

impl Out {
    pub(super) fn t(&self) -> f64 {
        match self {
            Out::Event(e) => e.t,
            Out::Data { t, .. } => *t,
        }
    }
}

/// Turns tap records into stored events for one session.
pub(super) struct Translator {
    record_input: bool,
    channels: BTreeMap<u32, Chan>,
    notes: Notes,
}

/// One channel's recording state.
struct Chan {
    forward: Option<(String, u32)>,
    transfer: Option<TransferState>,
    input: Utf8Carry,
    output: Utf8Carry,
    stderr: Utf8Carry,
    summary: ChannelSummary,
}

enum TransferState {
    Sftp(SftpParser),
    Scp(ScpParser, Direction),
    Rsync,
}

/// Where one record's output goes: its time and channel, and the list.
struct Emit<'a> {
    out: &'a mut Vec<Out>,
    t: f64,
    ch: u32,
}

impl Translator {
    /// `record_input`: whether keystrokes are kept (the session's policy).
    pub(super) fn new(record_input: bool) -> Self {
        Translator {
            record_input,
            channels: BTreeMap::new(),
            notes: Notes::default(),
        }
    }

    /// Every channel seen so far, as the manifest and the index list them.
    pub(super) fn summaries(&self) -> Vec<ChannelSummary> {
        self.channels.values().map(|c| c.summary.clone()).collect()
    }

    /// Who watched and who ended the session, as the manifest lists them.
    pub(super) fn notes(&self) -> Notes {
        self.notes.clone()
    }

    /// A session note: a marker line, and its entry for the manifest.
    fn note(&mut self, note: SessionNote, em: &mut Emit<'_>) {
        let text = match note {
            SessionNote::Watching { user, door, at } => {
                let text = format!("{user} started watching ({door})");
                self.notes.watchers.push(Watcher {
                    user,
                    door,
                    joined: manifest::rfc3339(at),
                    left: None,
                });
                text
            }
            SessionNote::StoppedWatching { user, door, at } => {
                let open = self
                    .notes
                    .watchers
                    .iter_mut()
                    .rev()
                    .find(|w| w.user == user && w.door == door && w.left.is_none());
                if let Some(w) = open {
                    w.left = Some(manifest::rfc3339(at));
                }
                format!("{user} stopped watching ({door})")
            }
            SessionNote::Terminated { by, reason, at } => {
                let text = format!("session terminated by {by}: {reason}");
                self.notes.terminated.get_or_insert(Termination {
                    by,
                    reason,
                    at: manifest::rfc3339(at),
                });
                text
            }
        };
        em.event(EventKind::Marker { d: text });
    }

    fn chan(&mut self, ch: u32) -> &mut Chan {
        self.channels.entry(ch).or_insert_with(|| Chan {
            forward: None,
            transfer: None,
            input: Utf8Carry::default(),
            output: Utf8Carry::default(),
            stderr: Utf8Carry::default(),
            summary: ChannelSummary {
                index: ch,
                kind: "session".into(),
                ..Default::default()
            },
        })
    }

    /// Adds what `r` stands for to `out`: data merges into the last entry
    /// when that is the same channel's same stream (see [`MERGE_BYTES`]).
    pub(super) fn translate(&mut self, r: Record, out: &mut Vec<Out>) {
        let record_input = self.record_input;
        let mut em = Emit {
            out,
            t: crate::format::secs(r.at),
            ch: r.channel,
        };
        let event = match r.event {
            ChannelEvent::Note(note) => return self.note(note, &mut em),
            other => other,
        };
        let c = self.chan(r.channel);
        match event {
            ChannelEvent::Open(kind) => c.open(kind, &mut em),
            ChannelEvent::Pty { term, cols, rows } => {
                c.summary.pty = Some(format!("{term} {cols}x{rows}"));
                em.event(EventKind::Pty { term, cols, rows });
            }
            ChannelEvent::Resize { cols, rows } => em.event(EventKind::Resize {
                d: format!("{cols}x{rows}"),
            }),
            ChannelEvent::Env { name, value } => em.event(EventKind::Env { name, value }),
            ChannelEvent::Shell => em.event(EventKind::Shell {}),
            ChannelEvent::Exec { command } => c.exec(command, &mut em),
            ChannelEvent::Subsystem { name } => c.subsystem(name, &mut em),
            ChannelEvent::Signal { name } => em.event(EventKind::Signal { name }),
            ChannelEvent::Data {
                direction,
                stderr,
                bytes,
                ..
            } => c.data(direction, stderr, &bytes, record_input, &mut em),
            ChannelEvent::Eof { direction } => c.eof(direction, &mut em),
            ChannelEvent::ExitStatus { status } => {
                c.summary.exit_status = Some(status);
                em.event(EventKind::Exit {
                    status: Some(status),
                    signal: None,
                    core: false,
                });
            }
            ChannelEvent::ExitSignal { signal, core_dumped } => {
                c.summary.exit_signal = Some(signal.clone());
                em.event(EventKind::Exit {
                    status: None,
                    signal: Some(signal),
                    core: core_dumped,
                });
            }
            ChannelEvent::Refused { request, reason } => em.event(EventKind::Refused { request, reason }),
            ChannelEvent::Close => c.close(&mut em),
            ChannelEvent::Note(_) => unreachable!("taken above"),
        }
    }

    /// At the end of a session that did not close all its channels: what the
    /// carries and parsers still hold, at `t`.
    pub(super) fn flush_all(&mut self, t: f64, out: &mut Vec<Out>) {
        for (&ch, c) in self.channels.iter_mut().filter(|(_, c)| !c.summary.closed) {
            c.drain(&mut Emit { out: &mut *out, t, ch });
        }
    }
}

impl Chan {
    fn open(&mut self, kind: ChannelKind, em: &mut Emit<'_>) {
        let (name, host, port) = match kind {
            ChannelKind::Session => ("session", None, None),
            ChannelKind::DirectTcpip { host, port } => ("direct-tcpip", Some(host), Some(port)),
            ChannelKind::ForwardedTcpip { address, port } => ("forwarded-tcpip", Some(address), Some(port)),
        };
        self.summary.kind = name.into();
        if let (Some(h), Some(p)) = (&host, port) {
            self.forward = Some((h.clone(), p));
            self.summary.destination = Some(format!("{h}:{p}"));
        }
        em.event(EventKind::Open {
            kind: name.into(),
            host,
            port,
        });
    }

    fn exec(&mut self, command: String, em: &mut Emit<'_>) {
        self.transfer = sftp::classify_exec(&command).map(|t| match t {
            Transfer::ScpSink => TransferState::Scp(ScpParser::new(true), Direction::Input),
            Transfer::ScpSource => TransferState::Scp(ScpParser::new(false), Direction::Output),
            Transfer::Rsync => TransferState::Rsync,
            Transfer::Sftp => TransferState::Sftp(SftpParser::new()),
        });
        self.summary.command = Some(command.clone());
        em.event(EventKind::Exec { command });
    }

    fn subsystem(&mut self, name: String, em: &mut Emit<'_>) {
        if sftp::classify_subsystem(&name).is_some() {
            self.transfer = Some(TransferState::Sftp(SftpParser::new()));
        }
        self.summary.subsystem = Some(name.clone());
        em.event(EventKind::Subsystem { name });
    }

    fn data(&mut self, direction: Direction, stderr: bool, bytes: &[u8], record_input: bool, em: &mut Emit<'_>) {
        match direction {
            Direction::Input => self.summary.bytes_in += bytes.len() as u64,
            Direction::Output => self.summary.bytes_out += bytes.len() as u64,
        }
        if self.forward.is_some() {
            // Forwarded connections: destination and byte counts only.
            return;
        }
        match (&mut self.transfer, direction, stderr) {
            // Messages of the transfer program itself are kept as text below.
            (Some(_), Direction::Output, true) => {}
            (Some(TransferState::Sftp(p)), Direction::Input, _) => return em.events(p.client(bytes)),
            (Some(TransferState::Sftp(p)), Direction::Output, _) => return em.events(p.server(bytes)),
            (Some(TransferState::Scp(p, carrying)), d, _) => {
                if d == *carrying {
                    em.events(p.feed(bytes));
                }
                return;
            }
            (Some(TransferState::Rsync), _, _) => return,
            (None, _, _) => {}
        }
        let (carry, input) = match (direction, stderr) {
            (Direction::Input, _) if !record_input => return,
            (Direction::Input, _) => (&mut self.input, true),
            (Direction::Output, false) => (&mut self.output, false),
            (Direction::Output, true) => (&mut self.stderr, false),
        };
        carry.push_each(bytes, |piece| em.data(input, stderr, piece));
    }

    fn eof(&mut self, direction: Direction, em: &mut Emit<'_>) {
        let carries: Vec<(&mut Utf8Carry, bool, bool)> = match direction {
            Direction::Input => vec![(&mut self.input, true, false)],
            Direction::Output => vec![(&mut self.output, false, false), (&mut self.stderr, false, true)],
        };
        for (carry, input, err) in carries {
            if let Some(piece) = carry.finish() {
                em.data(input, err, piece.as_ref());
            }
        }
        em.event(EventKind::Eof {
            dir: match direction {
                Direction::Input => Flow::In,
                Direction::Output => Flow::Out,
            },
        });
    }

    /// The channel's last events; a second close adds nothing.
    fn close(&mut self, em: &mut Emit<'_>) {
        if self.summary.closed {
            return;
        }
        self.drain(em);
        if let Some((host, port)) = self.forward.clone() {
            em.event(EventKind::Fwd {
                host,
                port,
                bytes_in: self.summary.bytes_in,
                bytes_out: self.summary.bytes_out,
            });
        }
        self.summary.closed = true;
        em.event(EventKind::Close {
            bytes_in: self.summary.bytes_in,
            bytes_out: self.summary.bytes_out,
        });
    }

    /// What the carries (incomplete characters, as bytes) and the transfer
    /// parser still hold.
    fn drain(&mut self, em: &mut Emit<'_>) {
        for (carry, input, err) in [
            (&mut self.input, true, false),
            (&mut self.output, false, false),
            (&mut self.stderr, false, true),
        ] {
            if let Some(piece) = carry.finish() {
                em.data(input, err, piece.as_ref());
            }
        }
        match &mut self.transfer {
            Some(TransferState::Sftp(p)) => em.events(p.finish()),
            Some(TransferState::Scp(p, _)) => em.events(p.finish()),
            _ => {}
        }
    }
}

impl Emit<'_> {
    fn event(&mut self, kind: EventKind) {
        self.out.push(Out::Event(Event {
            t: self.t,
            ch: self.ch,
            kind,
        }));
    }

    fn events(&mut self, kinds: Vec<EventKind>) {
        kinds.into_iter().for_each(|k| self.event(k));
    }

    /// A piece of data, copied once: into the data it merges into, or a new one.
    fn data(&mut self, input: bool, err: bool, piece: PieceRef<'_>) {
        if let Some(Out::Data {
            ch: c,
            input: i,
            err: e,
            piece: last,
            ..
        }) = self.out.last_mut()
            && (*c, *i, *e) == (self.ch, input, err)
        {
            match (last, piece) {
                (Piece::Text(a), PieceRef::Text(b)) if a.len() + b.len() <= MERGE_BYTES => {
                    a.reserve(MERGE_BYTES - a.len());
                    a.push_str(b);
                    return;
                }
                (Piece::Bytes(a), PieceRef::Bytes(b)) if a.len() + b.len() <= MERGE_BYTES => {
                    a.reserve(MERGE_BYTES - a.len());
                    a.extend_from_slice(b);
                    return;
                }
                _ => {}
            }
        }
        self.out.push(Out::Data {
            t: self.t,
            ch: self.ch,
            input,
            err,
            piece: piece.to_owned(),
        });
    }
}

#[cfg(test)]
#[path = "translate_tests.rs"]
mod tests;
