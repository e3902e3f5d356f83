//! File transfers seen on a session channel, recorded as operations and sizes
//! instead of contents: an incremental SSH_FXP (sftp v3,
//! draft-ietf-secsh-filexfer-02) parser for both directions, the scp
//! `-t`/`-f` control-line parser, and the classifier that tells which exec
//! commands are transfers.
//!
//! Everything here is pure and incremental: bytes are fed as the relay sees
//! them, cut anywhere, and file data is skipped without being buffered, so a
//! 10 GiB upload costs a few counters, not memory.

use std::collections::HashMap;

use crate::format::{EventKind, FileDir, FileOp};

/// Which file-transfer protocol a session channel carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// The `sftp` subsystem (also modern `scp`, which speaks sftp).
    Sftp,
    /// `scp -t`: the engineer uploads to the node.
    ScpSink,
    /// `scp -f`: the engineer downloads from the node.
    ScpSource,
    /// `rsync --server`: only the command and byte counts are kept.
    Rsync,
}

/// Whether an exec command is a file transfer whose contents must not be stored.
pub fn classify_exec(command: &str) -> Option<Transfer> {
    let mut words = command.split_whitespace();
    let program = words.next()?;
    let base = program.rsplit('/').next().unwrap_or(program);
    let args: Vec<&str> = words.collect();
    match base {
        "scp" => {
            let mut mode = None;
            for a in &args {
                if *a == "--" {
                    break;
                }
                if let Some(flags) = a.strip_prefix('-')
                    && !flags.starts_with('-')
                {
                    if flags.contains('t') {
                        mode = Some(Transfer::ScpSink);
                    } else if flags.contains('f') {
                        mode = Some(Transfer::ScpSource);
                    }
                }
            }
            mode
        }
        "rsync" if args.contains(&"--server") => Some(Transfer::Rsync),
        _ => None,
    }
}

/// Whether a subsystem is sftp.
pub fn classify_subsystem(name: &str) -> Option<Transfer> {
    (name == "sftp").then_some(Transfer::Sftp)
}

// Packet types (draft-ietf-secsh-filexfer-02 §3).
const FXP_INIT: u8 = 1;
const FXP_VERSION: u8 = 2;
const FXP_OPEN: u8 = 3;
const FXP_CLOSE: u8 = 4;
const FXP_READ: u8 = 5;
const FXP_WRITE: u8 = 6;
const FXP_SETSTAT: u8 = 9;
const FXP_REMOVE: u8 = 13;
const FXP_MKDIR: u8 = 14;
const FXP_RMDIR: u8 = 15;
const FXP_RENAME: u8 = 18;
const FXP_STATUS: u8 = 101;
const FXP_HANDLE: u8 = 102;
const FXP_DATA: u8 = 103;
const FXP_EXTENDED: u8 = 200;

const FXF_WRITE: u32 = 0x02;
const FXF_APPEND: u32 = 0x04;

/// Larger than any packet a real client sends (OpenSSH: 256 KiB); a bigger
/// length means the stream is not sftp or we lost its framing.
const MAX_PACKET: usize = 1 << 20;

/// Splits one direction's byte stream into packets. File data in WRITE and
/// DATA packets is counted and skipped, never buffered.
#[derive(Debug, Default)]
struct Framer {
    buf: Vec<u8>,
    skip: usize,
}

/// What the framer hands over: a whole packet, or the head of a data packet.
enum Frame<'a> {
    Packet(u8, &'a [u8]),
    /// WRITE (`handle`) or DATA (no handle): the request id and the data length.
    Data {
        id: u32,
        handle: Option<Vec<u8>>,
        len: u64,
    },
}

impl Framer {
    fn feed(&mut self, mut data: &[u8], data_type: u8, mut on: impl FnMut(Frame<'_>)) -> Result<(), String> {
        if self.skip > 0 {
            let n = self.skip.min(data.len());
            self.skip -= n;
            data = &data[n..];
        }
        self.buf.extend_from_slice(data);
        let mut at = 0;
        let result = loop {
            let avail = &self.buf[at..];
            if avail.len() < 5 {
                break Ok(());
            }
            let len = u32::from_be_bytes([avail[0], avail[1], avail[2], avail[3]]) as usize;
            if len == 0 || len > MAX_PACKET {
                break Err(format!("an sftp packet of {len} bytes is not plausible"));
            }
            let kind = avail[4];
            let total = 4 + len;
            let body = &avail[5..avail.len().min(total)];
            if kind == data_type {
                let mut r = Reader(body);
                let head = (|| {
                    let id = r.u32()?;
                    let handle = if kind == FXP_WRITE {
                        let h = r.string()?.to_vec();
                        r.u64()?;
                        Some(h)
                    } else {
                        None
                    };
                    let len = r.u32()?;
                    Some((id, handle, len))
                })();
                match head {
                    Some((id, handle, len)) => {
                        on(Frame::Data {
                            id,
                            handle,
                            len: u64::from(len),
                        });
                        if avail.len() >= total {
                            at += total;
                        } else {
                            self.skip = total - avail.len();
                            at = self.buf.len();
                            break Ok(());
                        }
                    }
                    None if avail.len() >= total => break Err("a data packet is too short".into()),
                    None => break Ok(()),
                }
            } else if avail.len() >= total {
                on(Frame::Packet(kind, &avail[5..total]));
                at += total;
            } else {
                break Ok(());
            }
        };
        self.buf.drain(..at);
        result
    }
}

/// Reads SSH wire types from a packet body.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_be_bytes(b.try_into().unwrap_or_default()))
    }
    fn string(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn text(&mut self) -> Option<String> {
        self.string().map(|b| String::from_utf8_lossy(b).into_owned())
    }
}

#[derive(Debug)]
struct OpenFile {
    path: String,
    write: bool,
    read: u64,
    written: u64,
}

#[derive(Debug)]
enum Pending {
    Open {
        path: String,
        write: bool,
    },
    Read {
        handle: Vec<u8>,
    },
    /// An operation whose STATUS answer completes it.
    Op(FileOp),
}

/// The sftp parser for one channel: feed client→node bytes to
/// [`SftpParser::client`] and node→client bytes to [`SftpParser::server`].
#[derive(Debug, Default)]
pub struct SftpParser {
    up: Framer,
    down: Framer,
    pending: HashMap<u32, Pending>,
    handles: HashMap<Vec<u8>, OpenFile>,
    lost: bool,
}

impl SftpParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes from the engineer's client (requests).
    pub fn client(&mut self, data: &[u8]) -> Vec<EventKind> {
        let mut out = Vec::new();
        if self.lost {
            return out;
        }
        let mut up = std::mem::take(&mut self.up);
        let r = up.feed(data, FXP_WRITE, |f| self.request(f, &mut out));
        self.up = up;
        self.check(r, &mut out);
        out
    }

    /// Bytes from the node's sftp server (answers).
    pub fn server(&mut self, data: &[u8]) -> Vec<EventKind> {
        let mut out = Vec::new();
        if self.lost {
            return out;
        }
        let mut down = std::mem::take(&mut self.down);
        let r = down.feed(data, FXP_DATA, |f| self.answer(f, &mut out));
        self.down = down;
        self.check(r, &mut out);
        out
    }

    /// The channel closed: files still open and operations never answered.
    pub fn finish(&mut self) -> Vec<EventKind> {
        let mut out = Vec::new();
        let mut handles: Vec<_> = self.handles.drain().collect();
        handles.sort_by(|a, b| a.1.path.cmp(&b.1.path));
        for (_, f) in handles {
            out.push(EventKind::File(closed_file(f)));
        }
        let mut pending: Vec<_> = self.pending.drain().collect();
        pending.sort_by_key(|p| p.0);
        for (_, p) in pending {
            if let Pending::Op(op) = p {
                out.push(EventKind::File(op));
            }
        }
        out
    }

    fn check(&mut self, r: Result<(), String>, out: &mut Vec<EventKind>) {
        if let Err(e) = r {
            // Once framing is lost every later "packet" would be garbage:
            // say so once on the timeline and keep counting bytes only.
            self.lost = true;
            out.push(EventKind::Marker {
                d: format!("sftp stream no longer parsed: {e}"),
            });
        }
    }

    fn request(&mut self, frame: Frame<'_>, out: &mut Vec<EventKind>) {
        let (kind, body) = match frame {
            Frame::Data { handle, len, .. } => {
                if let Some(f) = handle.and_then(|h| self.handles.get_mut(&h)) {
                    f.written += len;
                }
                return;
            }
            Frame::Packet(kind, body) => (kind, body),
        };
        let mut r = Reader(body);
        if kind == FXP_INIT {
            return;
        }
        let Some(id) = r.u32() else { return };
        let simple = |op: &str, path: Option<String>, to: Option<String>| {
            path.map(|path| {
                Pending::Op(FileOp {
                    op: op.into(),
                    path,
                    to,
                    bytes: None,
                    dir: None,
                    ok: None,
                })
            })
        };
        let pending = match kind {
            FXP_OPEN => r.text().zip(r.u32()).map(|(path, flags)| Pending::Open {
                path,
                write: flags & (FXF_WRITE | FXF_APPEND) != 0,
            }),
            FXP_READ => r.string().map(|h| Pending::Read { handle: h.to_vec() }),
            FXP_CLOSE => {
                if let Some(f) = r.string().and_then(|h| self.handles.remove(h)) {
                    out.push(EventKind::File(closed_file(f)));
                }
                None
            }
            FXP_REMOVE => simple("remove", r.text(), None),
            FXP_MKDIR => simple("mkdir", r.text(), None),
            FXP_RMDIR => simple("rmdir", r.text(), None),
            FXP_SETSTAT => simple("setstat", r.text(), None),
            FXP_RENAME => {
                let from = r.text();
                simple("rename", from, r.text())
            }
            FXP_EXTENDED => match r.text().as_deref() {
                Some("posix-rename@openssh.com") => {
                    let from = r.text();
                    simple("rename", from, r.text())
                }
                _ => None,
            },
            _ => None,
        };
        if let Some(p) = pending {
            self.pending.insert(id, p);
        }
    }

    fn answer(&mut self, frame: Frame<'_>, out: &mut Vec<EventKind>) {
        let (kind, body) = match frame {
            Frame::Data { id, len, .. } => {
                if let Some(Pending::Read { handle }) = self.pending.remove(&id)
                    && let Some(f) = self.handles.get_mut(&handle)
                {
                    f.read += len;
                }
                return;
            }
            Frame::Packet(kind, body) => (kind, body),
        };
        if kind == FXP_VERSION {
            return;
        }
        let mut r = Reader(body);
        let Some(id) = r.u32() else { return };
        let Some(pending) = self.pending.remove(&id) else {
            return;
        };
        match (kind, pending) {
            (FXP_HANDLE, Pending::Open { path, write }) => {
                if let Some(h) = r.string() {
                    self.handles.insert(
                        h.to_vec(),
                        OpenFile {
                            path,
                            write,
                            read: 0,
                            written: 0,
                        },
                    );
                }
            }
            (FXP_STATUS, Pending::Open { path, write }) => {
                // A refused open is still an attempt worth seeing.
                out.push(EventKind::File(FileOp {
                    op: if write { "write" } else { "read" }.into(),
                    path,
                    to: None,
                    bytes: Some(0),
                    dir: Some(if write { FileDir::Up } else { FileDir::Down }),
                    ok: Some(false),
                }));
            }
            (FXP_STATUS, Pending::Op(mut op)) => {
                op.ok = Some(r.u32() == Some(0));
                out.push(EventKind::File(op));
            }
            _ => {}
        }
    }
}

fn closed_file(f: OpenFile) -> FileOp {
    FileOp {
        op: if f.write { "write" } else { "read" }.into(),
        path: f.path,
        to: None,
        bytes: Some(f.read + f.written),
        dir: Some(if f.write { FileDir::Up } else { FileDir::Down }),
        ok: None,
    }
}

/// The scp (rcp protocol) parser for the direction that carries files:
/// client→node for `scp -t`, node→client for `scp -f`.
#[derive(Debug)]
pub struct ScpParser {
    dir: FileDir,
    line: Vec<u8>,
    /// File bytes still to skip, and the file they belong to.
    remaining: u64,
    current: Option<(String, u64)>,
    dirs: Vec<String>,
    lost: bool,
}

/// Control lines are short; a longer one means we are not reading scp.
const MAX_SCP_LINE: usize = 64 * 1024;

impl ScpParser {
    /// `upload`: `scp -t` (files go up); otherwise `scp -f`.
    pub fn new(upload: bool) -> Self {
        ScpParser {
            dir: if upload { FileDir::Up } else { FileDir::Down },
            line: Vec::new(),
            remaining: 0,
            current: None,
            dirs: Vec::new(),
            lost: false,
        }
    }

    /// Feeds bytes of the file-carrying direction.
    pub fn feed(&mut self, mut data: &[u8]) -> Vec<EventKind> {
        let mut out = Vec::new();
        while !data.is_empty() && !self.lost {
            if self.remaining > 0 {
                let n = (self.remaining.min(data.len() as u64)) as usize;
                self.remaining -= n as u64;
                data = &data[n..];
                if self.remaining == 0 {
                    self.file_done(&mut out);
                }
                continue;
            }
            // The `\0` after a file's bytes (and acks) separate control lines.
            if self.line.is_empty() && data[0] == 0 {
                data = &data[1..];
                continue;
            }
            match data.iter().position(|b| *b == b'\n') {
                None => {
                    self.line.extend_from_slice(data);
                    data = &[];
                    if self.line.len() > MAX_SCP_LINE {
                        self.lose("a control line longer than 64 KiB", &mut out);
                    }
                }
                Some(i) => {
                    self.line.extend_from_slice(&data[..i]);
                    data = &data[i + 1..];
                    let line = std::mem::take(&mut self.line);
                    self.control(&line, &mut out);
                }
            }
        }
        out
    }

    /// The channel closed: a file cut in the middle is still reported.
    pub fn finish(&mut self) -> Vec<EventKind> {
        let mut out = Vec::new();
        if let Some((path, size)) = self.current.take() {
            out.push(EventKind::File(FileOp {
                op: self.op().into(),
                path,
                to: None,
                bytes: Some(size - self.remaining),
                dir: Some(self.dir),
                ok: Some(false),
            }));
        }
        out
    }

    fn op(&self) -> &'static str {
        match self.dir {
            FileDir::Up => "write",
            FileDir::Down => "read",
        }
    }

    fn path(&self, name: &str) -> String {
        let mut p = self.dirs.join("/");
        if !p.is_empty() {
            p.push('/');
        }
        p.push_str(name);
        p
    }

    fn file_done(&mut self, out: &mut Vec<EventKind>) {
        if let Some((path, size)) = self.current.take() {
            out.push(EventKind::File(FileOp {
                op: self.op().into(),
                path,
                to: None,
                bytes: Some(size),
                dir: Some(self.dir),
                ok: None,
            }));
        }
    }

    fn lose(&mut self, why: &str, out: &mut Vec<EventKind>) {
        self.lost = true;
        out.push(EventKind::Marker {
            d: format!("scp stream no longer parsed: {why}"),
        });
    }

    fn control(&mut self, line: &[u8], out: &mut Vec<EventKind>) {
        let text = String::from_utf8_lossy(line);
        let Some(kind) = text.chars().next() else { return };
        match kind {
            'C' | 'D' => {
                // `C0644 1234 name` / `D0755 0 name`: the name may hold spaces.
                let mut parts = text[1..].splitn(3, ' ');
                let (Some(_mode), Some(size), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
                    return self.lose("a malformed C/D line", out);
                };
                let Ok(size) = size.parse::<u64>() else {
                    return self.lose("a malformed size", out);
                };
                if kind == 'D' {
                    out.push(EventKind::File(FileOp {
                        op: "mkdir".into(),
                        path: self.path(name),
                        to: None,
                        bytes: None,
                        dir: Some(self.dir),
                        ok: None,
                    }));
                    self.dirs.push(name.to_owned());
                } else {
                    self.current = Some((self.path(name), size));
                    self.remaining = size;
                    if size == 0 {
                        self.file_done(out);
                    }
                }
            }
            'E' => {
                self.dirs.pop();
            }
            'T' => {}
            '\u{1}' | '\u{2}' => out.push(EventKind::Marker {
                d: format!("scp: {}", text[1..].trim()),
            }),
            _ => self.lose("an unknown control line", out),
        }
    }
}

#[cfg(test)]
#[path = "sftp_tests.rs"]
mod tests;
