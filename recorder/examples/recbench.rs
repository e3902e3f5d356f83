//! Micro-benchmark of the recording pipeline alone: one session's output
//! through a `RecordingSink` into a `WormDir` store, as fast as the sink takes
//! it. No SSH, no network: what recording costs per byte, for profiling
//! (`perf record -g target/release/examples/recbench 256 text`).
//!
//! `recbench [MIB] [zero|text|random] [PACKET_BYTES] [DIR] [CHUNK_KIB] [FLUSH_KIB]`
//! (defaults: 128, zero, 32768, a temp dir under /tmp that is removed at the
//! end, the recorder's default chunk and flush sizes; `-` for a default). Prints the
//! time the relay side waited (the throughput a relay would see), the time
//! until the manifest was sealed in the store, and the process CPU time.
//! Then the same output once more on the main thread with no I/O, no queue and
//! no other thread: split into UTF-8 and bytes, merged, written as event lines
//! and hashed, as the recorder does, and SHA-256 alone over as many bytes.
//! That is the part of recording's cost that no spool or store can remove.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use recorder::store::worm::WormDir;
use recorder::{ChannelEvent, ChannelKind, Direction, RecorderConfig, RecordingSink, SessionMeta, Sink};

fn cpu_seconds() -> f64 {
    rusage_seconds(libc::RUSAGE_SELF)
}

fn rusage_seconds(who: libc::c_int) -> f64 {
    // SAFETY: rusage is plain integers, for which all zeroes is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one rusage struct into a live local.
    unsafe { libc::getrusage(who, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// What formatting and hashing `total` bytes of `block` cost on this thread,
/// with no I/O: returns the CPU-seconds of formatting plus hashing, of
/// hashing alone, and the bytes the event lines came to.
fn floor(block: &[u8], packet: usize, total: usize) -> (f64, f64, u64) {
    use recorder::format::{Piece, PieceRef, Utf8Carry, write_data_line};
    use sha2::{Digest, Sha256};
    // As the recorder merges one stream's pieces (sink/translate.rs `MERGE_BYTES`).
    const MERGE: usize = 64 * 1024;
    let mut carry = Utf8Carry::default();
    let mut pending: Option<Piece> = None;
    let mut line = Vec::with_capacity(2 * MERGE);
    let mut hasher = Sha256::new();
    let mut stored = 0u64;
    let mut emit = |piece: &Piece, line: &mut Vec<u8>, hasher: &mut Sha256| {
        line.clear();
        write_data_line(line, 1.25, 0, false, false, piece);
        hasher.update(&line[..]);
        stored += line.len() as u64;
    };
    let cpu0 = rusage_seconds(libc::RUSAGE_THREAD);
    let mut sent = 0;
    let mut i = 0;
    while sent < total {
        let n = packet.min(total - sent);
        let off = (i % 64) * packet;
        carry.push_each(&block[off..off + n], |p| {
            match (&mut pending, p) {
                (Some(Piece::Text(a)), PieceRef::Text(b)) if a.len() + b.len() <= MERGE => return a.push_str(b),
                (Some(Piece::Bytes(a)), PieceRef::Bytes(b)) if a.len() + b.len() <= MERGE => {
                    return a.extend_from_slice(b);
                }
                _ => {}
            }
            if let Some(done) = pending.replace(p.to_owned()) {
                emit(&done, &mut line, &mut hasher);
            }
        });
        sent += n;
        i += 1;
    }
    for piece in pending.take().into_iter().chain(carry.finish()) {
        emit(&piece, &mut line, &mut hasher);
    }
    std::hint::black_box(hasher.finalize());
    let format_and_hash = rusage_seconds(libc::RUSAGE_THREAD) - cpu0;
    // SHA-256 alone over as many bytes, in lines of the size just written.
    let sample = line.clone();
    let cpu0 = rusage_seconds(libc::RUSAGE_THREAD);
    let mut hasher = Sha256::new();
    let mut hashed = 0u64;
    while hashed < stored {
        hasher.update(&sample);
        hashed += sample.len().max(1) as u64;
    }
    std::hint::black_box(hasher.finalize());
    (format_and_hash, rusage_seconds(libc::RUSAGE_THREAD) - cpu0, stored)
}

/// A repeating block of the chosen kind, at least `len` bytes.
fn pattern(kind: &str, len: usize) -> Vec<u8> {
    match kind {
        "zero" => vec![0; len],
        "text" => {
            // Like `base64 /dev/urandom`: 76-column lines of base64 text.
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
            let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let mut v = Vec::with_capacity(len + 77);
            while v.len() < len {
                for _ in 0..76 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    v.push(alphabet[(x % 64) as usize]);
                }
                v.push(b'\n');
            }
            v
        }
        "random" => {
            let mut x: u64 = 0x2545_f491_4f6c_dd1d;
            (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        }
        other => panic!("unknown kind {other:?}: zero, text or random"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mib: usize = args.get(1).map(|s| s.parse().expect("MIB")).unwrap_or(128);
    let kind = args.get(2).cloned().unwrap_or_else(|| "zero".into());
    let packet: usize = args.get(3).map(|s| s.parse().expect("PACKET_BYTES")).unwrap_or(32768);
    let temp = tempfile::tempdir().expect("temp dir");
    let root = args
        .get(4)
        .filter(|s| s.as_str() != "-")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| temp.path().to_path_buf());

    let chunk_kib: Option<u64> = args
        .get(5)
        .filter(|s| s.as_str() != "-")
        .map(|s| s.parse().expect("CHUNK_KIB"));
    let flush_kib: Option<u64> = args.get(6).map(|s| s.parse().expect("FLUSH_KIB"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let store = Arc::new(WormDir::new(root.join("store")).expect("store"));
        let sealed = Arc::new(AtomicBool::new(false));
        let mut config = RecorderConfig::new(root.join("spool"), SigningKey::from_bytes(&[7; 32]), "bench");
        if let Some(kib) = chunk_kib {
            config.chunk_bytes = kib << 10;
        }
        if let Some(kib) = flush_kib {
            config.flush_bytes = kib << 10;
        }
        let s2 = sealed.clone();
        config.on_sealed = Some(Arc::new(move |_| s2.store(true, Ordering::SeqCst)));
        let (sink, _) = RecordingSink::open(config, store.clone()).expect("sink");
        let (_stop_tx, stop) = tokio::sync::watch::channel(false);
        let uploader = sink.spawn_uploader(stop);
        let meta = SessionMeta {
            session_id: "bench0001".into(),
            user: "bench".into(),
            groups: vec![],
            client: "127.0.0.1:1".into(),
            target: "node-1".into(),
            login: "root".into(),
            factors: vec!["publickey".into()],
            started: SystemTime::now(),
            record_input: false,
            break_glass: None,
        };
        let block = Bytes::from(pattern(&kind, packet * 64 + packet));
        let floor_block = block.clone();
        let total = mib << 20;
        let cpu0 = cpu_seconds();
        let t0 = Instant::now();
        let tap = sink.start(&meta).expect("start");
        let ch = tap.channel(ChannelKind::Session).await.expect("channel");
        ch.record(ChannelEvent::Exec {
            command: "head -c N /dev/zero".into(),
        })
        .await
        .expect("exec");
        let mut sent = 0;
        let mut i = 0;
        while sent < total {
            let n = packet.min(total - sent);
            let off = (i % 64) * packet;
            ch.record(ChannelEvent::data(Direction::Output, false, block.slice(off..off + n)))
                .await
                .expect("record");
            sent += n;
            i += 1;
        }
        ch.record(ChannelEvent::Eof {
            direction: Direction::Output,
        })
        .await
        .expect("eof");
        ch.record(ChannelEvent::ExitStatus { status: 0 }).await.expect("exit");
        ch.record(ChannelEvent::Close).await.expect("close");
        let relayed = t0.elapsed();
        drop(ch);
        drop(tap);
        sink.drained().await;
        let recorded = t0.elapsed();
        let deadline = Instant::now() + Duration::from_secs(600);
        while !sealed.load(Ordering::SeqCst) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let stored = t0.elapsed();
        let cpu = cpu_seconds() - cpu0;
        let stored_bytes: u64 = std::fs::read_dir(root.join("store").join("bench0001"))
            .map(|d| d.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
            .unwrap_or(0);
        let chunks = std::fs::read_dir(root.join("store").join("bench0001"))
            .map(|d| d.count())
            .unwrap_or(0);
        println!(
            "{kind} {mib} MiB in {packet} B packets: relayed {:.2} s ({:.0} MiB/s), recorded {:.2} s, \
             sealed in store {:.2} s{}; CPU {:.2} s ({:.2} s/GiB); store {} objects, {:.1} MiB",
            relayed.as_secs_f64(),
            mib as f64 / relayed.as_secs_f64(),
            recorded.as_secs_f64(),
            stored.as_secs_f64(),
            if sealed.load(Ordering::SeqCst) {
                ""
            } else {
                " (NOT sealed)"
            },
            cpu,
            cpu / (mib as f64 / 1024.0),
            chunks,
            stored_bytes as f64 / (1 << 20) as f64,
        );
        uploader.abort();
        let (format_and_hash, hash_only, formatted) = floor(&floor_block, packet, total);
        let gib = mib as f64 / 1024.0;
        println!(
            "  without I/O, one thread: formatting + SHA-256 {:.2} s/GiB, of which SHA-256 alone {:.2} s/GiB \
             ({:.1} MiB of event lines)",
            format_and_hash / gib,
            hash_only / gib,
            formatted as f64 / (1 << 20) as f64,
        );
        let _ = std::process::Command::new("chattr")
            .arg("-R")
            .arg("-i")
            .arg(&root)
            .stderr(std::process::Stdio::null())
            .status();
    });
}
