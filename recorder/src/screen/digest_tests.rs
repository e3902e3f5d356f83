use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::format::{self, ChunkHeader, ZERO_HASH};
use crate::screen::parse::parse_line;
use crate::screen::testkit::{SESSION, Step, Watched, busy_output, record};

/// About `mib` MiB of busy output in 32 KiB writes.
fn output_steps(mib: usize) -> Vec<Step> {
    let block = busy_output(7, 40_000);
    let mut steps = Vec::new();
    let mut sent = 0;
    while sent < mib << 20 {
        let at = sent % (block.len() - (32 << 10));
        // Cut on a line end, so no write splits a character or a sequence.
        let end = at + block[at..at + (32 << 10)].iter().rposition(|b| *b == b'\n').unwrap() + 1;
        steps.push(Step::Out(block[at..end].to_vec()));
        sent += end - at;
    }
    steps
}

#[tokio::test(flavor = "multi_thread")]
async fn keyframes_land_every_two_mib_of_output() {
    let steps = output_steps(9);
    let sent: usize = steps
        .iter()
        .map(|s| if let Step::Out(b) = s { b.len() } else { 0 })
        .sum();
    let rec = record(Some((100, 30)), false, 1 << 20, &steps).await;
    let d = digest(&*rec.store, SESSION, &rec.manifest).await.unwrap();
    assert!(d.problems.is_empty(), "{:?}", d.problems);
    assert_eq!(d.channels.len(), 1);
    let ch = &d.channels[0];
    assert_eq!((ch.channel, ch.width, ch.height, ch.pty), (0, 100, 30, true));
    assert_eq!(ch.output_bytes, sent as u64);
    assert!(!ch.input_recorded);
    let kfs = &ch.keyframes;
    assert_eq!(kfs[0].output, 0);
    assert_eq!(
        kfs.len() as u64,
        1 + (sent as u64 - 1) / KEYFRAME_BYTES,
        "{} keyframes",
        kfs.len()
    );
    for pair in kfs.windows(2) {
        let step = pair[1].output - pair[0].output;
        // The output of one merged event (at most 64 KiB) may go past the mark.
        assert!((KEYFRAME_BYTES..KEYFRAME_BYTES + (64 << 10)).contains(&step), "{step}");
        assert!(pair[0].t <= pair[1].t && (pair[0].chunk, pair[0].line) < (pair[1].chunk, pair[1].line));
    }
    for k in kfs {
        assert_eq!((k.width, k.height), (100, 30));
        assert!(k.output == 0 || !k.screen.is_empty());
        // Each keyframe points at an output line of its channel, at its time.
        let key = &rec.manifest.chunks[k.chunk as usize].key;
        let bytes = rec.store.get(key).await.unwrap();
        let line = bytes.split(|b| *b == b'\n').nth(k.line as usize - 1).unwrap();
        let Ok(crate::screen::parse::Line::Data { t, ch: 0, .. }) = parse_line(line) else {
            panic!("keyframe at {}:{} is not on a screen event", k.chunk, k.line)
        };
        assert!(t <= k.t);
    }
    assert!(ch.duration >= kfs.last().unwrap().t);
    let back: Digest = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
    assert_eq!(back, d);
}

#[tokio::test(flavor = "multi_thread")]
async fn sizes_input_and_the_timeline_are_indexed() {
    let steps = [
        Step::Out(b"$ ".to_vec()),
        Step::In(b"ls\r".to_vec()),
        Step::Resize(120, 40),
        Step::Out(b"a b c\r\n".to_vec()),
    ];
    let rec = record(None, true, 1 << 20, &steps).await;
    let d = digest(&*rec.store, SESSION, &rec.manifest).await.unwrap();
    let ch = &d.channels[0];
    assert_eq!((ch.width, ch.height, ch.pty, ch.input_recorded), (120, 40, false, true));
    assert_eq!(ch.output_bytes, 9);
    assert_eq!(ch.keyframes.len(), 1);
    let kinds: Vec<&str> = d
        .timeline
        .iter()
        .map(|e| match e.kind {
            EventKind::Open { .. } => "open",
            EventKind::Shell {} => "shell",
            EventKind::Exit { .. } => "exit",
            EventKind::Close { .. } => "close",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["open", "shell", "exit", "close"]);
    assert!(!d.timeline_truncated);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_chunk_is_a_problem_and_the_rest_is_indexed() {
    let rec = record(Some((80, 24)), false, 256 << 10, &output_steps(2)).await;
    assert!(rec.manifest.chunks.len() >= 4);
    let (bad_header, bad_line) = (&rec.manifest.chunks[1], &rec.manifest.chunks[2]);
    let mut store = Watched::new(rec.store.clone());
    store.damaged = Some((bad_header.key.clone(), Bytes::from_static(b"\x00garbage\n{\"t\":1}\n")));
    let d = digest(&store, SESSION, &rec.manifest).await.unwrap();
    assert_eq!(d.problems.len(), 1, "{:?}", d.problems);
    assert!(
        d.problems[0].starts_with("chunk 1: the chunk header is not readable"),
        "{:?}",
        d.problems
    );
    let whole = digest(&*rec.store, SESSION, &rec.manifest).await.unwrap();
    assert!(d.channels[0].output_bytes < whole.channels[0].output_bytes);
    assert!(d.channels[0].output_bytes > 0);

    // One torn line in the middle of another chunk: that line, and nothing else.
    let bytes = rec.store.get(&bad_line.key).await.unwrap();
    let cut = bytes.iter().position(|b| *b == b'\n').unwrap() + 20;
    let mut torn = bytes[..cut].to_vec();
    torn.push(b'\n');
    torn.extend_from_slice(&bytes[cut..]);
    store.damaged = Some((bad_line.key.clone(), Bytes::from(torn)));
    let d = digest(&store, SESSION, &rec.manifest).await.unwrap();
    assert_eq!(d.problems.len(), 2, "{:?}", d.problems);
    assert!(
        d.problems
            .iter()
            .all(|p| p.starts_with(&format!("chunk {} line ", bad_line.seq)))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_chunk_is_a_problem() {
    let rec = record(Some((80, 24)), false, 1 << 20, &[Step::Out(b"x".to_vec())]).await;
    let mut manifest = rec.manifest.clone();
    let mut gone = manifest.chunks[0].clone();
    gone.key = format::chunk_key(SESSION, 99);
    manifest.chunks.insert(0, gone);
    let store: Arc<dyn Store> = rec.store.clone();
    let d = digest(&*store, SESSION, &manifest).await.unwrap();
    assert!(d.problems[0].contains("is not in the store"), "{:?}", d.problems);
    // The rest still read; keyframes count chunks as the manifest lists them.
    assert_eq!(d.channels[0].keyframes[0].chunk, 1);
}

/// A chunk written by hand: header, then `events`.
fn chunk(seq: u64, events: &[Event]) -> Vec<u8> {
    let header = ChunkHeader {
        session: SESSION.into(),
        seq,
        prev: ZERO_HASH.into(),
    };
    let mut out = serde_json::to_vec(&header).unwrap();
    out.push(b'\n');
    for e in events {
        out.extend(e.to_line());
    }
    out
}

#[test]
fn the_timeline_is_capped() {
    let marker = |i: usize| Event {
        t: i as f64,
        ch: 0,
        kind: EventKind::Marker { d: format!("m{i}") },
    };
    let events: Vec<Event> = (0..TIMELINE_MAX + 5).map(marker).collect();
    let mut pass = Digester::new(SESSION);
    pass.chunk(0, 0, &chunk(0, &events));
    let d = pass.finish();
    assert_eq!(d.timeline.len(), TIMELINE_MAX);
    assert!(d.timeline_truncated);
    assert_eq!(d.timeline.last(), Some(&marker(TIMELINE_MAX - 1)));
    // Markers only: no channel had output.
    assert!(d.channels.is_empty());
}

#[test]
fn no_keyframe_is_taken_inside_an_escape_sequence() {
    let out = |t: f64, d: &str| Event {
        t,
        ch: 3,
        kind: EventKind::Output {
            d: Some(d.into()),
            b64: None,
            err: false,
        },
    };
    // A colour split between two events, right where a keyframe is due.
    let big = "x".repeat(KEYFRAME_BYTES as usize) + "\x1b[3";
    let events = [out(0.5, &big), out(2.0, "1mred"), out(3.0, "!")];
    let mut pass = Digester::new(SESSION);
    pass.chunk(0, 0, &chunk(0, &events));
    let d = pass.finish();
    let kfs = &d.channels[0].keyframes;
    assert_eq!(kfs.len(), 2);
    // Not at the event that ends the sequence either: the sanitizer is mid-way before it.
    assert_eq!((kfs[1].t, kfs[1].line), (3.0, 4));
    assert!(kfs[1].screen.contains("red"), "{:?}", kfs[1].screen);
}
