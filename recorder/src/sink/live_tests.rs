//! The live feed and followers with the real [`RecordingSink`] in a temp
//! WORM directory, sessions driven through `SessionTap`/`ChannelTap` as the
//! proxy drives them: what a follower yields is compared, line for line, with
//! the chunk files of the sealed recording.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use tokio::sync::{broadcast, watch};

use super::super::{RecorderConfig, RecordingSink};
use crate::format;
use crate::manifest::Manifest;
use crate::read;
use crate::sink::{Backlog, FollowError, Follower, LiveBatch, Watch, recorded_lines};
use crate::store::worm::WormDir;
use crate::store::{Retention, Store, StoreError};
use crate::tap::{ChannelEvent, ChannelKind, ChannelTap, Direction, SessionMeta, Sink};

/// A temp dir whose files may carry the immutable attribute: cleared on drop.
struct Temp(tempfile::TempDir);

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-R")
            .arg("-i")
            .arg(self.0.path())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// A WORM directory that copies instead of linking (as S3 does): uploaded
/// chunk files become spares, emptied and reused as later `current.jsonl`.
struct Copying(Arc<WormDir>);

#[async_trait::async_trait]
impl Store for Copying {
    async fn put(&self, key: &str, bytes: Bytes, sha256: [u8; 32]) -> Result<(), StoreError> {
        self.0.put(key, bytes, sha256).await
    }
    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        self.0.get(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.0.list(prefix).await
    }
    async fn retention(&self, key: &str) -> Result<Retention, StoreError> {
        self.0.retention(key).await
    }
    async fn check(&self) -> Result<(), StoreError> {
        self.0.check().await
    }
    fn describe(&self) -> String {
        "copying".into()
    }
}

struct Rig {
    sink: Arc<RecordingSink>,
    store: Arc<dyn Store>,
    temp: Temp,
    _stop: watch::Sender<bool>,
}

fn rig(chunk_bytes: u64, copying: bool) -> Rig {
    let temp = Temp(tempfile::tempdir().unwrap());
    let worm = Arc::new(WormDir::new(temp.0.path().join("store")).unwrap());
    let store: Arc<dyn Store> = if copying { Arc::new(Copying(worm)) } else { worm };
    let mut c = RecorderConfig::new(temp.0.path().join("spool"), SigningKey::from_bytes(&[7; 32]), "t");
    c.chunk_bytes = chunk_bytes;
    c.flush_bytes = chunk_bytes.min(16 << 10);
    c.chunk_interval = Duration::from_secs(60);
    c.retry_initial = Duration::from_millis(5);
    c.retry_max = Duration::from_millis(50);
    let (sink, report) = RecordingSink::open(c, store.clone()).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let (stop, rx) = watch::channel(false);
    drop(sink.spawn_uploader(rx));
    Rig {
        sink,
        store,
        temp,
        _stop: stop,
    }
}

fn meta(id: &str) -> SessionMeta {
    SessionMeta {
        session_id: id.into(),
        user: "alice".into(),
        groups: vec!["ops".into()],
        client: "192.0.2.1:2222".into(),
        target: "node-1".into(),
        login: "root".into(),
        factors: vec!["publickey".into()],
        started: SystemTime::now(),
        record_input: true,
        break_glass: None,
    }
}

/// Event `i` of a session: stdout and stderr in turn (so each is a line of
/// its own), now and then a resize; `size` bytes of output with escapes,
/// UTF-8 and a byte that is not.
fn event(i: usize, size: usize) -> ChannelEvent {
    if i.is_multiple_of(97) {
        return ChannelEvent::Resize {
            cols: 80 + (i % 50) as u32,
            rows: 24,
        };
    }
    let mut d = format!("\x1b[1mline {i}\x1b[0m é\t\"q\"\r\n").into_bytes();
    if i.is_multiple_of(13) {
        d.push(0xff);
    }
    while d.len() < size {
        d.extend_from_slice(b"abcdefghijklmnopqrstuvwxyz");
    }
    ChannelEvent::data(Direction::Output, !i.is_multiple_of(2), Bytes::from(d))
}

async fn open_channel(rig: &Rig, id: &str) -> ChannelTap {
    let tap = rig.sink.start(&meta(id)).unwrap();
    tap.channel(ChannelKind::Session).await.unwrap()
}

async fn send(ch: &ChannelTap, range: std::ops::Range<usize>, size: usize) {
    for i in range {
        ch.record(event(i, size)).await.unwrap();
    }
}

/// The event lines of the sealed recording, read from its chunk objects.
async fn recording(store: &dyn Store, id: &str) -> Vec<String> {
    let key = format::manifest_key(id);
    let deadline = Instant::now() + Duration::from_secs(60);
    let m: Manifest = loop {
        if let Ok(b) = store.get(&key).await {
            break serde_json::from_slice(&b).unwrap();
        }
        assert!(Instant::now() < deadline, "no manifest for {id}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let mut lines = Vec::new();
    for c in &m.chunks {
        let bytes = store.get(&c.key).await.unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        lines.extend(text.lines().skip(1).map(str::to_owned));
    }
    let rec = read::load(store, id).await.unwrap();
    assert!(rec.problems.is_empty(), "{:?}", rec.problems);
    assert_eq!(rec.events.len(), lines.len());
    lines
}

/// Every line a follower yields until `None`.
async fn collect(mut f: Follower) -> (Vec<String>, u64) {
    let mut lines = Vec::new();
    let all = async {
        while let Some(line) = f.next().await {
            lines.push(line.unwrap());
        }
    };
    tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("the follower ends");
    (lines, f.resyncs())
}

fn same(what: &str, got: &[String], want: &[String]) {
    assert_eq!(got.len(), want.len(), "{what}: line count");
    if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
        panic!("{what}: line {i} differs:\n got {}\nwant {}", got[i], want[i]);
    }
}

/// Followers joining all along a session that seals a chunk every few KiB
/// (so some join while a seal runs and the next chunk waits in memory), and
/// one after the first chunk left the spool for the store, each get exactly
/// the recording's lines; with a store that links the chunk files and one
/// that copies them (its uploaded files emptied and reused).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn followers_joining_anywhere_get_exactly_the_recording() {
    for (copying, id) in [(false, "live-join-link"), (true, "live-join-copy")] {
        let rig = rig(4096, copying);
        let ch = open_channel(&rig, id).await;
        let mut followers = Vec::new();
        send(&ch, 0..50, 300).await;
        let dir = rig.temp.0.path().join("spool").join(id);
        let key = format::chunk_key(id, 0);
        let gone = Instant::now() + Duration::from_secs(20);
        while rig.store.get(&key).await.is_err() || dir.join(format::chunk_file_name(0)).exists() {
            assert!(Instant::now() < gone, "chunk 0 uploaded and out of the spool");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for round in 0..30 {
            let f = rig.sink.follow(id).expect("running");
            followers.push(tokio::spawn(collect(f)));
            let from = 50 + round * 100;
            send(&ch, from..from + 100, 100 + round * 20).await;
        }
        ch.record(ChannelEvent::Close).await.unwrap();
        drop(ch);
        let want = recording(rig.store.as_ref(), id).await;
        assert!(want.len() > 3000, "{} lines", want.len());
        for (n, f) in followers.into_iter().enumerate() {
            let (got, _) = f.await.unwrap();
            same(&format!("{id} follower {n}"), &got, &want);
        }
        assert!(rig.sink.follow(id).is_none(), "an ended session has no feed");
        let spool = rig.temp.0.path().join("spool");
        let back = recorded_lines(rig.store.clone(), &spool, id, want.len() as u64).await;
        same("recorded_lines", &back.unwrap(), &want);
    }
}

/// A watcher that never reads does not hold the session: 20k events are
/// recorded to the end while it sits. Afterwards it still yields every line
/// once, having caught up from the files what the feed dropped for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_follower_never_slows_the_session_and_still_gets_every_line() {
    let rig = rig(256 << 10, false);
    let id = "live-stalled";
    let ch = open_channel(&rig, id).await;
    send(&ch, 0..10, 2048).await;
    let stalled = rig.sink.follow(id).expect("running");
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(60), async {
        send(&ch, 10..20_010, 2048).await;
        ch.record(ChannelEvent::Close).await.unwrap();
    })
    .await
    .expect("the session is never held by its watcher");
    drop(ch);
    let want = recording(rig.store.as_ref(), id).await;
    let took = started.elapsed();
    assert!(want.len() > 20_000, "{} lines", want.len());
    let (got, resyncs) = collect(stalled).await;
    same("stalled follower", &got, &want);
    assert!(resyncs >= 1, "the feed dropped batches for it ({took:?})");
}

/// Three followers at once get the same lines, the recording's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_followers_get_the_same_lines() {
    let rig = rig(16 << 10, false);
    let id = "live-three";
    let ch = open_channel(&rig, id).await;
    send(&ch, 0..300, 200).await;
    let fs: Vec<_> = (0..3)
        .map(|_| tokio::spawn(collect(rig.sink.follow(id).unwrap())))
        .collect();
    send(&ch, 300..3000, 200).await;
    ch.record(ChannelEvent::Close).await.unwrap();
    drop(ch);
    let want = recording(rig.store.as_ref(), id).await;
    for (n, f) in fs.into_iter().enumerate() {
        let (got, _) = f.await.unwrap();
        same(&format!("follower {n}"), &got, &want);
    }
}

/// Nobody watching, nothing is serialised for the feed, while every line
/// is still numbered; once somebody watches, its lines are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwatched_session_never_serialises_live_lines() {
    let rig = rig(64 << 10, false);
    let id = "live-unwatched";
    let ch = open_channel(&rig, id).await;
    send(&ch, 0..2000, 100).await;
    let lines = rig.temp.0.path().join("spool").join(id);
    let numbered = || rig.sink.shared.live.counts(id).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while numbered().1 < 2000 {
        assert!(
            Instant::now() < deadline,
            "{:?} numbered ({})",
            numbered(),
            lines.display()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(numbered().0, 0, "serialised with nobody watching");
    let f = rig.sink.follow(id).unwrap();
    send(&ch, 2000..2100, 100).await;
    let built = || numbered().0;
    while built() < 100 {
        assert!(Instant::now() < deadline, "watched lines serialised");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(f);
    ch.record(ChannelEvent::Close).await.unwrap();
}

/// A follower ends (`None`) when the session ends, right after its last
/// line, also one that joined with nothing recorded yet; and the end comes
/// once, with nothing after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_ends_after_the_last_line() {
    let rig = rig(8192, false);
    let id = "live-end";
    let tap = rig.sink.start(&meta(id)).unwrap();
    let mut early = rig.sink.follow(id).unwrap();
    let ch = tap.channel(ChannelKind::Session).await.unwrap();
    send(&ch, 0..40, 500).await;
    let first = early.next().await.unwrap().unwrap();
    assert!(first.contains(r#""e":"open""#), "{first}");
    ch.record(ChannelEvent::Close).await.unwrap();
    drop((ch, tap));
    let want = recording(rig.store.as_ref(), id).await;
    let (rest, _) = collect(early).await;
    let mut got = vec![first];
    got.extend(rest);
    same("early follower", &got, &want);
    assert!(want.last().unwrap().contains(r#""e":"close""#));
}

fn batch(seq: u64, lines: &[&str], end: bool) -> Arc<LiveBatch> {
    Arc::new(LiveBatch {
        seq,
        lines: lines.iter().map(|l| l.to_string()).collect(),
        end,
    })
}

/// A follower on a hand-fed channel: lines it already has are dropped, a
/// gap the feed did not excuse with `Lagged` is an error (and the last thing
/// it yields), and a feed that closes without its end batch is one too.
#[tokio::test]
async fn a_follower_drops_repeats_and_fails_loudly_on_gaps_and_cuts() {
    let temp = Temp(tempfile::tempdir().unwrap());
    let store: Arc<dyn Store> = Arc::new(WormDir::new(temp.0.path().join("store")).unwrap());
    let follower = |rx| {
        Follower::new(
            Watch { from_seq: 0, rx },
            Backlog::new(store.clone(), temp.0.path(), "s"),
        )
    };

    let (tx, rx) = broadcast::channel(8);
    let mut f = follower(rx);
    tx.send(batch(0, &["a", "b"], false)).unwrap();
    tx.send(batch(1, &["b", "c"], false)).unwrap();
    tx.send(batch(5, &["f"], false)).unwrap();
    for want in ["a", "b", "c"] {
        assert_eq!(f.next().await.unwrap().unwrap(), want);
    }
    let err = f.next().await.unwrap().unwrap_err();
    assert!(matches!(err, FollowError::Gap { expected: 3, got: 5 }), "{err}");
    assert!(f.next().await.is_none());

    let (tx, rx) = broadcast::channel(8);
    let mut f = follower(rx);
    tx.send(batch(0, &["a"], false)).unwrap();
    drop(tx);
    assert_eq!(f.next().await.unwrap().unwrap(), "a");
    assert!(matches!(f.next().await, Some(Err(FollowError::Cut))));

    let (tx, rx) = broadcast::channel(8);
    let mut f = follower(rx);
    tx.send(batch(0, &["a"], false)).unwrap();
    tx.send(batch(1, &[], true)).unwrap();
    drop(tx);
    assert_eq!(f.next().await.unwrap().unwrap(), "a");
    assert!(
        f.next().await.is_none(),
        "the end batch ends it, not the closed channel"
    );
}
