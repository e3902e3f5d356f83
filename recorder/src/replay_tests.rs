use super::*;

fn clean(s: &str) -> String {
    sanitize(s, &mut SanitizerState::default())
}

#[test]
fn osc52_clipboard_is_dropped_with_bel_and_with_st() {
    assert_eq!(clean("a\x1b]52;c;ZWNobyBwd25lZA==\x07b"), "ab");
    assert_eq!(clean("a\x1b]52;c;ZWNobyBwd25lZA==\x1b\\b"), "ab");
    // C1 ST as terminator.
    assert_eq!(clean("a\x1b]52;c;Zm9v\u{9c}b"), "ab");
}

#[test]
fn title_palette_hyperlink_and_cwd_oscs_are_dropped() {
    assert_eq!(clean("\x1b]0;evil title\x07x"), "x");
    assert_eq!(clean("\x1b]2;evil title\x1b\\x"), "x");
    assert_eq!(clean("\x1b]4;1;?\x07\x1b]11;?\x07x"), "x");
    assert_eq!(clean("\x1b]8;;https://evil.example/\x07link\x1b]8;;\x07"), "link");
    assert_eq!(clean("\x1b]7;file://host/tmp\x07\x1b]1337;SetMark\x07x"), "x");
}

#[test]
fn device_queries_and_window_ops_are_dropped() {
    assert_eq!(clean("a\x1b[6nb\x1b[5nc"), "abc");
    assert_eq!(clean("a\x1b[cb\x1b[0cc\x1b[>cd\x1b[=ce"), "abcde");
    assert_eq!(clean("a\x1b[21tb\x1b[8;100;200tc\x1b[14t"), "abc");
    assert_eq!(clean("a\x1b[?2004$pb\x1b[>0qc"), "abc");
    assert_eq!(clean("a\x1bZb"), "ab");
}

#[test]
fn dcs_apc_pm_sos_are_dropped() {
    // DECRQSS is a DCS; BEL does not end a DCS, ST does.
    assert_eq!(clean("a\x1bP$qm\x1b\\b"), "ab");
    assert_eq!(clean("a\x1bP1;2|x\x07y\x1b\\b"), "ab");
    assert_eq!(clean("a\x1b_Gf=100;AAAA\x1b\\b\x1b^pm\x1b\\c\x1bXsos\x1b\\d"), "abcd");
}

#[test]
fn c1_controls_and_their_sequences_are_dropped() {
    assert_eq!(clean("a\u{9d}52;c;Zm9v\x07b"), "ab");
    assert_eq!(clean("a\u{9b}6nb"), "ab");
    assert_eq!(clean("a\u{90}$qm\u{9c}b"), "ab");
    assert_eq!(clean("a\u{85}\u{84}b"), "ab");
    // Printable non-ASCII text is untouched.
    assert_eq!(clean("é日本"), "é日本");
}

#[test]
fn mouse_and_focus_reporting_modes_are_stripped_display_modes_kept() {
    assert_eq!(clean("\x1b[?1000h\x1b[?1002h\x1b[?1003h\x1b[?1006h\x1b[?1004h"), "");
    assert_eq!(clean("\x1b[?1049;1000h"), "\x1b[?1049h");
    assert_eq!(clean("\x1b[?1000l"), "");
    // DECCOLM resizes the window.
    assert_eq!(clean("\x1b[?3h\x1b[?3;25h"), "\x1b[?25h");
    // Keyboard lock and local echo are ANSI modes too; insert and newline mode stay.
    assert_eq!(clean("\x1b[2h\x1b[12l\x1b[4;2h"), "\x1b[4h");
}

#[test]
fn display_sequences_survive_byte_for_byte() {
    let display = concat!(
        "\x1b[0m\x1b[1;31mred\x1b[38;5;208mx\x1b[38;2;1;2;3my\x1b[m",
        "\x1b[H\x1b[10;20H\x1b[2A\x1b[3B\x1b[4C\x1b[5D\x1b[G\x1b[12d\x1b[5f",
        "\x1b[2J\x1b[K\x1b[1K\x1b[3X\x1b[2P\x1b[4@\x1b[L\x1b[M\x1b[S\x1b[2T",
        "\x1b[1;20r\x1b[r\x1b[s\x1b[u\x1b7\x1b8\x1bM\x1b(B\x1b)0\x1b#8\x1bc",
        "\x1b[?1049h\x1b[?1049l\x1b[?1047h\x1b[?25l\x1b[?25h\x1b[?7h\x1b[?2004h\x1b[?2004l\x1b[?1h\x1b=",
        "\x1b[4h\x1b[4l\x1b[2 q\x1b[!p\x1b[?2J\x1b[3g\x1b[2b",
        "tab\there\r\n\x08\x07",
    );
    assert_eq!(clean(display), display);
}

#[test]
fn sequences_split_across_calls_are_handled() {
    let mut st = SanitizerState::default();
    let mut out = sanitize("a\x1b]52;c;Zm", &mut st);
    out += &sanitize("9v\x07b", &mut st);
    assert_eq!(out, "ab");

    // A display sequence split mid-parameters comes out whole, in the later call.
    let mut st = SanitizerState::default();
    assert_eq!(sanitize("x\x1b[1;3", &mut st), "x");
    assert_eq!(sanitize("1mred", &mut st), "\x1b[1;31mred");

    // A query split right after ESC.
    let mut st = SanitizerState::default();
    assert_eq!(sanitize("x\x1b", &mut st), "x");
    assert_eq!(sanitize("[6ny", &mut st), "y");

    // ST split between its ESC and backslash.
    let mut st = SanitizerState::default();
    assert_eq!(sanitize("x\x1b]0;title\x1b", &mut st), "x");
    assert_eq!(sanitize("\\y", &mut st), "y");
}

#[test]
fn unterminated_osc_is_capped_and_text_resumes() {
    let mut st = SanitizerState::default();
    let mut out = sanitize("start\x1b]52;c;", &mut st);
    let junk = "A".repeat(MAX_STRING_SEQUENCE + 10);
    out += &sanitize(&junk, &mut st);
    out += &sanitize("visible later", &mut st);
    assert!(out.starts_with("start"));
    assert!(
        out.ends_with("visible later"),
        "text after the cap must come through: {out:?}"
    );
    // The swallowed part is not echoed: only what exceeded the cap can appear.
    assert!(out.len() < "start".len() + 20 + "visible later".len(), "{}", out.len());
}

#[test]
fn esc_inside_osc_ends_it_and_starts_a_new_sequence() {
    assert_eq!(clean("\x1b]0;t\x1b[31mred"), "\x1b[31mred");
}

fn ev(time: f64, kind: EventKind, data: &str) -> Event {
    Event {
        time,
        kind,
        data: data.to_owned(),
    }
}

#[test]
fn speed_two_halves_delays() {
    let events = [
        ev(1.0, EventKind::Output, "a"),
        ev(3.0, EventKind::Output, "b"),
        ev(3.5, EventKind::Output, "c"),
    ];
    let normal = schedule(&events, &ReplayOptions::default());
    let fast = schedule(
        &events,
        &ReplayOptions {
            speed: 2.0,
            ..Default::default()
        },
    );
    let d = |v: &[(Duration, String)]| v.iter().map(|p| p.0).collect::<Vec<_>>();
    assert_eq!(
        d(&normal),
        [
            Duration::from_secs(1),
            Duration::from_secs(2),
            Duration::from_millis(500)
        ]
    );
    assert_eq!(
        d(&fast),
        [
            Duration::from_millis(500),
            Duration::from_secs(1),
            Duration::from_millis(250)
        ]
    );
    assert_eq!(fast.iter().map(|p| p.1.as_str()).collect::<String>(), "abc");
}

#[test]
fn idle_limit_caps_long_pauses_only() {
    let events = [
        ev(0.5, EventKind::Output, "a"),
        ev(60.5, EventKind::Output, "b"),
        ev(61.0, EventKind::Output, "c"),
    ];
    let opts = ReplayOptions {
        idle_limit: Some(2.0),
        ..Default::default()
    };
    let delays: Vec<_> = schedule(&events, &opts).into_iter().map(|p| p.0).collect();
    assert_eq!(
        delays,
        [
            Duration::from_millis(500),
            Duration::from_secs(2),
            Duration::from_millis(500)
        ]
    );
    // Cap applies before speed.
    let opts = ReplayOptions {
        idle_limit: Some(2.0),
        speed: 4.0,
        ..Default::default()
    };
    assert_eq!(schedule(&events, &opts)[1].0, Duration::from_millis(500));
}

#[test]
fn input_is_shown_only_when_asked_and_made_inert() {
    let events = [
        ev(0.1, EventKind::Output, "$ "),
        ev(0.2, EventKind::Input, "ls\x1b[A\r"),
        ev(0.3, EventKind::Resize, "100x30"),
        ev(0.4, EventKind::Output, "x"),
    ];
    let without = schedule(&events, &ReplayOptions::default());
    assert_eq!(without.len(), 2);
    // The skipped input's time still passes before the next output.
    assert_eq!(without[1].0, Duration::from_millis(300));
    let with = schedule(
        &events,
        &ReplayOptions {
            include_input: true,
            ..Default::default()
        },
    );
    assert_eq!(with[1].1, "\x1b[7mls^[[A^M\x1b[27m");
    assert_eq!(with[2].0, Duration::from_millis(200));
    // C1 and bidi controls typed are shown as everywhere else, never sent.
    let typed = [ev(0.1, EventKind::Input, "a\u{9b}6n\u{202e}b")];
    let shown = schedule(
        &typed,
        &ReplayOptions {
            include_input: true,
            ..Default::default()
        },
    );
    assert_eq!(shown[0].1, "\x1b[7ma\\u{9b}6n\\u{202e}b\x1b[27m");
}

#[test]
fn event_that_sanitizes_to_nothing_carries_its_wait() {
    let events = [
        ev(1.0, EventKind::Output, "\x1b]0;t\x07"),
        ev(2.0, EventKind::Output, "x"),
    ];
    let pieces = schedule(&events, &ReplayOptions::default());
    assert_eq!(pieces, [(Duration::from_secs(2), "x".to_owned())]);
}

/// A writer that logs into the same list as the sleep closure, to check their order.
struct Logged<'a>(&'a std::cell::RefCell<Vec<String>>);

impl Write for Logged<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .borrow_mut()
            .push(format!("write {}", String::from_utf8_lossy(buf)));
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn replay_to_sleeps_then_writes_sanitized_output() {
    let cast = concat!(
        "{\"version\":2,\"width\":80,\"height\":24}\n",
        "[0.25,\"o\",\"hello \\u001b]52;c;Zm9v\\u0007\"]\n",
        "[1.25,\"o\",\"\\u001b[31mworld\\u001b[6n\"]\n",
    );
    let log = std::cell::RefCell::new(Vec::new());
    let mut out = Logged(&log);
    replay_to(cast, &ReplayOptions::default(), &mut out, |d| {
        log.borrow_mut().push(format!("sleep {d:?}"))
    })
    .unwrap();
    assert_eq!(
        log.into_inner(),
        ["sleep 250ms", "write hello ", "sleep 1s", "write \x1b[31mworld"]
    );
}

#[test]
fn replay_to_rejects_bad_options_and_bad_casts() {
    let cast = "{\"version\":2,\"width\":80,\"height\":24}\n";
    let mut out = Vec::new();
    let bad_speed = ReplayOptions {
        speed: 0.0,
        ..Default::default()
    };
    assert!(matches!(
        replay_to(cast, &bad_speed, &mut out, |_| {}),
        Err(ReplayError::Speed(_))
    ));
    let bad_idle = ReplayOptions {
        idle_limit: Some(f64::NAN),
        ..Default::default()
    };
    assert!(matches!(
        replay_to(cast, &bad_idle, &mut out, |_| {}),
        Err(ReplayError::IdleLimit(_))
    ));
    assert!(matches!(
        replay_to("{\"version\":1}", &ReplayOptions::default(), &mut out, |_| {}),
        Err(ReplayError::Cast(_))
    ));
}

/// Pieces the fast path and the sequences around it are made of.
fn sanitizer_input() -> impl proptest::strategy::Strategy<Value = Vec<String>> {
    use proptest::prelude::*;
    let piece = prop_oneof![
        Just("plain text ".to_owned()),
        Just("\x1b[1;31m".to_owned()),
        Just("\x1b]52;c;Zm9v\x07".to_owned()),
        Just("\x1b[6n".to_owned()),
        Just("\u{9b}2J".to_owned()),
        Just("\u{a0}é\u{85}".to_owned()),
        Just("\x1b".to_owned()),
        Just("\x1bP".to_owned()),
        Just("\r\n".to_owned()),
        "[\\x00-\\x7f\\u{80}-\\u{ff}]{0,6}",
    ];
    proptest::collection::vec(proptest::collection::vec(piece, 0..8).prop_map(|v| v.concat()), 0..6)
}

proptest::proptest! {
    /// The ground-state fast path of `sanitize_into` writes what stepping one character at a
    /// time writes, whatever the split into calls.
    #[test]
    fn the_fast_path_equals_stepping_each_character(calls in sanitizer_input()) {
        let (mut fast, mut slow) = (SanitizerState::default(), SanitizerState::default());
        let (mut a, mut b) = (String::new(), String::new());
        for call in &calls {
            sanitize_into(call, &mut fast, &mut a);
            for ch in call.chars() {
                step(ch, &mut slow, &mut b);
            }
            proptest::prop_assert_eq!(fast.at_rest(), slow.at_rest());
        }
        proptest::prop_assert_eq!(a, b);
    }
}
