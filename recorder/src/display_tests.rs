//! Tests of [`super`]: exhaustive over every char where a char is the unit,
//! properties over strings and bytes otherwise.

use proptest::prelude::*;

use super::*;

/// Every Unicode scalar value.
fn all_chars() -> impl Iterator<Item = char> {
    (0..=0x10ffff_u32).filter_map(char::from_u32)
}

/// Inverse of [`escape_bytes`] (and so of [`escape`]): proves the output
/// names exactly one input. Panics on text no escape function writes.
fn unescape(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match it.next().expect("a lone backslash") {
            '\\' => out.push(b'\\'),
            't' => out.push(b'\t'),
            'n' => out.push(b'\n'),
            'r' => out.push(b'\r'),
            'x' => {
                let hex: String = it.by_ref().take(2).collect();
                out.push(u8::from_str_radix(&hex, 16).expect("two hex digits"));
            }
            'u' => {
                assert_eq!(it.next(), Some('{'));
                let hex: String = it.by_ref().take_while(|&c| c != '}').collect();
                let c = char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap();
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            other => panic!("unknown escape \\{other} in {s:?}"),
        }
    }
    out
}

/// Printable ASCII without the backslash, as a plain shown form must be.
fn plain(s: &str) -> bool {
    s.chars().all(|c| c.is_ascii_graphic() || c == ' ')
}

#[test]
fn every_char_is_shown_raw_or_as_one_inert_escape() {
    for c in all_chars() {
        let text = c.to_string();
        let shown = escape(&text);
        assert!(!shown.chars().any(is_dangerous), "{c:?} → {shown:?}");
        assert_eq!(unescape(&shown), text.as_bytes(), "{c:?} → {shown:?}");
        if is_dangerous(c) || c == '\\' {
            assert!(shown.starts_with('\\') && plain(&shown), "{c:?} → {shown:?}");
        } else {
            assert_eq!(shown, text, "{c:?} is changed");
        }
    }
}

#[test]
fn the_classes_are_the_ones_promised() {
    let dangerous: Vec<u32> = all_chars().filter(|&c| is_dangerous(c)).map(|c| c as u32).collect();
    for c in (0..0x20).chain(0x7f..=0x9f) {
        assert!(dangerous.contains(&c), "control U+{c:04X}");
    }
    let bidi = [0x61c, 0x200e, 0x200f, 0x202a, 0x202b, 0x202c, 0x202d, 0x202e];
    for c in bidi.into_iter().chain(0x2066..=0x2069) {
        assert!(dangerous.contains(&c), "bidi U+{c:04X}");
    }
    for c in [0x200b, 0x200d, 0x2028, 0x2029, 0xfeff, 0xad, 0xe0041] {
        assert!(dangerous.contains(&c), "invisible U+{c:04X}");
    }
    // Letters and digits of every script, and the visible spaces, pass.
    for c in all_chars() {
        let space = c.is_whitespace() && !c.is_control() && !matches!(c, '\u{2028}' | '\u{2029}');
        if c.is_alphanumeric() || space {
            assert!(!is_dangerous(c), "{c:?} is dangerous");
        }
    }
    assert_eq!(
        escape("exec uptime — ls -la ~/ünïcødé 日本語 ✓"),
        "exec uptime — ls -la ~/ünïcødé 日本語 ✓"
    );
}

#[test]
fn attacks_are_shown_as_text() {
    let cases = [
        ("\x1b]52;c;ZXZpbA==\x07", "\\x1b]52;c;ZXZpbA==\\x07"),
        ("\x1b[6n", "\\x1b[6n"),
        ("rm -rf /\r\x1b[2K exec uptime", "rm -rf /\\r\\x1b[2K exec uptime"),
        ("a\u{9b}6n", "a\\u{9b}6n"),
        ("\u{202e}txt.exe", "\\u{202e}txt.exe"),
        ("back\\x1b", "back\\\\x1b"),
        ("one\ntwo\u{8}\u{7f}", "one\\ntwo\\x08\\x7f"),
    ];
    for (raw, shown) in cases {
        assert_eq!(escape(raw), shown);
    }
    assert_eq!(escape_bytes(b"\x9b6n \xff\xc2"), "\\x9b6n \\xff\\xc2");
    assert_eq!(escape_bytes("\u{9b}".as_bytes()), "\\u{9b}");
    assert_eq!(escape_lines("first \x1b[2J\nsecond\\"), "first \\x1b[2J\nsecond\\\\");
    assert!(matches!(escape("plain text"), Cow::Borrowed(_)));
}

#[test]
fn json_escapes_parse_back_and_leave_structure_alone() {
    let value = serde_json::json!({"d": "\u{9b}6n \u{9d}0;t\u{7} \u{202e} \u{2028} \u{e0041} \u{7f} ok", "n": [1, 2]});
    for text in [value.to_string(), serde_json::to_string_pretty(&value).unwrap()] {
        let safe = escape_json(&text);
        assert!(!safe.chars().any(is_dangerous_outside_layout), "{safe}");
        assert!(safe.contains("\\u009b") && safe.contains("\\udb40\\udc41"), "{safe}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&safe).unwrap(), value);
    }
    assert!(matches!(escape_json("[1,\"a\"]"), Cow::Borrowed(_)));
}

/// Dangerous, other than the line feeds of pretty-printed JSON.
fn is_dangerous_outside_layout(c: char) -> bool {
    c != '\n' && is_dangerous(c)
}

/// Text rich in what matters here: controls, bidi and format characters,
/// backslashes, escapes' own letters, and any char at all.
fn hostile() -> impl Strategy<Value = String> {
    let c = prop_oneof![
        any::<char>(),
        (0u32..0xa0).prop_map(|u| char::from_u32(u).unwrap()),
        prop::sample::select(vec![
            '\\',
            'x',
            'u',
            '{',
            '}',
            '\u{202e}',
            '\u{2066}',
            '\u{200b}',
            '\u{e0041}'
        ]),
        prop::char::range('a', 'z'),
    ];
    proptest::collection::vec(c, 0..48).prop_map(String::from_iter)
}

proptest! {
    #[test]
    fn escape_is_injective_and_inert(s in hostile()) {
        let shown = escape(&s);
        prop_assert!(!shown.chars().any(is_dangerous));
        prop_assert_eq!(unescape(&shown), s.as_bytes());
        let lines = escape_lines(&s);
        prop_assert!(!lines.chars().any(is_dangerous_outside_layout));
        prop_assert_eq!(lines.split('\n').count(), s.split('\n').count());
    }

    #[test]
    fn escape_bytes_is_injective_and_inert(
        b in prop_oneof![proptest::collection::vec(any::<u8>(), 0..64), hostile().prop_map(String::into_bytes)]
    ) {
        let shown = escape_bytes(&b);
        prop_assert!(!shown.chars().any(is_dangerous));
        prop_assert_eq!(unescape(&shown), b.clone());
        if let Ok(s) = std::str::from_utf8(&b) {
            prop_assert_eq!(shown, escape(s).into_owned());
        }
    }

    #[test]
    fn escaped_json_is_the_same_value(s in hostile()) {
        let text = serde_json::to_string(&serde_json::json!([s])).unwrap();
        let safe = escape_json(&text);
        prop_assert!(!safe.chars().any(is_dangerous));
        prop_assert_eq!(serde_json::from_str::<serde_json::Value>(&safe).unwrap(), serde_json::json!([s]));
    }
}
