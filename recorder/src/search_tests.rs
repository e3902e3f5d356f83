use super::*;

/// Builds asciicast text from a header size and (time, code, data) events.
fn cast(width: usize, height: usize, events: &[(f64, &str, &str)]) -> String {
    let mut s = format!("{{\"version\":2,\"width\":{width},\"height\":{height}}}\n");
    for (t, code, data) in events {
        s.push_str(&serde_json::to_string(&(t, code, data)).unwrap());
        s.push('\n');
    }
    s
}

fn find(text: &str, query: &str) -> Vec<Hit> {
    search(text, query, SearchOptions::default()).unwrap()
}

fn of(hits: &[Hit], source: Source) -> Vec<Hit> {
    hits.iter().filter(|h| h.source == source).cloned().collect()
}

/// A shell session: prompt, `etcdctl dle` typed, three backspaces (echoed as bash does,
/// `BS ESC[K`), `del foo` typed, Enter, command output, a new prompt. One key every 0.2 s.
fn typo_session() -> (String, f64) {
    let mut events: Vec<(f64, &str, String)> = vec![(0.0, "o", "$ ".into())];
    let mut t = 0.0;
    let mut key = |events: &mut Vec<(f64, &str, String)>, input: &str, echo: &str| {
        t += 0.2;
        events.push((t, "i", input.into()));
        events.push((t + 0.01, "o", echo.into()));
        t
    };
    for c in "etcdctl dle".chars() {
        key(&mut events, &c.to_string(), &c.to_string());
    }
    for _ in 0..3 {
        key(&mut events, "\x7f", "\x08\x1b[K");
    }
    let mut last = 0.0;
    for c in "del foo".chars() {
        last = key(&mut events, &c.to_string(), &c.to_string()) + 0.01;
    }
    key(&mut events, "\r", "\r\n1\r\n$ ");
    let borrowed: Vec<(f64, &str, &str)> = events.iter().map(|(t, c, d)| (*t, *c, d.as_str())).collect();
    (cast(40, 5, &borrowed), last)
}

#[test]
fn corrected_typo_is_found_in_input_and_on_screen() {
    let (text, last_echo) = typo_session();
    let hits = find(&text, "etcdctl del foo");
    let input = of(&hits, Source::Input);
    let screen = of(&hits, Source::Screen);
    assert_eq!(input.len(), 1, "{hits:?}");
    assert_eq!(input[0].line, "etcdctl del foo");
    assert_eq!(screen.len(), 1, "{hits:?}");
    assert_eq!(screen[0].line, "$ etcdctl del foo");
    // First on screen with the echo of the last `o`.
    assert!(
        (screen[0].time - last_echo).abs() < 1e-9,
        "{} vs {last_echo}",
        screen[0].time
    );
    // The raw stream's interleaving never reads as one line.
    assert!(find(&text, "dle\x08").is_empty());
    assert!(find(&text, "dledel").is_empty());
}

#[test]
fn typo_and_correction_are_two_screen_records_not_one_per_keystroke() {
    let (text, _) = typo_session();
    let screen = of(&find(&text, "etcdctl"), Source::Screen);
    let lines: Vec<&str> = screen.iter().map(|h| h.line.as_str()).collect();
    assert_eq!(lines, ["$ etcdctl dle", "$ etcdctl del foo"]);
    // The typo was on screen and stays findable.
    assert_eq!(of(&find(&text, "etcdctl dle"), Source::Screen).len(), 1);
    assert!(of(&find(&text, "etcdctl dle"), Source::Input).is_empty());
}

#[test]
fn text_drawn_with_cursor_positioning_is_found() {
    let text = cast(40, 10, &[(0.5, "o", "\x1b[2J\x1b[5;7Hworld\x1b[5;1Hhello\x1b[10;1H")]);
    let hits = find(&text, "hello world");
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].line, "hello world");
    assert_eq!(hits[0].time, 0.5);
}

#[test]
fn line_scrolled_off_within_one_batch_is_found() {
    // A 3-row terminal: the first line leaves the screen inside the same event.
    let text = cast(20, 3, &[(1.0, "o", "secret-line\r\na\r\nb\r\nc\r\nd\r\n")]);
    let hits = find(&text, "secret-line");
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].time, 1.0);
}

#[test]
fn line_seen_then_scrolled_off_is_one_hit_at_its_first_time() {
    let text = cast(
        20,
        3,
        &[
            (1.0, "o", "first\r\n"),
            (2.0, "o", "a\r\nb\r\n"),
            (3.0, "o", "c\r\nd\r\ne\r\nf\r\n"),
        ],
    );
    let hits = find(&text, "first");
    assert_eq!(hits.iter().map(|h| h.time).collect::<Vec<_>>(), [1.0]);
}

#[test]
fn case_insensitive_option() {
    let text = cast(40, 5, &[(0.1, "o", "Permission Denied\r\n"), (0.2, "i", "SUDO su\r")]);
    assert!(find(&text, "permission denied").is_empty());
    assert!(find(&text, "sudo").is_empty());
    let ci = SearchOptions {
        case_insensitive: true,
        ..Default::default()
    };
    let hits = search(&text, "permission denied", ci).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].line, "Permission Denied");
    let hits = search(&text, "sudo", ci).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].source, Source::Input);
}

#[test]
fn cleared_screen_dedup_is_by_presence_and_never_joins_erased_text() {
    let text = cast(
        30,
        4,
        &[
            (1.0, "o", "old secret\r\nfoo"),
            // A clock line redrawn at every step: the other lines stay one record each.
            (1.5, "o", "\x1b[4;1H12:00:01"),
            (2.0, "o", "\x1b[H\x1b[2J\x1b[Hbar fresh\r\n"),
            (2.5, "o", "\x1b[4;1H12:00:02"),
            (3.0, "o", "\x1b[H\x1b[2J\x1b[Hold secret"),
        ],
    );
    // Seen at 1.0, gone at 2.0 (the clear pushes it out of the terminal: no new hit then),
    // drawn again at 3.0: a second hit at the later time.
    let times = |q: &str| find(&text, q).iter().map(|h| h.time).collect::<Vec<_>>();
    assert_eq!(times("old secret"), [1.0, 3.0]);
    assert_eq!(times("bar fresh"), [2.0]);
    // `foo` was erased before `bar` appeared on the same row: no line ever read `foo bar`
    // or `foobar fresh`.
    assert!(times("foo bar").is_empty());
    assert!(times("foobar").is_empty());
}

#[test]
fn resize_events_are_honoured() {
    // At 10 columns the cursor could not reach column 30; after the resize it can.
    let text = cast(10, 3, &[(0.1, "r", "40x3"), (0.2, "o", "\x1b[1;30Hfar")]);
    let hits = find(&text, "far");
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].line, format!("{}far", " ".repeat(29)));
}

#[test]
fn alternate_screen_is_searched_and_returning_does_not_repeat_shell_lines() {
    let text = cast(
        30,
        4,
        &[
            (1.0, "o", "$ vim notes\r\n"),
            (2.0, "o", "\x1b[?1049h\x1b[H\x1b[2Jinside the editor"),
            (3.0, "o", "\x1b[?1049l"),
        ],
    );
    assert_eq!(find(&text, "inside the editor").len(), 1);
    assert_eq!(
        find(&text, "vim notes").iter().map(|h| h.time).collect::<Vec<_>>(),
        [1.0]
    );
}

#[test]
fn context_lines_are_the_neighbours_on_screen() {
    let text = cast(20, 6, &[(1.0, "o", "one\r\ntwo\r\nthree\r\nfour\r\nfive")]);
    let opts = SearchOptions {
        context_lines: 1,
        ..Default::default()
    };
    let hits = search(&text, "three", opts).unwrap();
    assert_eq!(hits[0].context, ["two", "four"]);
}

#[test]
fn input_line_editing_keys_are_applied() {
    let text = cast(
        40,
        5,
        &[
            // Left arrow three times, insert `o`: `ech hi` becomes `echo hi`.
            (0.1, "i", "ech hi\x1b[D\x1b[D\x1b[Do\r"),
            // Ctrl-U clears the line; Ctrl-W removes a word; both in application mode keys.
            (0.2, "i", "rm -rf /\x15ls -la\x17-l /tmp\r"),
            // Ctrl-C abandons the line, but what was typed is kept.
            (0.3, "i", "shutdown now\x03"),
            (0.4, "i", "unfinished"),
        ],
    );
    let lines = |q: &str| find(&text, q).into_iter().map(|h| (h.time, h.line)).collect::<Vec<_>>();
    assert_eq!(lines("echo hi"), [(0.1, "echo hi".to_owned())]);
    assert_eq!(lines("ls -l /tmp"), [(0.2, "ls -l /tmp".to_owned())]);
    assert!(lines("rm -rf").is_empty());
    assert_eq!(lines("shutdown"), [(0.3, "shutdown now".to_owned())]);
    assert_eq!(lines("unfinished"), [(0.4, "unfinished".to_owned())]);
}

#[test]
fn empty_query_matches_nothing_and_bad_cast_is_an_error() {
    let text = cast(20, 3, &[(0.1, "o", "abc")]);
    assert!(find(&text, "").is_empty());
    assert!(search("not a cast", "x", SearchOptions::default()).is_err());
}
