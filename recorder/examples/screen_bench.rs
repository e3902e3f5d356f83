//! What seeking in a long recording costs: one session of terminal-like output recorded
//! through a `RecordingSink` into a `WormDir`, then `screen::digest` over it (the one pass
//! the console caches) and `screen::window` from its start, middle and end (what opening and
//! seeking cost once the digest is cached).
//!
//! `screen_bench [MIB] [DIR]` (defaults: 256, a temp dir that is removed at the end). Build
//! with `--release`. Also prints, for the same output in memory, the sanitizer's and avt's
//! share of the digest.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use recorder::manifest::Manifest;
use recorder::store::worm::WormDir;
use recorder::store::{Retention, Store, StoreError};
use recorder::{
    ChannelEvent, ChannelKind, Direction, RecorderConfig, RecordingSink, SessionMeta, Sink, format, screen,
};

/// A shell session's worth of output, about `len` bytes: coloured `ls`-like lines, log lines,
/// a prompt now and then, and full-screen redraws (a `top` frame) between them.
fn terminal_output(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut out = Vec::with_capacity(len + 4096);
    let mut i = 0u64;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        i += 1;
        let line = match x % 50 {
            0 => "\x1b[01;32malice@node-1\x1b[00m:\x1b[01;34m~\x1b[00m$ ".to_owned(),
            1 => {
                let mut frame = String::from("\x1b[H\x1b[2J");
                for row in 1..=24 {
                    frame.push_str(&format!(
                        "\x1b[{row};1H\x1b[7m{:5}\x1b[27m root 20 0 {:x} S 0.{} 1:{:02}.{:02} worker",
                        x % 99999,
                        x >> 20,
                        row,
                        i % 60,
                        row
                    ));
                }
                frame
            }
            2..=9 => format!("\x1b[01;34mdir-{i}\x1b[0m  \x1b[01;32mrun-{x:x}.sh\x1b[0m  notes-{i}.txt\r\n"),
            _ => format!(
                "2026-01-01T00:00:{:02}Z INFO request {i} served in {} ms from 10.0.{}.{}\r\n",
                i % 60,
                x % 900,
                x % 255,
                (x >> 8) % 255
            ),
        };
        out.extend_from_slice(line.as_bytes());
    }
    out
}

/// Counts the objects read, to show how little a window reads.
struct Counting {
    inner: Arc<WormDir>,
    gets: AtomicU64,
}

#[async_trait::async_trait]
impl Store for Counting {
    async fn put(&self, key: &str, bytes: Bytes, sha256: [u8; 32]) -> Result<(), StoreError> {
        self.inner.put(key, bytes, sha256).await
    }
    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn retention(&self, key: &str) -> Result<Retention, StoreError> {
        self.inner.retention(key).await
    }
    async fn check(&self) -> Result<(), StoreError> {
        self.inner.check().await
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

async fn record(root: &std::path::Path, block: &Bytes, total: usize) -> (Arc<WormDir>, Manifest) {
    let store = Arc::new(WormDir::new(root.join("store")).expect("store"));
    let config = RecorderConfig::new(root.join("spool"), SigningKey::from_bytes(&[7; 32]), "bench");
    let (sink, _) = RecordingSink::open(config, store.clone()).expect("sink");
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let uploader = sink.spawn_uploader(rx);
    let meta = SessionMeta {
        session_id: "screenbench".into(),
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
    let tap = sink.start(&meta).expect("start");
    let ch = tap.channel(ChannelKind::Session).await.expect("channel");
    let pty = ChannelEvent::Pty {
        term: "xterm-256color".into(),
        cols: 120,
        rows: 40,
    };
    ch.record(pty).await.expect("pty");
    ch.record(ChannelEvent::Shell).await.expect("shell");
    const PACKET: usize = 32 << 10;
    let mut sent = 0;
    while sent < total {
        let off = sent % (block.len() - PACKET);
        let n = PACKET.min(total - sent);
        let data = block.slice(off..off + n);
        ch.record(ChannelEvent::data(Direction::Output, false, data))
            .await
            .expect("record");
        sent += n;
    }
    ch.record(ChannelEvent::Close).await.expect("close");
    drop((ch, tap));
    sink.drained().await;
    let key = format::manifest_key("screenbench");
    let manifest = loop {
        if let Ok(bytes) = store.get(&key).await {
            break serde_json::from_slice(&bytes).expect("manifest");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    uploader.abort();
    (store, manifest)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mib: usize = args.get(1).map(|s| s.parse().expect("MIB")).unwrap_or(256);
    let temp = tempfile::tempdir().expect("temp dir");
    let root = args
        .get(2)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| temp.path().to_path_buf());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // Multi-byte packets may cut a character: the recorder carries it to the next one.
    let block = Bytes::from(terminal_output(8 << 20));
    rt.block_on(async {
        let t0 = Instant::now();
        let (worm, manifest) = record(&root, &block, mib << 20).await;
        let stored: u64 = manifest.chunks.iter().map(|c| c.size).sum();
        println!(
            "recorded {mib} MiB of output in {:.1} s: {} chunks, {:.0} MiB stored",
            t0.elapsed().as_secs_f64(),
            manifest.chunks.len(),
            stored as f64 / (1 << 20) as f64
        );
        let store = Counting { inner: worm, gets: AtomicU64::new(0) };

        let t0 = Instant::now();
        let d = screen::digest(&store, "screenbench", &manifest).await.expect("digest");
        let took = t0.elapsed().as_secs_f64();
        let json = serde_json::to_vec(&d).expect("json");
        let ch = &d.channels[0];
        println!(
            "digest: {took:.2} s ({:.1} s/GiB, {:.0} MiB/s of output); {} keyframes, {} problems, JSON {:.1} MiB",
            took / (mib as f64 / 1024.0),
            mib as f64 / took,
            ch.keyframes.len(),
            d.problems.len(),
            json.len() as f64 / (1 << 20) as f64
        );
        let t0 = Instant::now();
        let back: screen::Digest = serde_json::from_slice(&json).expect("parse");
        println!("digest from its JSON: {:.1} ms", t0.elapsed().as_secs_f64() * 1e3);
        let ch = &back.channels[0];

        for (name, from) in [("start", 0.0), ("middle", ch.duration / 2.0), ("end", ch.duration * 0.999)] {
            store.gets.store(0, Ordering::Relaxed);
            let t0 = Instant::now();
            let w = screen::window(&store, "screenbench", &manifest, ch, from, 256 << 10).await.expect("window");
            println!(
                "window from the {name} ({from:.3} s), 256 KiB of output: {:.1} ms, {} chunks read, cast {:.0} KiB, next {:?}",
                t0.elapsed().as_secs_f64() * 1e3,
                store.gets.load(Ordering::Relaxed),
                w.cast.len() as f64 / 1024.0,
                w.next.map(|n| (n * 1e3).round() / 1e3)
            );
        }
    });

    // The same output in memory, no JSON, no store: the sanitizer alone, then avt alone.
    let text = String::from_utf8_lossy(&block).into_owned();
    let rounds = (mib << 20).div_ceil(text.len());
    let t0 = Instant::now();
    let mut state = recorder::replay::SanitizerState::default();
    let mut clean = String::new();
    for _ in 0..rounds {
        clean.clear();
        recorder::replay::sanitize_into(&text, &mut state, &mut clean);
    }
    let sanitize = t0.elapsed().as_secs_f64();
    let mut term = avt::Terminal::new(120, 40).expect("terminal");
    let t0 = Instant::now();
    for _ in 0..rounds {
        term.feed(clean.as_str());
    }
    let feed = t0.elapsed().as_secs_f64();
    let gib = (rounds * text.len()) as f64 / (1u64 << 30) as f64;
    println!(
        "in memory: sanitize {:.2} s/GiB, avt feed {:.2} s/GiB",
        sanitize / gib,
        feed / gib
    );
    let _ = std::process::Command::new("chattr")
        .arg("-R")
        .arg("-i")
        .arg(&root)
        .stderr(std::process::Stdio::null())
        .status();
}
