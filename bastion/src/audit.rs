//! The audit trail: one JSON object per line, each carrying the SHA-256 of
//! the line before it, so that an edited, removed or reordered line breaks
//! the chain (`bastion audit verify` finds where).
//!
//! The server and the operator CLI (`bastion breakglass review`) append to
//! the same file; an exclusive `flock` around each append, and re-reading
//! the tail when the file grew behind our back, keep one chain.
//!
//! Lines are written with [`recorder::display::escape_json`]: fields carry
//! user-chosen text, and a `cat` or `tail -f` of the log must not send C1
//! or bidi controls to a terminal (serde_json escapes only C0).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tracing::error;

/// The `prev` of the first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An append-only, hash-chained JSON-lines audit log.
pub struct AuditLog {
    path: PathBuf,
    /// Also print each event on stdout (for a container's log collector).
    stdout: bool,
    /// Also send each event to syslog through this datagram socket (`/dev/log`).
    syslog: Option<PathBuf>,
    inner: Mutex<Tail>,
}

/// What we know of the end of the file.
struct Tail {
    file: File,
    /// File length after our last append; a different length means another
    /// process appended and the tail must be re-read.
    len: u64,
    last_hash: String,
    seq: u64,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens (creating, mode 0600 in a 0700 directory) the log at `path`.
    pub fn open(path: &Path, stdout: bool) -> Result<AuditLog> {
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("opening the audit log {}", path.display()))?;
        let mut tail = Tail {
            file,
            len: u64::MAX,
            last_hash: GENESIS.into(),
            seq: 0,
        };
        tail.refresh()
            .with_context(|| format!("reading the audit log {}", path.display()))?;
        Ok(AuditLog {
            path: path.to_path_buf(),
            stdout,
            syslog: None,
            inner: Mutex::new(tail),
        })
    }

    /// Also sends every event to the syslog socket at `socket` (facility
    /// authpriv, so it lands where sshd's own records go). The file stays the
    /// record of truth: a syslog that is down is logged, never fatal.
    pub fn with_syslog(mut self, socket: &Path) -> AuditLog {
        self.syslog = Some(socket.to_path_buf());
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event. Failing to audit is logged loudly but never
    /// returned: the caller's action has already happened.
    pub fn record(&self, event: &str, fields: Value) {
        if let Err(e) = self.try_record(event, fields) {
            error!(event, error = %format!("{e:#}"), path = %self.path.display(), "cannot write the audit log");
        }
    }

    /// Appends one event and returns the line written.
    pub fn try_record(&self, event: &str, fields: Value) -> Result<String> {
        let mut tail = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let fd = tail.file.as_raw_fd();
        // SAFETY: flock on a descriptor we own; released below or when the
        // process dies.
        if unsafe { libc::flock(fd, libc::LOCK_EX) } != 0 {
            bail!("locking: {}", std::io::Error::last_os_error());
        }
        let result = (|| {
            tail.refresh()?;
            let mut object = Map::new();
            object.insert("seq".into(), json!(tail.seq + 1));
            object.insert(
                "ts".into(),
                json!(humantime::format_rfc3339_millis(SystemTime::now()).to_string()),
            );
            object.insert("event".into(), json!(event));
            if let Value::Object(extra) = fields {
                for (k, v) in extra {
                    if !matches!(k.as_str(), "seq" | "ts" | "event" | "prev") {
                        object.insert(k, v);
                    }
                }
            }
            object.insert("prev".into(), json!(tail.last_hash));
            let line = recorder::display::escape_json(&serde_json::to_string(&Value::Object(object))?).into_owned();
            tail.file.write_all(format!("{line}\n").as_bytes())?;
            tail.file.sync_data()?;
            tail.len = tail.file.metadata()?.len();
            tail.last_hash = hash(&line);
            tail.seq += 1;
            Ok::<_, anyhow::Error>(line)
        })();
        // SAFETY: as above.
        unsafe { libc::flock(fd, libc::LOCK_UN) };
        let line = result?;
        if self.stdout {
            println!("{line}");
        }
        if let Some(socket) = &self.syslog {
            // <86>: facility authpriv (10) × 8 + severity info (6).
            let message = format!("<86>bastion-audit[{}]: {line}", std::process::id());
            let sent = std::os::unix::net::UnixDatagram::unbound().and_then(|s| s.send_to(message.as_bytes(), socket));
            if let Err(e) = sent {
                error!(error = %e, socket = %socket.display(), "cannot send the audit event to syslog");
            }
        }
        Ok(line)
    }
}

impl Tail {
    /// Re-reads the last line when the file is not as we left it.
    fn refresh(&mut self) -> Result<()> {
        let len = self.file.metadata()?.len();
        if len == self.len {
            return Ok(());
        }
        let (seq, last) = last_line(&mut self.file, len)?;
        match last {
            None => {
                self.last_hash = GENESIS.into();
                self.seq = 0;
            }
            Some(line) => {
                self.last_hash = hash(&line);
                self.seq = seq;
            }
        }
        self.len = len;
        Ok(())
    }
}

/// The `seq` and text of the last complete line of a file of `len` bytes.
fn last_line(file: &mut File, len: u64) -> Result<(u64, Option<String>)> {
    let window = len.min(256 * 1024);
    file.seek(SeekFrom::Start(len - window))?;
    let mut buf = Vec::new();
    file.take(window).read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let Some(line) = text
        .trim_end_matches('\n')
        .rsplit('\n')
        .next()
        .filter(|l| !l.is_empty())
    else {
        return Ok((0, None));
    };
    let seq = serde_json::from_str::<Value>(line)
        .ok()
        .and_then(|v| v.get("seq").and_then(Value::as_u64))
        .context("the last line of the audit log is not an audit event")?;
    Ok((seq, Some(line.to_string())))
}

fn hash(line: &str) -> String {
    hex::encode(Sha256::digest(line.as_bytes()))
}

/// Checks the whole chain; returns the number of events, or where and how
/// it breaks.
pub fn verify(path: &Path) -> Result<u64> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut prev = GENESIS.to_string();
    let mut count = 0u64;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line?;
        let n = i + 1;
        let v: Value = serde_json::from_str(&line).with_context(|| format!("line {n} is not JSON"))?;
        let stated = v.get("prev").and_then(Value::as_str).unwrap_or("");
        if stated != prev {
            bail!(
                "line {n}: the chain is broken (prev is {stated}, the line before hashes to {prev}): a line was edited, removed or inserted"
            );
        }
        let seq = v.get("seq").and_then(Value::as_u64).unwrap_or(0);
        if seq != count + 1 {
            bail!("line {n}: seq {seq} where {} was expected", count + 1);
        }
        prev = hash(&line);
        count += 1;
    }
    Ok(count)
}

/// The sessions whose recordings the log says were sealed into the store
/// (`recording.sealed`), whatever the state of the chain: a store that lacks
/// one of them lost it. A missing log knows none.
pub fn sealed_sessions(path: &Path) -> Result<std::collections::BTreeSet<String>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    let mut sealed = std::collections::BTreeSet::new();
    for line in BufReader::new(file).lines() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if v.get("event").and_then(Value::as_str) == Some("recording.sealed")
            && let Some(id) = v.get("session").and_then(Value::as_str)
        {
            sealed.insert(id.to_string());
        }
    }
    Ok(sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_sessions_are_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        assert!(sealed_sessions(&path).unwrap().is_empty());
        let log = AuditLog::open(&path, false).unwrap();
        log.try_record("session.start", json!({"session": "s-running"}))
            .unwrap();
        log.try_record("recording.sealed", json!({"session": "s-1", "store": "x"}))
            .unwrap();
        log.try_record("recording.sealed", json!({"session": "s-2", "store": "x"}))
            .unwrap();
        let got: Vec<_> = sealed_sessions(&path).unwrap().into_iter().collect();
        assert_eq!(got, ["s-1", "s-2"]);
    }

    #[test]
    fn events_also_go_to_syslog() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("log.sock");
        let receiver = std::os::unix::net::UnixDatagram::bind(&socket).unwrap();
        receiver
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let log = AuditLog::open(&dir.path().join("audit.jsonl"), false)
            .unwrap()
            .with_syslog(&socket);
        log.try_record("breakglass.granted", json!({"user": "alice"})).unwrap();
        let mut buf = [0u8; 4096];
        let n = receiver.recv(&mut buf).unwrap();
        let got = String::from_utf8_lossy(&buf[..n]);
        assert!(got.starts_with("<86>bastion-audit["), "{got}");
        assert!(
            got.contains("\"event\":\"breakglass.granted\"") && got.contains("\"prev\":"),
            "{got}"
        );
    }

    #[test]
    fn lines_carry_no_raw_c1_or_bidi_and_still_verify() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path, false).unwrap();
        let hostile = "uptime\u{9b}6n\u{9d}0;t\u{7}\u{202e}\u{2028}\x1b[2J";
        log.try_record("session.start", json!({"command": hostile})).unwrap();
        log.try_record("session.end", json!({})).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.chars().any(|c| c != '\n' && recorder::display::is_dangerous(c)),
            "{text:?}"
        );
        assert!(text.contains("\\u009b") && text.contains("\\u202e"), "{text}");
        let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["command"], hostile);
        assert_eq!(verify(&path).unwrap(), 2);
    }

    #[test]
    fn chain_survives_reopen_and_other_writers_and_detects_edits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit/audit.jsonl");
        let a = AuditLog::open(&path, false).unwrap();
        let b = AuditLog::open(&path, false).unwrap();
        a.try_record("one", json!({"user": "alice"})).unwrap();
        b.try_record("two", json!({"seq": 99})).unwrap();
        a.try_record("three", json!({})).unwrap();
        drop((a, b));
        let c = AuditLog::open(&path, false).unwrap();
        let line = c.try_record("four", json!({})).unwrap();
        assert!(line.contains("\"seq\":4"), "{line}");
        assert_eq!(verify(&path).unwrap(), 4);

        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("alice", "mallory")).unwrap();
        let err = verify(&path).unwrap_err().to_string();
        assert!(err.starts_with("line 2: the chain is broken"), "{err}");
        let lines: Vec<&str> = text.lines().collect();
        std::fs::write(&path, format!("{}\n{}\n", lines[0], lines[2])).unwrap();
        assert!(verify(&path).unwrap_err().to_string().starts_with("line 2"));
    }
}
