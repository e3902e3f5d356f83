//! The recording pipeline driven exactly as the proxy drives it: a
//! `SessionTap` from `Sink::start`, `ChannelTap::record` with real bytes,
//! then the store, the manifest, verification and export checked.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use recorder::format::{self, EventKind, FileDir};
use recorder::manifest::{EndedHow, Manifest};
use recorder::store::Store;
use recorder::{
    ChannelEvent, ChannelKind, ChannelTap, Direction, RecorderConfig, RecordingSink, Sink, cast, read, verify,
};
use tokio::sync::watch;

fn out(s: &[u8]) -> ChannelEvent {
    ChannelEvent::data(Direction::Output, false, Bytes::copy_from_slice(s))
}

fn input(s: &[u8]) -> ChannelEvent {
    ChannelEvent::data(Direction::Input, false, Bytes::copy_from_slice(s))
}

fn config(t: &TempWorm) -> RecorderConfig {
    let mut c = RecorderConfig::new(t.path().join("spool"), key(), "bastion-test");
    c.chunk_interval = Duration::from_secs(60);
    c.retry_initial = Duration::from_millis(20);
    c.retry_max = Duration::from_millis(200);
    c
}

struct Running {
    sink: Arc<RecordingSink>,
    _stop: watch::Sender<bool>,
}

fn open(config: RecorderConfig, store: Arc<dyn Store>) -> Running {
    let (sink, report) = RecordingSink::open(config, store).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let (stop, rx) = watch::channel(false);
    sink.spawn_uploader(rx);
    Running { sink, _stop: stop }
}

async fn manifest_of(store: &dyn Store, id: &str) -> Manifest {
    wait_for_key(store, &format::manifest_key(id), 20).await;
    serde_json::from_slice(&store.get(&format::manifest_key(id)).await.unwrap()).unwrap()
}

fn output_text(rec: &read::Recording, ch: u32) -> Vec<u8> {
    rec.events
        .iter()
        .filter(|e| e.ch == ch)
        .filter_map(|e| match &e.kind {
            EventKind::Output { d, b64, err: false } => Some(format::event_bytes(d, b64)),
            _ => None,
        })
        .flatten()
        .collect()
}

fn files(rec: &read::Recording) -> Vec<format::FileOp> {
    rec.events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::File(f) => Some(f.clone()),
            _ => None,
        })
        .collect()
}

async fn shell(ch: &ChannelTap) {
    ch.record(ChannelEvent::Pty {
        term: "xterm-256color".into(),
        cols: 100,
        rows: 30,
    })
    .await
    .unwrap();
    ch.record(ChannelEvent::Shell).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn shell_session_is_recorded_verified_and_exported() {
    let t = TempWorm::new();
    let store = t.store();
    let r = open(config(&t), store.clone());
    let tap = r.sink.start(&meta("aaaa000000000001", true)).unwrap();
    let ch = tap.channel(ChannelKind::Session).await.unwrap();
    shell(&ch).await;
    ch.record(input(b"echo hello\r")).await.unwrap();
    // "wörld": the two bytes of ö arrive in different packets.
    let text = "hello wörld\r\n".as_bytes();
    let cut = text.iter().position(|b| *b == 0xc3).unwrap() + 1;
    ch.record(out(&text[..cut])).await.unwrap();
    ch.record(out(&text[cut..])).await.unwrap();
    ch.record(out(b"bin\xff\xfeary\r\n")).await.unwrap();
    ch.record(ChannelEvent::data(
        Direction::Output,
        true,
        Bytes::from_static(b"warn\n"),
    ))
    .await
    .unwrap();
    ch.record(ChannelEvent::Resize { cols: 120, rows: 40 }).await.unwrap();
    ch.record(ChannelEvent::ExitStatus { status: 3 }).await.unwrap();
    ch.record(ChannelEvent::Eof {
        direction: Direction::Output,
    })
    .await
    .unwrap();
    ch.record(ChannelEvent::Close).await.unwrap();
    drop(ch);
    drop(tap);

    let m = manifest_of(store.as_ref(), "aaaa000000000001").await;
    assert_eq!(m.ended_how, EndedHow::Closed);
    assert_eq!(m.info.user, "alice");
    assert_eq!(m.info.break_glass.as_ref().unwrap().ticket.as_deref(), Some("INC-42"));
    assert_eq!(m.channels.len(), 1);
    assert_eq!(m.channels[0].exit_status, Some(3));
    assert_eq!(m.channels[0].pty.as_deref(), Some("xterm-256color 100x30"));
    assert_eq!(m.channels[0].bytes_in, 11);
    assert_eq!(m.channels[0].bytes_out, (text.len() + 10 + 5) as u64);
    assert!(m.key_id.starts_with("SHA256:"));

    let report = verify::verify(store.as_ref(), "aaaa000000000001", &key().verifying_key())
        .await
        .unwrap();
    assert!(report.ok(), "{report}");

    let rec = read::load(store.as_ref(), "aaaa000000000001").await.unwrap();
    assert!(rec.problems.is_empty(), "{:?}", rec.problems);
    // Every byte kept, the split character whole, the invalid bytes as b64.
    let mut expected = text.to_vec();
    expected.extend_from_slice(b"bin\xff\xfeary\r\n");
    assert_eq!(output_text(&rec, 0), expected);
    assert!(
        rec.events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::Output { d: Some(d), .. } if d.contains("ö")))
    );
    assert!(
        rec.events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::Output { b64: Some(b), .. } if b == "//4="))
    );
    assert!(
        rec.events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::Input { d: Some(d), .. } if d == "echo hello\r"))
    );
    assert!(
        rec.events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::Resize { d } if d == "120x40"))
    );
    assert!(
        rec.events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::Output { err: true, .. }))
    );

    let cast = cast::export(&rec, None);
    let header: serde_json::Value = serde_json::from_str(cast.lines().next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    assert_eq!(header["width"], 100);
    assert_eq!(header["height"], 30);
    assert_eq!(header["title"], "alice@node-1 (aaaa000000000001)");
    assert_eq!(header["env"]["TERM"], "xterm-256color");
    assert!(cast.contains(r#""r","120x40"]"#));
    assert!(cast.contains(r#""i","echo hello\r"]"#));
    assert!(cast.contains(r#""m","exit status 3"]"#));

    let file = t.path().join("session.cast");
    std::fs::write(&file, &cast).unwrap();
    match std::process::Command::new("asciinema").arg("cat").arg(&file).output() {
        Ok(o) => {
            assert!(
                o.status.success(),
                "asciinema cat failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let shown = String::from_utf8_lossy(&o.stdout);
            assert!(shown.contains("hello wörld"), "asciinema cat printed {shown:?}");
        }
        Err(e) => panic!("asciinema is not installed ({e}); run scripts/install-test-deps"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn input_is_kept_only_when_the_policy_says_so() {
    let t = TempWorm::new();
    let store = t.store();
    let r = open(config(&t), store.clone());
    let tap = r.sink.start(&meta("bbbb000000000001", false)).unwrap();
    let ch = tap.channel(ChannelKind::Session).await.unwrap();
    shell(&ch).await;
    ch.record(input(b"secret-password\r")).await.unwrap();
    ch.record(out(b"ok\r\n")).await.unwrap();
    ch.record(ChannelEvent::Close).await.unwrap();
    drop((ch, tap));
    let m = manifest_of(store.as_ref(), "bbbb000000000001").await;
    assert_eq!(m.channels[0].bytes_in, 16, "the input is counted");
    let rec = read::load(store.as_ref(), "bbbb000000000001").await.unwrap();
    assert!(!rec.events.iter().any(|e| matches!(e.kind, EventKind::Input { .. })));
    let chunk = store.get(&format::chunk_key("bbbb000000000001", 0)).await.unwrap();
    assert!(!String::from_utf8_lossy(&chunk).contains("secret-password"));
    assert_eq!(output_text(&rec, 0), b"ok\r\n");
}

fn packet(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut p = ((body.len() + 1) as u32).to_be_bytes().to_vec();
    p.push(kind);
    p.extend_from_slice(body);
    p
}

fn s(v: &[u8]) -> Vec<u8> {
    let mut o = (v.len() as u32).to_be_bytes().to_vec();
    o.extend_from_slice(v);
    o
}

fn u32b(v: u32) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn sftp_is_recorded_as_file_operations_not_contents() {
    let t = TempWorm::new();
    let store = t.store();
    let r = open(config(&t), store.clone());
    let tap = r.sink.start(&meta("cccc000000000001", true)).unwrap();
    let ch = tap.channel(ChannelKind::Session).await.unwrap();
    ch.record(ChannelEvent::Subsystem { name: "sftp".into() })
        .await
        .unwrap();
    let secret = b"TOP-SECRET-FILE-CONTENT-".repeat(60); // 1440 bytes
    let mut up: Vec<u8> = Vec::new();
    up.extend(packet(1, &u32b(3)));
    // OPEN id 1 "/tmp/up.bin" WRITE|CREAT|TRUNC, empty attrs.
    up.extend(packet(3, &[u32b(1), s(b"/tmp/up.bin"), u32b(0x1a), u32b(0)].concat()));
    let mut down: Vec<u8> = Vec::new();
    down.extend(packet(2, &u32b(3)));
    down.extend(packet(102, &[u32b(1), s(b"H1")].concat()));
    // Two WRITEs, 1440 + 100 bytes.
    let w1 = packet(
        6,
        &[u32b(2), s(b"H1"), 0u64.to_be_bytes().to_vec(), s(&secret)].concat(),
    );
    let w2 = packet(
        6,
        &[u32b(3), s(b"H1"), 1440u64.to_be_bytes().to_vec(), s(&secret[..100])].concat(),
    );
    let close1 = packet(4, &[u32b(4), s(b"H1")].concat());
    // OPEN id 5 "/etc/hosts" READ, READ id 6 → DATA 200 bytes, READ id 7 → EOF, CLOSE.
    let open2 = packet(3, &[u32b(5), s(b"/etc/hosts"), u32b(1), u32b(0)].concat());
    let read1 = packet(
        5,
        &[u32b(6), s(b"H2"), 0u64.to_be_bytes().to_vec(), u32b(32768)].concat(),
    );
    let read2 = packet(
        5,
        &[u32b(7), s(b"H2"), 200u64.to_be_bytes().to_vec(), u32b(32768)].concat(),
    );
    let close2 = packet(4, &[u32b(8), s(b"H2")].concat());
    let rename = packet(18, &[u32b(9), s(b"/tmp/a"), s(b"/tmp/b")].concat());
    let remove = packet(13, &[u32b(10), s(b"/tmp/nope")].concat());
    let mkdir = packet(14, &[u32b(11), s(b"/tmp/d"), u32b(0)].concat());
    let status = |id: u32, code: u32| packet(101, &[u32b(id), u32b(code), s(b""), s(b"")].concat());

    // Requests cut at awkward places: inside a length, inside the file data.
    for part in up.chunks(7) {
        ch.record(input(part)).await.unwrap();
    }
    for part in down.chunks(5) {
        ch.record(out(part)).await.unwrap();
    }
    let mut client = w1.clone();
    client.extend(&w2);
    client.extend(&close1);
    for part in client.chunks(7) {
        ch.record(input(part)).await.unwrap();
    }
    ch.record(out(&[status(2, 0), status(3, 0), status(4, 0)].concat()))
        .await
        .unwrap();
    ch.record(input(&open2)).await.unwrap();
    ch.record(out(&packet(102, &[u32b(5), s(b"H2")].concat())))
        .await
        .unwrap();
    ch.record(input(&read1)).await.unwrap();
    let data = packet(103, &[u32b(6), s(&secret[..200])].concat());
    ch.record(out(&data[..50])).await.unwrap();
    ch.record(out(&data[50..])).await.unwrap();
    ch.record(input(&read2)).await.unwrap();
    ch.record(out(&status(7, 1))).await.unwrap();
    ch.record(input(&[close2, rename, remove, mkdir].concat()))
        .await
        .unwrap();
    ch.record(out(&[status(8, 0), status(9, 0), status(10, 2), status(11, 0)].concat()))
        .await
        .unwrap();
    ch.record(ChannelEvent::Close).await.unwrap();
    drop((ch, tap));

    let m = manifest_of(store.as_ref(), "cccc000000000001").await;
    assert_eq!(m.channels[0].subsystem.as_deref(), Some("sftp"));
    let rec = read::load(store.as_ref(), "cccc000000000001").await.unwrap();
    let f = files(&rec);
    type Row<'a> = (&'a str, &'a str, Option<u64>, Option<FileDir>, Option<bool>);
    let summary: Vec<Row> = f
        .iter()
        .map(|f| (f.op.as_str(), f.path.as_str(), f.bytes, f.dir, f.ok))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("write", "/tmp/up.bin", Some(1540), Some(FileDir::Up), None),
            ("read", "/etc/hosts", Some(200), Some(FileDir::Down), None),
            ("rename", "/tmp/a", None, None, Some(true)),
            ("remove", "/tmp/nope", None, None, Some(false)),
            ("mkdir", "/tmp/d", None, None, Some(true)),
        ]
    );
    assert_eq!(f[2].to.as_deref(), Some("/tmp/b"));
    let chunk = store.get(&format::chunk_key("cccc000000000001", 0)).await.unwrap();
    assert!(
        !String::from_utf8_lossy(&chunk).contains("TOP-SECRET"),
        "file contents must not be stored"
    );
    let cast = cast::export(&rec, None);
    assert!(cast.contains("file write /tmp/up.bin, 1540 bytes up"), "{cast}");
}

#[tokio::test(flavor = "multi_thread")]
async fn scp_and_rsync_keep_names_sizes_and_counts_only() {
    let t = TempWorm::new();
    let store = t.store();
    let r = open(config(&t), store.clone());
    let tap = r.sink.start(&meta("dddd000000000001", true)).unwrap();
    let scp = tap.channel(ChannelKind::Session).await.unwrap();
    scp.record(ChannelEvent::Exec {
        command: "scp -t /srv".into(),
    })
    .await
    .unwrap();
    scp.record(out(b"\0")).await.unwrap();
    scp.record(input(b"C0644 11 notes.txt\nhello")).await.unwrap();
    scp.record(input(b" world\0D0755 0 sub\nC0600 4 x\nabcd\0E\n"))
        .await
        .unwrap();
    scp.record(out(b"\0\0\0")).await.unwrap();
    scp.record(ChannelEvent::ExitStatus { status: 0 }).await.unwrap();
    scp.record(ChannelEvent::Close).await.unwrap();
    let rsync = tap.channel(ChannelKind::Session).await.unwrap();
    rsync
        .record(ChannelEvent::Exec {
            command: "rsync --server -vlogDtpre.iLsfxC . /srv".into(),
        })
        .await
        .unwrap();
    rsync.record(input(b"RSYNC-PAYLOAD-1234")).await.unwrap();
    rsync.record(out(b"RSYNC-ANSWER")).await.unwrap();
    rsync.record(ChannelEvent::Close).await.unwrap();
    drop((scp, rsync, tap));

    let m = manifest_of(store.as_ref(), "dddd000000000001").await;
    assert_eq!(
        m.channels[1].command.as_deref(),
        Some("rsync --server -vlogDtpre.iLsfxC . /srv")
    );
    assert_eq!((m.channels[1].bytes_in, m.channels[1].bytes_out), (18, 12));
    let rec = read::load(store.as_ref(), "dddd000000000001").await.unwrap();
    let f = files(&rec);
    let got: Vec<(&str, &str, Option<u64>)> = f.iter().map(|f| (f.op.as_str(), f.path.as_str(), f.bytes)).collect();
    assert_eq!(
        got,
        vec![
            ("write", "notes.txt", Some(11)),
            ("mkdir", "sub", None),
            ("write", "sub/x", Some(4))
        ]
    );
    let chunk =
        String::from_utf8_lossy(&store.get(&format::chunk_key("dddd000000000001", 0)).await.unwrap()).into_owned();
    assert!(!chunk.contains("hello world") && !chunk.contains("RSYNC-PAYLOAD") && !chunk.contains("abcd"));
    assert!(chunk.contains(r#""e":"close","bytes_in":18,"bytes_out":12"#), "{chunk}");
}

#[tokio::test(flavor = "multi_thread")]
async fn port_forwards_keep_destination_and_byte_counts() {
    let t = TempWorm::new();
    let store = t.store();
    let r = open(config(&t), store.clone());
    let tap = r.sink.start(&meta("dddd000000000002", true)).unwrap();
    let fwd = tap
        .channel(ChannelKind::DirectTcpip {
            host: "db.internal".into(),
            port: 5432,
        })
        .await
        .unwrap();
    fwd.record(input(b"SELECT secret FROM t")).await.unwrap();
    fwd.record(out(b"row")).await.unwrap();
    fwd.record(ChannelEvent::Close).await.unwrap();
    drop((fwd, tap));
    let m = manifest_of(store.as_ref(), "dddd000000000002").await;
    assert_eq!(m.channels[0].destination.as_deref(), Some("db.internal:5432"));
    let rec = read::load(store.as_ref(), "dddd000000000002").await.unwrap();
    assert!(rec.events.iter().any(|e| matches!(&e.kind,
        EventKind::Fwd { host, port: 5432, bytes_in: 20, bytes_out: 3 } if host == "db.internal")));
    assert!(
        !rec.events
            .iter()
            .any(|e| matches!(e.kind, EventKind::Output { .. } | EventKind::Input { .. }))
    );
}

/// Records `n` output lines made by `line` and returns the bytes they make.
async fn output_lines(ch: &ChannelTap, n: usize, line: impl Fn(usize) -> String) -> Vec<u8> {
    let mut expected = Vec::new();
    for i in 0..n {
        let line = line(i);
        expected.extend_from_slice(line.as_bytes());
        ch.record(out(line.as_bytes())).await.unwrap();
    }
    expected
}

#[tokio::test(flavor = "multi_thread")]
async fn chunks_roll_over_by_size() {
    let t = TempWorm::new();
    let store = t.store();
    let mut c = config(&t);
    c.chunk_bytes = 4096;
    let r = open(c, store.clone());
    let tap = r.sink.start(&meta("eeee000000000001", true)).unwrap();
    let ch = tap.channel(ChannelKind::Session).await.unwrap();
    shell(&ch).await;
    let expected = output_lines(&ch, 200, |i| format!("line {i:04} {}\r\n", "x".repeat(180))).await;
    ch.record(ChannelEvent::Close).await.unwrap();
    drop((ch, tap));
    let m = manifest_of(store.as_ref(), "eeee000000000001").await;
    assert!(m.chunks.len() >= 9, "{} chunks", m.chunks.len());
    assert!(
        m.chunks
            .iter()
            .rev()
            .skip(1)
            .all(|c| c.size >= 4096 && c.size < 4096 + 400)
    );
    let rec = read::load(store.as_ref(), "eeee000000000001").await.unwrap();
    assert!(rec.problems.is_empty(), "{:?}", rec.problems);
    let got = String::from_utf8(output_text(&rec, 0)).unwrap();
    let expected = String::from_utf8(expected).unwrap();
    assert_eq!(got.len(), expected.len(), "{} chunks", m.chunks.len());
    assert!(got == expected);
    let report = verify::verify(store.as_ref(), "eeee000000000001", &key().verifying_key())
        .await
        .unwrap();
    assert!(report.ok(), "{report}");
}

/// A chunk bigger than `flush_bytes` is written to the spool as output comes
/// (what a process crash would find) and fsynced along the way, without
/// being cut into more chunks.
#[tokio::test(flavor = "multi_thread")]
async fn a_big_chunk_reaches_the_spool_file_while_it_fills() {
    let t = TempWorm::new();
    let store = t.store();
    let mut c = config(&t);
    c.chunk_bytes = 1 << 20;
    c.flush_bytes = 8 << 10;
    let r = open(c, store.clone());
    let id = "eeee000000000002";
    let tap = r.sink.start(&meta(id, true)).unwrap();
    let ch = tap.channel(ChannelKind::Session).await.unwrap();
    shell(&ch).await;
    let expected = output_lines(&ch, 400, |i| format!("line {i:04} {}\r\n", "y".repeat(500))).await;
    let current = t.path().join("spool").join(id).join("current.jsonl");
    let want = expected.len() as u64;
    wait_for(10, "the open chunk's lines in current.jsonl", || {
        let current = current.clone();
        async move { std::fs::metadata(&current).map(|m| m.len() > want).unwrap_or(false) }
    })
    .await;
    assert!(store.get(&format::chunk_key(id, 0)).await.is_err(), "not sealed yet");
    ch.record(ChannelEvent::Close).await.unwrap();
    drop((ch, tap));
    let m = manifest_of(store.as_ref(), id).await;
    assert_eq!(m.chunks.len(), 1, "one chunk: {:?}", m.chunks);
    let rec = read::load(store.as_ref(), id).await.unwrap();
    assert!(output_text(&rec, 0) == expected);
}

/// A disk that is slow to sync holds the session, not more bytes at risk:
/// while an fsync of the open chunk hangs, the session takes in at most
/// `FLUSHES_IN_FLIGHT` more `flush_bytes` (and one batch) and then waits, so
/// the relay feels the back-pressure and what a machine crash could take
/// stays at about nine `flush_bytes`. Once the fsync returns, every byte is
/// recorded.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_fsync_holds_the_session_within_the_crash_loss_bound() {
    use recorder::sink::{BATCH_BYTES, FLUSHES_IN_FLIGHT};
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::{Condvar, Mutex};

    let t = TempWorm::new();
    let store = t.store();
    let mut c = config(&t);
    let flush = 64u64 << 10;
    c.flush_bytes = flush;
    c.chunk_bytes = 64 << 20;
    // The disk: every fsync of the open chunk waits until `held` is false.
    let disk = Arc::new((Mutex::new(true), Condvar::new()));
    let syncs = Arc::new(AtomicUsize::new(0));
    let (d, n) = (disk.clone(), syncs.clone());
    c.before_sync = Some(Arc::new(move || {
        n.fetch_add(1, SeqCst);
        let (held, changed) = &*d;
        let mut held = held.lock().unwrap();
        while *held {
            held = changed.wait(held).unwrap();
        }
    }));
    let r = open(c, store.clone());
    let id = "eeee000000000003";
    let tap = r.sink.start(&meta(id, false)).unwrap();
    let ch = tap.channel(ChannelKind::Session).await.unwrap();
    ch.record(ChannelEvent::Exec {
        command: "cat big.log".into(),
    })
    .await
    .unwrap();
    // 16 MiB: far more than the session's queue and the slack hold together.
    const PACKET: usize = 16 << 10;
    const PACKETS: usize = 1024;
    let packet = Bytes::from(b"0123456789abcdef".repeat(PACKET / 16));
    let accepted = Arc::new(AtomicUsize::new(0));
    let mut relay = {
        let (accepted, packet) = (accepted.clone(), packet.clone());
        tokio::spawn(async move {
            for _ in 0..PACKETS {
                ch.record(ChannelEvent::data(Direction::Output, false, packet.clone()))
                    .await
                    .unwrap();
                accepted.fetch_add(PACKET, SeqCst);
            }
            ch.record(ChannelEvent::Close).await.unwrap();
        })
    };
    let current = t.path().join("spool").join(id).join("current.jsonl");
    let spooled = move || std::fs::metadata(&current).map(|m| m.len() as usize).unwrap_or(0);
    // Held: an fsync waits, and the relay has filled the queue on top of
    // what the spool took (the queue holds 256 events).
    wait_for(30, "the session to wait behind the slow fsync", || {
        let ready = syncs.load(SeqCst) >= 1 && accepted.load(SeqCst) >= spooled() + 200 * PACKET;
        async move { ready }
    })
    .await;
    // And it stays held: a session that took no notice of the fsync would
    // write the 16 MiB in a fraction of this.
    assert!(
        tokio::time::timeout(Duration::from_secs(1), &mut relay).await.is_err(),
        "the relay sent everything while the fsync hung"
    );
    let at_risk = spooled() as u64;
    let slack = FLUSHES_IN_FLIGHT * flush;
    assert!(
        at_risk <= flush + slack + 2 * BATCH_BYTES + 4096,
        "{at_risk} bytes written while the first fsync hung (flush_bytes {flush}, slack {slack})"
    );
    assert!(
        at_risk + 2 * BATCH_BYTES >= flush + slack,
        "only {at_risk} bytes taken in while the first fsync hung: the slack is not used"
    );
    assert!(accepted.load(SeqCst) < PACKET * PACKETS);
    let (held, changed) = &*disk;
    *held.lock().unwrap() = false;
    changed.notify_all();
    tokio::time::timeout(Duration::from_secs(60), relay)
        .await
        .expect("the relay to send everything once the fsync returned")
        .unwrap();
    drop(tap);
    manifest_of(store.as_ref(), id).await;
    let rec = read::load(store.as_ref(), id).await.unwrap();
    assert!(rec.problems.is_empty(), "{:?}", rec.problems);
    let got = output_text(&rec, 0);
    assert_eq!(got.len(), PACKET * PACKETS);
    assert!(got.chunks(PACKET).all(|c| c == &packet[..]));
}

#[tokio::test(flavor = "multi_thread")]
async fn chunks_are_sealed_and_uploaded_by_time_while_the_session_runs() {
    let t = TempWorm::new();
    let store = t.store();
    let mut c = config(&t);
    c.chunk_interval = Duration::from_millis(100);
    let r = open(c, store.clone());
    let tap = r.sink.start(&meta("ffff000000000001", true)).unwrap();
    let ch = tap.channel(ChannelKind::Session).await.unwrap();
    shell(&ch).await;
    ch.record(out(b"first\r\n")).await.unwrap();
    wait_for_key(store.as_ref(), &format::chunk_key("ffff000000000001", 0), 10).await;
    ch.record(out(b"second\r\n")).await.unwrap();
    wait_for_key(store.as_ref(), &format::chunk_key("ffff000000000001", 1), 10).await;
    assert!(
        store.get(&format::manifest_key("ffff000000000001")).await.is_err(),
        "still running"
    );
    let running = verify::verify(store.as_ref(), "ffff000000000001", &key().verifying_key())
        .await
        .unwrap();
    assert_eq!(
        running.failures().collect::<Vec<_>>(),
        vec![&verify::Finding::NoManifest]
    );
    ch.record(ChannelEvent::Close).await.unwrap();
    drop((ch, tap));
    let m = manifest_of(store.as_ref(), "ffff000000000001").await;
    assert!(m.chunks.len() >= 2);
    let rec = read::load(store.as_ref(), "ffff000000000001").await.unwrap();
    assert_eq!(output_text(&rec, 0), b"first\r\nsecond\r\n");
}

#[test]
fn a_crash_is_recovered_with_every_complete_line_and_the_gap() {
    let t = TempWorm::new();
    let store = t.store();
    let mut c = config(&t);
    c.chunk_bytes = 2048;
    let id = "abcd000000000001";
    let spool_session = c.spool_dir.join(id);
    let mut expected = Vec::new();
    {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let store: Arc<dyn Store> = store.clone();
        let c = c.clone();
        rt.block_on(async {
            let r = open(c, store.clone());
            let tap = r.sink.start(&meta(id, true)).unwrap();
            let ch = tap.channel(ChannelKind::Session).await.unwrap();
            shell(&ch).await;
            for i in 0..40 {
                let line = format!("output {i:03} {}\r\n", "y".repeat(60));
                expected.extend_from_slice(line.as_bytes());
                ch.record(out(line.as_bytes())).await.unwrap();
            }
            // Sealed chunks reached the store before the crash…
            wait_for_key(store.as_ref(), &format::chunk_key(id, 0), 10).await;
            // …and the open chunk holds the tail on disk.
            let current = spool_session.join("current.jsonl");
            wait_for(10, "the tail in current.jsonl", || {
                let current = current.clone();
                async move { std::fs::read_to_string(&current).is_ok_and(|s| s.contains("output 039")) }
            })
            .await;
            std::mem::forget((ch, tap, r));
        });
        // The crash: every task dropped mid-session, nothing ended.
        rt.shutdown_background();
    }
    // A write cut in the middle of a line.
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(spool_session.join("current.jsonl"))
        .unwrap();
    const TORN: &[u8] = br#"{"t":99.5,"ch":0,"e":"o","d":"torn wri"#;
    f.write_all(TORN).unwrap();
    drop(f);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (sink, report) = RecordingSink::open(c, store.clone()).unwrap();
        assert_eq!(report.recovered.len(), 1, "{report:?}");
        let got = &report.recovered[0];
        assert_eq!(got.session, id);
        assert!(got.kept_lines > 0);
        assert_eq!(got.dropped_bytes, TORN.len() as u64);
        let (_stop, rx) = watch::channel(false);
        sink.spawn_uploader(rx);
        let m = manifest_of(store.as_ref(), id).await;
        assert_eq!(m.ended_how, EndedHow::Crashed);
        let gap = m.gap.clone().expect("a crashed manifest states its gap");
        assert!(gap.from <= gap.to, "{gap:?}");
        assert!(m.chunks.len() >= 2);
        let rec = read::load(store.as_ref(), id).await.unwrap();
        assert!(rec.problems.is_empty(), "{:?}", rec.problems);
        assert_eq!(output_text(&rec, 0), expected, "every complete line is kept");
        let report = verify::verify(store.as_ref(), id, &key().verifying_key())
            .await
            .unwrap();
        assert!(report.ok(), "{report}");
        assert!(
            report
                .findings
                .iter()
                .any(|f| matches!(f, verify::Finding::CrashedWithGap { .. }))
        );
        wait_for(10, "the spool to empty", || async { sink.status().sealed_pending == 0 }).await;
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_outage_keeps_everything_in_the_spool_until_it_returns() {
    let t = TempWorm::new();
    let inner = t.store();
    let flaky = Flaky::new(inner.clone(), true);
    let mut c = config(&t);
    c.chunk_bytes = 1024;
    let spool = c.spool_dir.clone();
    let r = open(c, flaky.clone());
    let id = "1234000000000001";
    let tap = r.sink.start(&meta(id, true)).unwrap();
    let ch = tap.channel(ChannelKind::Session).await.unwrap();
    shell(&ch).await;
    let expected = output_lines(&ch, 60, |i| format!("during outage {i:03}\r\n")).await;
    ch.record(ChannelEvent::Close).await.unwrap();
    drop((ch, tap));
    wait_for(10, "the session to end into the spool", || async {
        r.sink.status().sessions_open == 0 && spool.join(id).join("manifest.json").exists()
    })
    .await;
    wait_for(10, "an upload error to be reported", || async {
        r.sink.status().last_upload_error.is_some()
    })
    .await;
    let status = r.sink.status();
    assert!(status.sealed_pending >= 2, "{status:?}");
    assert!(status.bytes > 1024, "{status:?}");
    assert!(inner.list("").await.unwrap().is_empty(), "nothing reached the store");
    let spooled = std::fs::read_dir(spool.join(id)).unwrap().count();
    assert!(spooled >= 4, "chunks, index, meta and manifest stay in the spool");

    flaky.set_down(false);
    let m = manifest_of(inner.as_ref(), id).await;
    wait_for(10, "the spool copy to go once the store confirmed", || async {
        r.sink.status().sealed_pending == 0 && !spool.join(id).exists()
    })
    .await;
    wait_for(10, "the upload error to clear", || async {
        r.sink.status().last_upload_error.is_none()
    })
    .await;
    assert_eq!(m.ended_how, EndedHow::Closed);
    let rec = read::load(inner.as_ref(), id).await.unwrap();
    assert_eq!(output_text(&rec, 0), expected, "nothing lost");
    assert!(
        verify::verify(inner.as_ref(), id, &key().verifying_key())
            .await
            .unwrap()
            .ok()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_spool_refuses_new_sessions_and_lets_running_ones_go_on() {
    let t = TempWorm::new();
    let flaky = Flaky::new(t.store(), true);
    let mut c = config(&t);
    c.chunk_bytes = 512;
    c.spool_limit_bytes = 4096;
    let r = open(c, flaky.clone());
    let tap = r.sink.start(&meta("5555000000000001", true)).unwrap();
    let ch = tap.channel(ChannelKind::Session).await.unwrap();
    shell(&ch).await;
    for _ in 0..40 {
        ch.record(out(&[b'z'; 200])).await.unwrap();
    }
    wait_for(10, "the spool to pass its bound", || async {
        r.sink.status().bytes > 4096
    })
    .await;
    let err = r.sink.start(&meta("5555000000000002", true)).err().expect("refused");
    let msg = err.to_string();
    assert!(
        msg.contains("the recording spool is full (0 MiB of 0")
            && msg.contains("new sessions are refused until the store catches up"),
        "{msg}"
    );
    // The running session still records.
    ch.record(out(b"still recorded")).await.unwrap();
    ch.record(ChannelEvent::Close).await.unwrap();
    drop((ch, tap));
    flaky.set_down(false);
    wait_for(20, "the spool to drain", || async {
        let s = r.sink.status();
        s.sealed_pending == 0 && s.bytes < 4096
    })
    .await;
    r.sink
        .start(&meta("5555000000000003", true))
        .expect("accepted again once the store caught up");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spool_that_cannot_be_written_closes_the_session() {
    let t = TempWorm::new();
    let store = t.store();
    let mut c = config(&t);
    c.chunk_bytes = 1024;
    let spool = c.spool_dir.clone();
    let r = open(c, Flaky::new(store, true));
    let tap = r.sink.start(&meta("6666000000000001", true)).unwrap();
    let ch = tap.channel(ChannelKind::Session).await.unwrap();
    // One event past the size bound: exactly one seal.
    ch.record(out(&[b'a'; 2000])).await.unwrap();
    wait_for(10, "the first seal", || async {
        let dir = spool.join("6666000000000001");
        dir.join("chunk-000000.jsonl").exists() && r.sink.status().sealed_pending == 1
    })
    .await;
    // The disk goes away under the session.
    std::fs::remove_dir_all(spool.join("6666000000000001")).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if ch.record(out(b"more")).await.is_err() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the tap kept accepting events it cannot write"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    wait_for(10, "the failure to be reported and the session to end", || async {
        let s = r.sink.status();
        s.last_spool_error.is_some() && s.sessions_open == 0
    })
    .await;
    let err = r.sink.status().last_spool_error.unwrap();
    assert!(
        err.contains("session 6666000000000001: writing the spool failed"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_ends_running_sessions_with_a_manifest() {
    let t = TempWorm::new();
    let store = t.store();
    let r = open(config(&t), store.clone());
    let tap = r.sink.start(&meta("7777000000000001", true)).unwrap();
    let ch = tap.channel(ChannelKind::Session).await.unwrap();
    shell(&ch).await;
    ch.record(out(b"before shutdown")).await.unwrap();
    r.sink.shutdown();
    tokio::time::timeout(Duration::from_secs(10), r.sink.drained())
        .await
        .unwrap();
    assert!(ch.record(out(b"after")).await.is_err());
    assert!(r.sink.start(&meta("7777000000000002", true)).is_err());
    let m = manifest_of(store.as_ref(), "7777000000000001").await;
    assert_eq!(m.ended_how, EndedHow::Shutdown);
    let rec = read::load(store.as_ref(), "7777000000000001").await.unwrap();
    assert_eq!(output_text(&rec, 0), b"before shutdown");
    assert_eq!(
        read::list_sessions(store.as_ref()).await.unwrap(),
        vec!["7777000000000001"]
    );
}
