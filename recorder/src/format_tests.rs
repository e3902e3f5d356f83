#[test]
fn control_heavy_text_goes_as_base64_and_reads_back_the_same() {
    let zeros = "\0".repeat(64);
    let (d, b) = piece_fields(Piece::Text(zeros.clone()));
    assert!(d.is_none() && b.is_some());
    assert_eq!(event_bytes(&d, &b), zeros.as_bytes());
    let text = "ls -l\r\n\u{1b}[1mbold\u{1b}[0m\ttab\n".to_string();
    let (d, b) = piece_fields(Piece::Text(text.clone()));
    assert_eq!((d.as_deref(), b), (Some(text.as_str()), None));
}

use super::*;

#[test]
fn data_lines_are_written_exactly_as_their_events_serialise() {
    let pieces = [
        Piece::Text("ls -l\r\n\u{1b}[1mbold\u{1b}[0m \"q\" \\ é€\n".into()),
        Piece::Text("\0".repeat(100)),
        Piece::Text(String::new()),
        Piece::Bytes(vec![0xff, 0, 1, 2, 3]),
        Piece::Bytes(vec![]),
    ];
    for t in [0.0, 1.5, 0.000001, 12345.678901, 1e-7] {
        for piece in &pieces {
            for (input, err) in [(false, false), (false, true), (true, false)] {
                let (d, b64) = piece_fields(piece.clone());
                let kind = if input {
                    EventKind::Input { d, b64 }
                } else {
                    EventKind::Output { d, b64, err }
                };
                let want = Event { t, ch: 3, kind }.to_line();
                let mut got = Vec::new();
                write_data_line(&mut got, t, 3, input, err, piece);
                assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&want));
            }
        }
    }
}

/// A repeatable pseudo-random sequence for the property tests.
fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// The one-pass writer decides text or base64 as `piece_fields` does,
/// around the one-in-eight threshold, for every mix of plain bytes,
/// costly controls, short escapes, DEL and multi-byte characters, at
/// every alignment of the 16-byte SIMD scan and its 8-byte tail.
#[test]
fn random_mixes_are_written_as_their_events_serialise() {
    let alphabet = [
        "a", "Z", " ", "\0", "\x01", "\x7f", "\n", "\r", "\t", "\x1b", "\"", "\\", "é", "€", "😀",
    ];
    let mut next = xorshift(0x2545_f491_4f6c_dd1d);
    for case in 0..4000 {
        let len = (next() % 200) as usize;
        // Plain most of the time, so that many cases sit near the threshold.
        let plain_share = next() % 100;
        let s: String = (0..len)
            .map(|_| {
                if next() % 100 < plain_share {
                    alphabet[(next() % 3) as usize]
                } else {
                    alphabet[(next() % alphabet.len() as u64) as usize]
                }
            })
            .collect();
        let piece = Piece::Text(s);
        let (d, b64) = piece_fields(piece.clone());
        let want = Event {
            t: 1.25,
            ch: 0,
            kind: EventKind::Output { d, b64, err: false },
        }
        .to_line();
        let mut got = b"prefix".to_vec();
        write_data_line(&mut got, 1.25, 0, false, false, &piece);
        assert_eq!(&got[6..], &want[..], "case {case}: {piece:?}");
    }
}

/// Streams of text, broken characters and binary, cut into pushes at
/// random places: the pieces joined (and what `finish` gives back) are
/// the stream, pieces alternate kinds, and a multi-byte character cut
/// between pushes comes out whole.
#[test]
fn pushes_cut_anywhere_lose_nothing() {
    let parts: [&[u8]; 7] = [
        b"plain ",
        "é€😀".as_bytes(),
        b"\xff",
        b"\xe2\x82",
        b"\r\n",
        b"\x1b[0m",
        b"\x80\x80",
    ];
    let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
    for case in 0..2000 {
        let stream: Vec<u8> = (0..next() % 120)
            .flat_map(|_| parts[(next() % parts.len() as u64) as usize].to_vec())
            .collect();
        let mut carry = Utf8Carry::default();
        let mut got: Vec<Piece> = Vec::new();
        let mut at = 0;
        while at < stream.len() {
            let to = (at + 1 + (next() % 40) as usize).min(stream.len());
            let mut pushed = Vec::new();
            carry.push_each(&stream[at..to], |p| pushed.push(p.to_owned()));
            for w in pushed.windows(2) {
                assert_ne!(
                    std::mem::discriminant(&w[0]),
                    std::mem::discriminant(&w[1]),
                    "case {case}"
                );
            }
            got.extend(pushed);
            at = to;
        }
        got.extend(carry.finish());
        assert_eq!(join(&got), stream, "case {case}");
        if std::str::from_utf8(&stream).is_ok() {
            assert!(got.iter().all(|p| matches!(p, Piece::Text(_))), "case {case}: {got:?}");
        }
    }
}

#[test]
fn the_simd_scan_finds_what_the_scalar_one_finds() {
    for b in 0..=255u8 {
        for at in 0..48 {
            let mut s = vec![b'a'; 48];
            s[at] = b;
            for from in [0, 1, at.saturating_sub(3), at, at + 1] {
                assert_eq!(
                    next_special(&s, from),
                    next_special_scalar(&s, from),
                    "byte {b:#x} at {at} from {from}"
                );
            }
        }
    }
}

#[test]
fn strings_are_escaped_as_serde_json_escapes_them() {
    let mut all: String = (0u8..0x80).map(char::from).collect();
    all.push_str("é€😀 plain text long enough for whole words \"q\" \\ end\u{7f}");
    let mut cases = vec![all.clone(), String::new(), "x".into(), "\n".repeat(17)];
    for cut in 0..all.len() {
        if all.is_char_boundary(cut) {
            cases.push(all[cut..].to_string());
        }
    }
    for s in cases {
        let mut got = Vec::new();
        write_json_str(&mut got, &s);
        assert_eq!(got, serde_json::to_vec(&s).unwrap(), "{s:?}");
        let slow = s.bytes().filter(|b| costly(*b)).count() * 8 > s.len();
        assert_eq!(escape_heavy(&s), slow, "{s:?}");
    }
}

#[test]
fn binary_output_is_kept_whole_as_bytes() {
    let mut x: u32 = 12345;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect();
    let mut c = Utf8Carry::default();
    let mut pieces = c.push(&random);
    assert_eq!(pieces, vec![Piece::Bytes(random.clone())]);
    pieces.extend(c.finish());
    assert_eq!(join(&pieces), random);
    // Text with a few stray bytes stays text.
    let mut latin = b"un caf\xe9 au lait, deux th\xe9s, trois cr\xeapes; ".repeat(20);
    latin.extend_from_slice("naïve\n".as_bytes());
    let pieces = c.push(&latin);
    assert!(pieces.len() > 3 && matches!(pieces[0], Piece::Text(_)));
    assert_eq!(join(&pieces), latin);
}

fn join(pieces: &[Piece]) -> Vec<u8> {
    pieces
        .iter()
        .flat_map(|p| match p {
            Piece::Text(t) => t.as_bytes().to_vec(),
            Piece::Bytes(b) => b.clone(),
        })
        .collect()
}

#[test]
fn a_character_split_between_pushes_is_carried_whole() {
    let s = "héllo €";
    let bytes = s.as_bytes();
    let mut c = Utf8Carry::default();
    // Cut inside the 3-byte euro sign.
    let cut = bytes.len() - 2;
    let a = c.push(&bytes[..cut]);
    let b = c.push(&bytes[cut..]);
    assert_eq!(a, vec![Piece::Text("héllo ".into())]);
    assert_eq!(b, vec![Piece::Text("€".into())]);
    assert_eq!(c.finish(), None);
}

#[test]
fn invalid_bytes_are_kept_as_bytes_in_order() {
    let input = b"ok\xff\xfe then \xe2\x82";
    let mut c = Utf8Carry::default();
    let mut pieces = c.push(input);
    assert_eq!(pieces[0], Piece::Text("ok".into()));
    assert_eq!(pieces[1], Piece::Bytes(vec![0xff, 0xfe]));
    assert_eq!(pieces[2], Piece::Text(" then ".into()));
    pieces.extend(c.finish());
    assert_eq!(join(&pieces), input.to_vec());
}

#[test]
fn events_round_trip_through_their_line() {
    let e = Event {
        t: 1.5,
        ch: 2,
        kind: EventKind::File(FileOp {
            op: "write".into(),
            path: "/tmp/x".into(),
            to: None,
            bytes: Some(10),
            dir: Some(FileDir::Up),
            ok: None,
        }),
    };
    let line = e.to_line();
    assert!(
        line.starts_with(br#"{"t":1.5,"ch":2,"e":"file","op":"write""#),
        "{}",
        String::from_utf8_lossy(&line)
    );
    let back: Event = serde_json::from_slice(&line[..line.len() - 1]).unwrap();
    assert_eq!(back, e);
    let unknown: Event = serde_json::from_str(r#"{"t":1,"ch":0,"e":"future","x":1}"#).unwrap();
    assert_eq!(unknown.kind, EventKind::Unknown);
}

#[test]
fn chunk_names_parse_back() {
    assert_eq!(chunk_key("ab12", 3), "ab12/chunk-000003.jsonl");
    assert_eq!(parse_chunk_file_name("chunk-000003.jsonl"), Some(3));
    assert_eq!(parse_chunk_file_name("chunk-3.jsonl"), None);
    assert!(!valid_session_id("../x"));
    assert!(valid_session_id("0123abcd"));
}
