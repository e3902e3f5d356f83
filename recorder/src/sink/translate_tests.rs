//! The translator without a disk: records in, the exact chunk lines out
//! (as the chunk writer writes them), and the channel summaries.

use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::format::{self, Event, EventKind};
use crate::tap::{ChannelEvent, ChannelKind, Direction, Record};

fn rec(ms: u64, channel: u32, event: ChannelEvent) -> Record {
    Record {
        channel,
        at: Duration::from_millis(ms),
        event,
    }
}

fn output(bytes: &[u8]) -> ChannelEvent {
    ChannelEvent::data(Direction::Output, false, Bytes::copy_from_slice(bytes))
}

fn stderr(bytes: &[u8]) -> ChannelEvent {
    ChannelEvent::data(Direction::Output, true, Bytes::copy_from_slice(bytes))
}

fn input(bytes: &[u8]) -> ChannelEvent {
    ChannelEvent::data(Direction::Input, false, Bytes::copy_from_slice(bytes))
}

/// Translates `records` as one batch (one list, as the session loop does).
fn batch(tr: &mut Translator, records: Vec<Record>) -> Vec<Out> {
    let mut out = Vec::new();
    for r in records {
        tr.translate(r, &mut out);
    }
    out
}

/// The chunk lines `outs` come to, byte for byte as the chunk writer appends them.
fn lines(outs: &[Out]) -> String {
    let mut buf = Vec::new();
    for o in outs {
        match o {
            Out::Event(e) => buf.extend_from_slice(&e.to_line()),
            Out::Data {
                t,
                ch,
                input,
                err,
                piece,
            } => format::write_data_line(&mut buf, *t, *ch, *input, *err, piece),
        }
    }
    String::from_utf8(buf).expect("lines are JSON text")
}

/// One batch's lines.
fn batch_lines(tr: &mut Translator, records: Vec<Record>) -> String {
    lines(&batch(tr, records))
}

/// The bytes of the `o` events (stdout, or stderr with `err`) of `text`, read back.
fn output_bytes(text: &str, want_err: bool) -> Vec<u8> {
    let mut bytes = Vec::new();
    for line in text.lines() {
        let e: Event = serde_json::from_str(line).expect("a line is an event");
        if let EventKind::Output { d, b64, err } = e.kind
            && err == want_err
        {
            bytes.extend(format::event_bytes(&d, &b64));
        }
    }
    bytes
}

#[test]
fn session_requests_become_their_lines_and_summary() {
    let mut tr = Translator::new(false);
    let got = batch_lines(
        &mut tr,
        vec![
            rec(0, 0, ChannelEvent::Open(ChannelKind::Session)),
            rec(
                1,
                0,
                ChannelEvent::Pty {
                    term: "xterm".into(),
                    cols: 80,
                    rows: 24,
                },
            ),
            rec(
                2,
                0,
                ChannelEvent::Env {
                    name: "LANG".into(),
                    value: "C".into(),
                },
            ),
            rec(3, 0, ChannelEvent::Shell),
            rec(250, 0, ChannelEvent::Resize { cols: 100, rows: 30 }),
            rec(1500, 0, ChannelEvent::Signal { name: "INT".into() }),
            rec(
                2000,
                0,
                ChannelEvent::Refused {
                    request: "x11-req".into(),
                    reason: "not allowed".into(),
                },
            ),
            rec(2500, 0, ChannelEvent::ExitStatus { status: 3 }),
            rec(3000, 0, ChannelEvent::Close),
        ],
    );
    let want = concat!(
        r#"{"t":0.0,"ch":0,"e":"open","kind":"session"}"#,
        "\n",
        r#"{"t":0.001,"ch":0,"e":"pty","term":"xterm","cols":80,"rows":24}"#,
        "\n",
        r#"{"t":0.002,"ch":0,"e":"env","name":"LANG","value":"C"}"#,
        "\n",
        r#"{"t":0.003,"ch":0,"e":"shell"}"#,
        "\n",
        r#"{"t":0.25,"ch":0,"e":"r","d":"100x30"}"#,
        "\n",
        r#"{"t":1.5,"ch":0,"e":"signal","name":"INT"}"#,
        "\n",
        r#"{"t":2.0,"ch":0,"e":"refused","request":"x11-req","reason":"not allowed"}"#,
        "\n",
        r#"{"t":2.5,"ch":0,"e":"exit","status":3}"#,
        "\n",
        r#"{"t":3.0,"ch":0,"e":"close","bytes_in":0,"bytes_out":0}"#,
        "\n",
    );
    assert_eq!(got, want);
    assert_eq!(
        tr.summaries(),
        vec![ChannelSummary {
            index: 0,
            kind: "session".into(),
            pty: Some("xterm 80x24".into()),
            exit_status: Some(3),
            closed: true,
            ..Default::default()
        }]
    );
}

#[test]
fn times_are_the_records_rounded_to_microseconds() {
    let mut tr = Translator::new(false);
    let r = Record {
        channel: 7,
        at: Duration::from_nanos(1_234_567_400),
        event: ChannelEvent::Shell,
    };
    assert_eq!(
        batch_lines(&mut tr, vec![r]),
        "{\"t\":1.234567,\"ch\":7,\"e\":\"shell\"}\n"
    );
}

#[test]
fn an_exit_signal_is_an_exit_line_with_the_signal() {
    let mut tr = Translator::new(false);
    let got = batch_lines(
        &mut tr,
        vec![rec(
            500,
            0,
            ChannelEvent::ExitSignal {
                signal: "KILL".into(),
                core_dumped: true,
            },
        )],
    );
    assert_eq!(
        got,
        "{\"t\":0.5,\"ch\":0,\"e\":\"exit\",\"signal\":\"KILL\",\"core\":true}\n"
    );
    assert_eq!(tr.summaries()[0].exit_signal.as_deref(), Some("KILL"));
    assert_eq!(tr.summaries()[0].exit_status, None);
}

#[test]
fn output_of_one_batch_is_one_line_at_the_first_packets_time() {
    let mut tr = Translator::new(false);
    let first = batch_lines(
        &mut tr,
        vec![rec(100, 0, output(b"hello ")), rec(150, 0, output(b"world"))],
    );
    assert_eq!(first, "{\"t\":0.1,\"ch\":0,\"e\":\"o\",\"d\":\"hello world\"}\n");
    // The next batch (the chunk writer got the first) starts a line of its own.
    let next = batch_lines(&mut tr, vec![rec(200, 0, output(b"!"))]);
    assert_eq!(next, "{\"t\":0.2,\"ch\":0,\"e\":\"o\",\"d\":\"!\"}\n");
    assert_eq!(tr.summaries()[0].bytes_out, 12);
}

#[test]
fn merged_output_stops_at_merge_bytes() {
    let mut tr = Translator::new(false);
    let a = vec![b'a'; MERGE_BYTES - 10];
    // Exactly MERGE_BYTES still merge.
    let out = batch(&mut tr, vec![rec(1, 0, output(&a)), rec(2, 0, output(&[b'b'; 10]))]);
    assert_eq!(out.len(), 1);
    assert!(matches!(&out[0], Out::Data { piece: Piece::Text(t), .. } if t.len() == MERGE_BYTES));
    // One byte more starts a new line, at its own packet's time.
    let out = batch(&mut tr, vec![rec(3, 0, output(&a)), rec(4, 0, output(&[b'b'; 11]))]);
    assert_eq!(out.len(), 2);
    match (&out[0], &out[1]) {
        (
            Out::Data {
                piece: Piece::Text(x),
                t: t0,
                ..
            },
            Out::Data {
                piece: Piece::Text(y),
                t: t1,
                ..
            },
        ) => {
            assert_eq!(
                (x.len(), y.as_str(), *t0, *t1),
                (MERGE_BYTES - 10, "bbbbbbbbbbb", 0.003, 0.004)
            );
        }
        other => panic!("two text lines expected, got {other:?}"),
    }
}

#[test]
fn streams_channels_and_events_between_keep_lines_apart() {
    let mut tr = Translator::new(false);
    let got = batch_lines(
        &mut tr,
        vec![
            rec(1, 0, output(b"a")),
            rec(2, 0, stderr(b"b")),
            rec(3, 0, output(b"c")),
            rec(4, 1, output(b"d")),
            rec(5, 1, ChannelEvent::Resize { cols: 1, rows: 2 }),
            rec(6, 1, output(b"e")),
        ],
    );
    let want = concat!(
        "{\"t\":0.001,\"ch\":0,\"e\":\"o\",\"d\":\"a\"}\n",
        "{\"t\":0.002,\"ch\":0,\"e\":\"o\",\"d\":\"b\",\"err\":true}\n",
        "{\"t\":0.003,\"ch\":0,\"e\":\"o\",\"d\":\"c\"}\n",
        "{\"t\":0.004,\"ch\":1,\"e\":\"o\",\"d\":\"d\"}\n",
        "{\"t\":0.005,\"ch\":1,\"e\":\"r\",\"d\":\"1x2\"}\n",
        "{\"t\":0.006,\"ch\":1,\"e\":\"o\",\"d\":\"e\"}\n",
    );
    assert_eq!(got, want);
}

#[test]
fn a_character_split_between_packets_is_kept_whole() {
    let mut tr = Translator::new(false);
    // Across two batches: the first line waits for the character's end.
    let first = batch_lines(&mut tr, vec![rec(10, 0, output(b"caf\xc3"))]);
    let second = batch_lines(&mut tr, vec![rec(20, 0, output(b"\xa9!"))]);
    assert_eq!(first, "{\"t\":0.01,\"ch\":0,\"e\":\"o\",\"d\":\"caf\"}\n");
    assert_eq!(second, "{\"t\":0.02,\"ch\":0,\"e\":\"o\",\"d\":\"\u{e9}!\"}\n");
    // Within one batch: one line.
    let mut tr = Translator::new(false);
    let one = batch_lines(
        &mut tr,
        vec![rec(10, 0, output(b"caf\xc3")), rec(20, 0, output(b"\xa9!"))],
    );
    assert_eq!(one, "{\"t\":0.01,\"ch\":0,\"e\":\"o\",\"d\":\"caf\u{e9}!\"}\n");
}

#[test]
fn a_character_that_never_completes_is_kept_as_bytes_at_eof() {
    let mut tr = Translator::new(false);
    let got = batch_lines(
        &mut tr,
        vec![
            rec(1, 0, output(b"x\xe2\x82")),
            rec(
                2,
                0,
                ChannelEvent::Eof {
                    direction: Direction::Output,
                },
            ),
        ],
    );
    // E2 82 is the start of a three-byte character: base64 "4oI=".
    let want = concat!(
        "{\"t\":0.001,\"ch\":0,\"e\":\"o\",\"d\":\"x\"}\n",
        "{\"t\":0.002,\"ch\":0,\"e\":\"o\",\"b64\":\"4oI=\"}\n",
        "{\"t\":0.002,\"ch\":0,\"e\":\"eof\",\"dir\":\"out\"}\n",
    );
    assert_eq!(got, want);
    assert_eq!(output_bytes(&got, false), b"x\xe2\x82");
}

#[test]
fn an_eof_drains_only_its_own_direction() {
    let mut tr = Translator::new(true);
    let got = batch_lines(
        &mut tr,
        vec![
            rec(1, 0, input(b"\xc3")),
            rec(2, 0, output(b"\xc3")),
            rec(2, 0, stderr(b"\xe2\x82")),
            rec(
                3,
                0,
                ChannelEvent::Eof {
                    direction: Direction::Input,
                },
            ),
            rec(
                4,
                0,
                ChannelEvent::Eof {
                    direction: Direction::Output,
                },
            ),
        ],
    );
    let want = concat!(
        "{\"t\":0.003,\"ch\":0,\"e\":\"i\",\"b64\":\"ww==\"}\n",
        "{\"t\":0.003,\"ch\":0,\"e\":\"eof\",\"dir\":\"in\"}\n",
        // An output EOF ends stdout and stderr.
        "{\"t\":0.004,\"ch\":0,\"e\":\"o\",\"b64\":\"ww==\"}\n",
        "{\"t\":0.004,\"ch\":0,\"e\":\"o\",\"b64\":\"4oI=\",\"err\":true}\n",
        "{\"t\":0.004,\"ch\":0,\"e\":\"eof\",\"dir\":\"out\"}\n",
    );
    assert_eq!(got, want);
}

#[test]
fn close_drains_carries_and_a_second_close_adds_nothing() {
    let mut tr = Translator::new(false);
    let got = batch_lines(
        &mut tr,
        vec![rec(1, 0, stderr(b"\xe2\x82")), rec(2, 0, ChannelEvent::Close)],
    );
    let want = concat!(
        "{\"t\":0.002,\"ch\":0,\"e\":\"o\",\"b64\":\"4oI=\",\"err\":true}\n",
        "{\"t\":0.002,\"ch\":0,\"e\":\"close\",\"bytes_in\":0,\"bytes_out\":2}\n",
    );
    assert_eq!(got, want);
    assert!(batch(&mut tr, vec![rec(3, 0, ChannelEvent::Close)]).is_empty());
    assert!(tr.summaries()[0].closed);
}

#[test]
fn escapes_are_json_and_non_text_is_base64() {
    let mut tr = Translator::new(false);
    // ESC, CR, LF, quote and backslash are escaped in `d`.
    let got = batch_lines(&mut tr, vec![rec(1, 0, output(b"\x1b[1mls \"a\\b\"\r\n"))]);
    assert_eq!(
        got,
        "{\"t\":0.001,\"ch\":0,\"e\":\"o\",\"d\":\"\\u001b[1mls \\\"a\\\\b\\\"\\r\\n\"}\n"
    );
    // Text that is mostly NULs goes as base64, as do bytes that are not UTF-8;
    // consecutive invalid bytes merge into one line.
    let got = batch_lines(&mut tr, vec![rec(2, 0, output(&[0; 4]))]);
    assert_eq!(got, "{\"t\":0.002,\"ch\":0,\"e\":\"o\",\"b64\":\"AAAAAA==\"}\n");
    let got = batch_lines(
        &mut tr,
        vec![
            rec(3, 0, output(b"\xff")),
            rec(4, 0, output(b"\xfe")),
            rec(5, 0, output(b"ok")),
        ],
    );
    let want = concat!(
        "{\"t\":0.003,\"ch\":0,\"e\":\"o\",\"b64\":\"//4=\"}\n",
        "{\"t\":0.005,\"ch\":0,\"e\":\"o\",\"d\":\"ok\"}\n",
    );
    assert_eq!(got, want);
}

#[test]
fn input_is_kept_only_when_the_session_records_it() {
    let mut quiet = Translator::new(false);
    let got = batch_lines(
        &mut quiet,
        vec![rec(1, 0, input(b"secret\r")), rec(2, 0, ChannelEvent::Close)],
    );
    assert_eq!(
        got,
        "{\"t\":0.002,\"ch\":0,\"e\":\"close\",\"bytes_in\":7,\"bytes_out\":0}\n"
    );

    let mut kept = Translator::new(true);
    let got = batch_lines(&mut kept, vec![rec(1, 0, input(b"ls\r")), rec(2, 0, input(b"\t"))]);
    // `i` lines have no `err`; one batch of keystrokes is one line.
    assert_eq!(got, "{\"t\":0.001,\"ch\":0,\"e\":\"i\",\"d\":\"ls\\r\\t\"}\n");
}

#[test]
fn forwarded_connections_keep_destination_and_counts_only() {
    let mut tr = Translator::new(true);
    let open = ChannelEvent::Open(ChannelKind::DirectTcpip {
        host: "db.internal".into(),
        port: 5432,
    });
    let got = batch_lines(
        &mut tr,
        vec![
            rec(0, 2, open),
            rec(1, 2, input(b"0123456789")),
            rec(2, 2, output(&[b'x'; 25])),
            rec(3, 2, ChannelEvent::Close),
        ],
    );
    let want = concat!(
        "{\"t\":0.0,\"ch\":2,\"e\":\"open\",\"kind\":\"direct-tcpip\",\"host\":\"db.internal\",\"port\":5432}\n",
        "{\"t\":0.003,\"ch\":2,\"e\":\"fwd\",\"host\":\"db.internal\",\"port\":5432,\"bytes_in\":10,\"bytes_out\":25}\n",
        "{\"t\":0.003,\"ch\":2,\"e\":\"close\",\"bytes_in\":10,\"bytes_out\":25}\n",
    );
    assert_eq!(got, want);
    let s = &tr.summaries()[0];
    assert_eq!(
        (s.kind.as_str(), s.destination.as_deref()),
        ("direct-tcpip", Some("db.internal:5432"))
    );

    let mut tr = Translator::new(false);
    let open = ChannelEvent::Open(ChannelKind::ForwardedTcpip {
        address: "0.0.0.0".into(),
        port: 8080,
    });
    let got = batch_lines(&mut tr, vec![rec(0, 0, open)]);
    assert_eq!(
        got,
        "{\"t\":0.0,\"ch\":0,\"e\":\"open\",\"kind\":\"forwarded-tcpip\",\"host\":\"0.0.0.0\",\"port\":8080}\n"
    );
}

#[test]
fn scp_keeps_file_operations_and_its_messages_not_contents() {
    let mut tr = Translator::new(true);
    let got = batch_lines(
        &mut tr,
        vec![
            rec(
                0,
                0,
                ChannelEvent::Exec {
                    command: "scp -t /tmp".into(),
                },
            ),
            rec(1, 0, input(b"C0644 5 a.txt\nhello\0C0644 9 b.txt\nhel")),
            // The acks come the other way and are not parsed.
            rec(2, 0, output(b"\0")),
            rec(3, 0, stderr(b"scp: warning\n")),
            rec(4, 0, ChannelEvent::Close),
        ],
    );
    let want = concat!(
        "{\"t\":0.0,\"ch\":0,\"e\":\"exec\",\"command\":\"scp -t /tmp\"}\n",
        "{\"t\":0.001,\"ch\":0,\"e\":\"file\",\"op\":\"write\",\"path\":\"a.txt\",\"bytes\":5,\"dir\":\"up\"}\n",
        "{\"t\":0.003,\"ch\":0,\"e\":\"o\",\"d\":\"scp: warning\\n\",\"err\":true}\n",
        // The file the close cut, as far as it came.
        "{\"t\":0.004,\"ch\":0,\"e\":\"file\",\"op\":\"write\",\"path\":\"b.txt\",\"bytes\":3,\"dir\":\"up\",\"ok\":false}\n",
        "{\"t\":0.004,\"ch\":0,\"e\":\"close\",\"bytes_in\":37,\"bytes_out\":14}\n",
    );
    assert_eq!(got, want);
    assert_eq!(tr.summaries()[0].command.as_deref(), Some("scp -t /tmp"));
}

#[test]
fn rsync_keeps_only_its_command_and_counts() {
    let mut tr = Translator::new(true);
    let got = batch_lines(
        &mut tr,
        vec![
            rec(
                0,
                0,
                ChannelEvent::Exec {
                    command: "rsync --server -vlogDtpre.iLsfxC . /tmp/x".into(),
                },
            ),
            rec(1, 0, input(b"file contents")),
            rec(2, 0, output(b"more contents")),
            rec(3, 0, ChannelEvent::Close),
        ],
    );
    let want = concat!(
        "{\"t\":0.0,\"ch\":0,\"e\":\"exec\",\"command\":\"rsync --server -vlogDtpre.iLsfxC . /tmp/x\"}\n",
        "{\"t\":0.003,\"ch\":0,\"e\":\"close\",\"bytes_in\":13,\"bytes_out\":13}\n",
    );
    assert_eq!(got, want);
}

#[test]
fn sftp_bytes_become_file_events_never_data() {
    let mut tr = Translator::new(true);
    let out = batch(
        &mut tr,
        vec![
            rec(0, 0, ChannelEvent::Subsystem { name: "sftp".into() }),
            // Not sftp at all: reported once as a marker, not stored.
            rec(1, 0, input(&[0xff, 0xff, 0xff, 0xff, 3, 0, 0])),
            rec(2, 0, output(b"plain text")),
        ],
    );
    assert!(!out.iter().any(|o| matches!(o, Out::Data { .. })), "{out:?}");
    let want = concat!(
        "{\"t\":0.0,\"ch\":0,\"e\":\"subsystem\",\"name\":\"sftp\"}\n",
        "{\"t\":0.001,\"ch\":0,\"e\":\"m\",",
        "\"d\":\"sftp stream no longer parsed: an sftp packet of 4294967295 bytes is not plausible\"}\n",
    );
    assert_eq!(lines(&out), want);
    assert_eq!(tr.summaries()[0].subsystem.as_deref(), Some("sftp"));
}

#[test]
fn the_sessions_end_drains_open_channels_only() {
    let mut tr = Translator::new(false);
    let before = batch_lines(
        &mut tr,
        vec![
            rec(0, 0, output(b"a\xc3")),
            rec(1, 1, output(b"\xc3")),
            rec(2, 1, ChannelEvent::Close),
            rec(
                3,
                2,
                ChannelEvent::Exec {
                    command: "scp -f x".into(),
                },
            ),
            rec(4, 2, output(b"C0644 4 x\nab")),
        ],
    );
    // Channel 1 closed: its carry went out with its close.
    assert!(
        before.contains("{\"t\":0.002,\"ch\":1,\"e\":\"o\",\"b64\":\"ww==\"}\n"),
        "{before}"
    );
    let mut end = Vec::new();
    tr.flush_all(9.5, &mut end);
    let want = concat!(
        "{\"t\":9.5,\"ch\":0,\"e\":\"o\",\"b64\":\"ww==\"}\n",
        "{\"t\":9.5,\"ch\":2,\"e\":\"file\",\"op\":\"read\",\"path\":\"x\",\"bytes\":2,\"dir\":\"down\",\"ok\":false}\n",
    );
    assert_eq!(lines(&end), want);
    // flush_all does not close: the manifest says how the channels ended.
    assert_eq!(
        tr.summaries().iter().map(|s| s.closed).collect::<Vec<_>>(),
        [false, true, false]
    );
}

proptest! {
    /// Output split into packets anywhere and batched anywhere reads back
    /// byte for byte, stdout and stderr each, once the channel closes.
    #[test]
    fn output_split_and_batched_anywhere_reads_back(
        out in proptest::collection::vec(any::<u8>(), 0..600),
        err in proptest::collection::vec(any::<u8>(), 0..200),
        cuts in proptest::collection::vec(1usize..40, 1..40),
        batch_every in 1usize..6,
    ) {
        let mut records = Vec::new();
        let (mut o, mut e) = (&out[..], &err[..]);
        for (i, n) in cuts.iter().cycle().enumerate() {
            if o.is_empty() && e.is_empty() {
                break;
            }
            let (stream, rest) = if (i % 3 == 2 && !e.is_empty()) || o.is_empty() {
                (true, &mut e)
            } else {
                (false, &mut o)
            };
            let cur: &[u8] = rest;
            let (piece, tail) = cur.split_at((*n).min(cur.len()));
            *rest = tail;
            let ev = if stream { stderr(piece) } else { output(piece) };
            records.push(rec(i as u64, 0, ev));
        }
        records.push(rec(10_000, 0, ChannelEvent::Close));
        let mut tr = Translator::new(false);
        let mut text = String::new();
        let mut rest = records.into_iter().peekable();
        while rest.peek().is_some() {
            let b: Vec<Record> = rest.by_ref().take(batch_every).collect();
            text.push_str(&batch_lines(&mut tr, b));
        }
        prop_assert_eq!(output_bytes(&text, false), out.clone());
        prop_assert_eq!(output_bytes(&text, true), err.clone());
        let s = &tr.summaries()[0];
        prop_assert_eq!(s.bytes_out, (out.len() + err.len()) as u64);
    }
}
