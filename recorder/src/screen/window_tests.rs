use super::*;
use crate::cast_parse;
use crate::screen::digest::digest;
use crate::screen::testkit::{SESSION, Step, Watched, busy_output, full_replay, play, record, shown};

/// Busy output in 16 KiB writes with pauses (so times spread), resizes and keystrokes.
fn session_steps(writes: usize) -> Vec<Step> {
    let block = busy_output(11, 30_000);
    let mut steps = Vec::new();
    let mut at = 0;
    for i in 0..writes {
        let end = at + block[at..at + (16 << 10)].iter().rposition(|b| *b == b'\n').unwrap() + 1;
        steps.push(Step::Out(block[at..end].to_vec()));
        at = if end + (32 << 10) > block.len() { 0 } else { end };
        if i % 40 == 0 {
            steps.push(Step::Pause(2));
            steps.push(Step::In(format!("key {i}\r").into_bytes()));
        }
        if i % 97 == 50 {
            steps.push(Step::Resize(90 + (i % 3) as u32 * 10, 20 + (i % 5) as u32));
        }
    }
    steps
}

/// The times of a window's events (after its `from`).
fn times(w: &Window) -> Vec<f64> {
    let parsed = cast_parse::parse(&w.cast).unwrap();
    parsed.events.iter().map(|e| e.time).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_window_from_the_middle_shows_what_the_full_replay_shows() {
    let rec = record(Some((100, 30)), true, 512 << 10, &session_steps(500)).await;
    let d = digest(&*rec.store, SESSION, &rec.manifest).await.unwrap();
    let index = &d.channels[0];
    assert!(index.keyframes.len() >= 3);
    let end = index.duration;
    // Keyframe times, times between events, and the start.
    let mut froms: Vec<f64> = index.keyframes.iter().map(|k| k.t).collect();
    froms.extend([0.0, end * 0.3, end * 0.55, end * 0.8, end * 0.97]);
    // (absolute time, window, time in it) for every check, then one reference pass.
    let mut checks = Vec::new();
    let mut windows = Vec::new();
    for from in froms {
        let w = window(&*rec.store, SESSION, &rec.manifest, index, from, 200 << 10)
            .await
            .unwrap();
        assert_eq!(w.from, from);
        let rel = times(&w);
        // At the start and at a few moments inside the window.
        for r in [0.0, rel[rel.len() / 3], rel[rel.len() / 2], *rel.last().unwrap()] {
            checks.push((crate::screen::parse::micros(from + r), windows.len(), r));
        }
        windows.push(w);
    }
    checks.sort_by(|a, b| a.0.total_cmp(&b.0));
    let at: Vec<f64> = checks.iter().map(|c| c.0).collect();
    let expected = full_replay(&*rec.store, 0, &at).await;
    for ((t, w, r), expected) in checks.into_iter().zip(expected) {
        let w = &windows[w];
        assert_eq!(shown(&play(&w.cast, r)), expected, "from {} at +{r} ({t})", w.from);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_window_reads_nothing_before_its_keyframe() {
    let rec = record(Some((80, 24)), false, 256 << 10, &session_steps(600)).await;
    let d = digest(&*rec.store, SESSION, &rec.manifest).await.unwrap();
    let index = &d.channels[0];
    let store = Watched::new(rec.store.clone());
    for k in &index.keyframes[1..] {
        store.gets.lock().unwrap().clear();
        let w = window(&store, SESSION, &rec.manifest, index, k.t + 1e-6, 64 << 10)
            .await
            .unwrap();
        assert!(w.next.is_none() || w.until < w.next.unwrap());
        let gets = store.gets.lock().unwrap().clone();
        let first = rec.manifest.chunks.iter().position(|c| c.key == gets[0]).unwrap();
        assert!(
            first >= k.chunk as usize,
            "read chunk {first} for a keyframe in chunk {}",
            k.chunk
        );
        // 64 KiB of output past a keyframe at most 2 MiB back: a few chunks, not all.
        assert!(gets.len() <= 16, "{} chunks read", gets.len());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn next_chains_through_the_channel_with_nothing_lost_or_repeated() {
    let mut steps = Vec::new();
    for i in 0..30_000 {
        steps.push(Step::Out(format!("L{i:06}\r\n").into_bytes()));
        if i % 500 == 0 {
            steps.push(Step::Pause(1));
            steps.push(Step::In(format!("k{i}").into_bytes()));
        }
    }
    let rec = record(Some((80, 24)), true, 64 << 10, &steps).await;
    let d = digest(&*rec.store, SESSION, &rec.manifest).await.unwrap();
    let index = &d.channels[0];
    let (mut lines, mut keys) = (Vec::new(), Vec::new());
    let mut from = 0.0;
    let mut windows = 0;
    loop {
        let w = window(&*rec.store, SESSION, &rec.manifest, index, from, 20 << 10)
            .await
            .unwrap();
        let parsed = cast_parse::parse(&w.cast).unwrap();
        // After the first window each opens with the screen so far; the rest is new.
        let skip = usize::from(windows > 0);
        for e in parsed.events.iter().skip(skip) {
            if e.kind == cast_parse::EventKind::Output {
                lines.extend(e.data.split("\r\n").filter(|l| !l.is_empty()).map(str::to_owned));
            }
        }
        keys.extend(w.input.iter().map(|(_, k)| k.clone()));
        windows += 1;
        match w.next {
            Some(next) => {
                assert!(w.until < next && next > from);
                from = next;
            }
            None => break,
        }
    }
    assert!(windows > 5, "{windows} windows");
    let expected: Vec<String> = (0..30_000).map(|i| format!("L{i:06}")).collect();
    assert!(
        lines == expected,
        "{} lines, first differences near {:?}",
        lines.len(),
        {
            let at = lines
                .iter()
                .zip(&expected)
                .position(|(a, b)| a != b)
                .unwrap_or(lines.len());
            lines.get(at.saturating_sub(1)..at + 2)
        }
    );
    let expected: Vec<String> = (0..30_000).step_by(500).map(|i| format!("k{i}")).collect();
    assert_eq!(keys, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_strings_come_out_as_valid_sanitized_json() {
    let hostile = "<script>alert(1)</script> \u{2028}\u{2029} \u{202e}rtl \x1b]52;c;c2VjcmV0\x07\
                   \x1b[6n\x1b]0;title\x1b\\\u{9b}31m\u{85}\x7f \x1b[32mgreen\x1b[0m\r\n";
    let steps = [
        Step::Out(hostile.as_bytes().to_vec()),
        Step::In(b"</script>\x1b[A\x03".to_vec()),
        Step::Out(vec![0xff, 0xfe, b'o', b'k']),
    ];
    let rec = record(Some((80, 24)), true, 1 << 20, &steps).await;
    let d = digest(&*rec.store, SESSION, &rec.manifest).await.unwrap();
    let w = window(&*rec.store, SESSION, &rec.manifest, &d.channels[0], 0.0, 1 << 20)
        .await
        .unwrap();
    for line in w.cast.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap();
    }
    // Nothing a terminal or an HTML parser acts on is written raw.
    assert!(!w.cast.contains([
        '<', '\x1b', '\u{2028}', '\u{2029}', '\u{202e}', '\u{9b}', '\u{85}', '\x7f'
    ]));
    let parsed = cast_parse::parse(&w.cast).unwrap();
    let output: String = parsed
        .events
        .iter()
        .filter(|e| e.kind == cast_parse::EventKind::Output)
        .map(|e| e.data.as_str())
        .collect();
    assert!(output.contains("<script>alert(1)</script> \u{2028}"), "{output:?}");
    assert!(output.contains("\x1b[32mgreen\x1b[0m") && output.contains("\u{fffd}\u{fffd}ok"));
    for removed in ["]52", "c2VjcmV0", "\x1b[6n", "title", "\u{9b}", "31m", "\u{85}"] {
        assert!(!output.contains(removed), "{removed:?} in {output:?}");
    }
    let input: Vec<_> = parsed
        .events
        .iter()
        .filter(|e| e.kind == cast_parse::EventKind::Input)
        .collect();
    assert_eq!(input.len(), 1);
    assert_eq!(input[0].data, "</script>\x1b[A\x03");
    assert_eq!(w.input.len(), 1);
    assert_eq!(w.input[0].1, "</script>\x1b[A\x03");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_window_past_the_end_is_the_last_screen() {
    let steps = [
        Step::Out(b"hello\r\n".to_vec()),
        Step::Resize(50, 10),
        Step::Out(b"bye".to_vec()),
    ];
    let rec = record(None, false, 1 << 20, &steps).await;
    let d = digest(&*rec.store, SESSION, &rec.manifest).await.unwrap();
    let index = &d.channels[0];
    let w = window(&*rec.store, SESSION, &rec.manifest, index, index.duration + 5.0, 1000)
        .await
        .unwrap();
    assert_eq!((w.next, w.until), (None, index.duration + 5.0));
    let term = play(&w.cast, 0.0);
    assert_eq!(term.size(), (50, 10));
    let text: Vec<String> = term.screen().text().iter().map(|l| l.trim_end().to_owned()).collect();
    assert_eq!(&text[..2], ["hello", "bye"]);
    // And a damaged chunk is reported, not fatal.
    let mut store = Watched::new(rec.store.clone());
    store.damaged = Some((rec.manifest.chunks[0].key.clone(), bytes::Bytes::from_static(b"junk\n")));
    let w = window(&store, SESSION, &rec.manifest, index, 0.0, 1000).await.unwrap();
    assert_eq!(w.problems.len(), 1, "{:?}", w.problems);
    assert!(w.cast.starts_with("{\"version\":2,"));
}
