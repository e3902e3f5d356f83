//! Examples and properties of [`classify_command`]: what real clients send
//! is a transfer, the attacks from the "files-only rule runs commands"
//! report are not, and generated lines hold the grammar's promises.

use proptest::prelude::*;
use proptest::sample::{select, subsequence};

use super::*;

/// The remote commands of Debian 12's clients, captured by pointing them at
/// a program that logs its arguments (`scp -O -S PROG`, `rsync -e PROG`):
/// OpenSSH 9.2p1, and rsync 3.5.0+ds1-0+deb12u1 (whose `server_options()`
/// matches 3.2.7's). The scp option each line came from is in the comment.
const REAL_SCP: &[&str] = &[
    "scp -t /tmp/y",              // file host:/tmp/y
    "scp -d -t /tmp/",            // two files
    "scp -f /tmp/y",              // host:/tmp/y .
    "scp -f -- -dash",            // host:-dash .
    "scp -t -- -dash",            // file host:-dash
    "scp -t .",                   // file host:
    "scp -f .",                   // host: .
    "scp -r -t /tmp/y",           // -r
    "scp -r -d -t /tmp/",         // -r, two sources
    "scp -r -f /tmp/y",           // -r download
    "scp -p -t /tmp/y",           // -p
    "scp -r -p -d -t /tmp/",      // -rp
    "scp -r -p -f -- -dash",      // -rp
    "scp -v -t /tmp/y",           // -v
    "scp -v -d -t /tmp/",         // -v
    "scp -v -f /tmp/y",           // -v
    "/usr/bin/scp -f -- x",       // a standard path
    "/usr/local/bin/scp -t /srv", // a locally built OpenSSH
];

/// rsync's remote commands; the client options in the comment.
const REAL_RSYNC: &[&str] = &[
    "rsync --server -vlogDtpre.iLsfxCIvu . /tmp/dst",            // -av
    "rsync --server --sender -vlogDtpre.iLsfxCIvu . /tmp/src/",  // -av, pull
    "rsync --server -logDtpre.iLsfxCIvu . /tmp/dst",             // -a
    "rsync --server --sender -logDtpre.iLsfxCIvu . /tmp/src/",   // -a, pull
    "rsync --server -vlogDtprze.iLsfxCIvu . /tmp/dst",           // -avz
    "rsync --server --sender -vlogDtprze.iLsfxCIvu . /tmp/src/", // -avz, pull
    "rsync --server -logDtpre.iLsfxCIvu --delete . /tmp/dst",    // --delete
    "rsync --server -logDtpre.iLsfxCIvu --partial . /tmp/dst",   // --partial
    "rsync --server -logDtpre.iLsfxCIvu --log-format=X --partial . /tmp/dst", // -P
    "rsync --server -logDtprce.iLsfxCIvu . /tmp/dst",            // --checksum
    "rsync --server --sender -logDtprce.iLsfxCIvu . /tmp/src/",  // --checksum, pull
    "rsync --server -logDtpre.iLsfxCIvu --inplace . /tmp/dst",   // --inplace
    "rsync --server --sender -logDtpre.iLsfxCIvu --inplace . /tmp/src/", // --inplace, pull
    "rsync --server -lHogDtpAXre.iLsfxCIvu . /tmp/dst",          // -aHAX
    "rsync --server --sender -lHogDtpAXre.iLsfxCIvu . /tmp/src/", // -aHAX, pull
    "rsync --server -re.iLsfxCIvu . /tmp/dst",                   // -r
    "rsync --server -vlogDtprze.iLsfxCIvu --delete --partial . /tmp/dst", // -avz --delete --partial --progress
    "rsync --server -logDtpre.LsfxCIvu . /tmp/dst",              // --no-inc-recursive
    "rsync --server -logDtpre.iLsfxCIvu --compress-choice=zstd . /tmp/dst", // --zc=zstd
    "rsync --server -logDtpre.iLsfxCIvu --mkpath . /tmp/dst",    // --mkpath
    "rsync --server --sender -logDtpre.iLsfxCIvu --bwlimit=1000 . /tmp/src/", // --bwlimit
    "rsync --server -logDtpre.iLsfxCIvu --delete-during . /tmp/dst", // --del
    "rsync --server -logDtpre.iLsfxCIvu --timeout=30 . /tmp/dst", // --timeout
    "rsync --server -logDtpre.iLsfxCIvu --append --append . /tmp/dst", // --append-verify
    "rsync --server -logDtprSe.iLsfxCIvu . /tmp/dst",            // --sparse
    "rsync --server -blogDtpre.iLsfxCIvu . /tmp/dst",            // --backup
    "rsync --server -nlogDtpre.iLsfxCIvu . /tmp/dst",            // -n
    "rsync --server -lWogDtpre.iLsfxCIvu . /tmp/dst",            // -W
    "rsync --server -logDtpre.iLsfxCIvu --max-size=1048576 . /tmp/dst", // --max-size=1M
    "rsync --server -logDtpre.iLsfxCIvu --partial-dir .p . /tmp/dst", // --partial-dir=.p
    "rsync --server -logDtpre.iLsfxCIvu --temp-dir /tmp . /tmp/dst", // --temp-dir=/tmp
    "rsync --server -logDtpre.iLsfxCIvu --iconv=utf8 . /tmp/dst", // --iconv
    "rsync --server -logDtprze.iLsfxCIvu --old-compress . /tmp/dst", // --zc=zlib
    "rsync --server -logDtpre.iLsfxCIvu --compress-level=3 . /tmp/dst", // --zl=3
    "rsync --server --sender -logDtprRe.iLsfxCIvu . /tmp/src/ /tmp/s2", // -aR, two sources
    "rsync --server --sender -de.LsfxCIvu . /tmp/src/ /tmp/s2",  // -d
    "rsync --server -logDtpre.iLsfxCIvu --list-only . /tmp/dst", // --list-only
    "rsync --server -lJogDtUUpre.iLsfxCIvu . /tmp/dst",          // -aJUU
    "rsync --server -Ere.iLsfxCIvu . /tmp/dst",                  // -rE
    "rsync --server -lmogDtpre.iLsfxCIvu . /tmp/dst",            // -am
    "rsync --server -blogDtpre.iLsfxCIvu --backup-dir /tmp/bk . /tmp/dst", // --backup-dir
    "rsync --server -blogDtpre.iLsfxCIvu --suffix=.bak . /tmp/dst", // --suffix
    "rsync --server -logDtpre.iLsfxCIvu --link-dest /tmp/l . /tmp/dst", // --link-dest
    "rsync --server -logDtpre.iLsfxCIvu -@-1 . /tmp/dst",        // --modify-window=-1
    "rsync --server -logDtpre.iLsfxCIvu -B4096 . /tmp/dst",      // -B 4096
    "rsync --server -logDtpre.iLsfxCIvu --usermap=1:2 . /tmp/dst", // --usermap
    "rsync --server --sender -logDtpRe.LsfxCIvu --files-from=- --from0 . /tmp/src", // --files-from
    "rsync --server -logDtpRe.LsfxCIvu --files-from /tmp/ff . /tmp/dst", // --files-from=host:FILE
    "rsync --server -qlogDtpre.iLsfxCIvu --numeric-ids . /tmp/dst", // -q --numeric-ids
    "rsync --server -logDtpre.iLsfxCIvu --log-format=%i%I . /tmp/dst", // -ii
    "rsync --server -ldogDtpe.LsfxCIvu --no-r --delete . /tmp/dst", // --dirs --delete
    "rsync --server -logDtpre.iLsfxCIvu --log-file=/tmp/x . /tmp/dst", // -M--log-file
    "rsync --server -logDtpre.iLsfxCIvu . .",                    // host:
    "rsync --server -logDtpre.iLsfxCIvu . rel/dir",              // host:rel/dir
    "rsync --server -logDtpre.iLsfxCIvu . ./-x",                 // host:-x
    "rsync --server -e.Lsfx . x",                                // older clients
    "/usr/bin/rsync --server --sender -e32.1iLsfx . /srv/a",     // a pre-release client
];

/// The report's attacks, and their neighbours.
const ATTACKS: &[&str] = &[
    // scp run as a client on the node: its ProxyCommand runs.
    r#"scp -oProxyCommand="touch /tmp/PWN" /etc/hostname x:/tmp/y"#,
    "scp -oProxyCommand=/tmp/d/x /etc/hostname x:/tmp/y",
    "scp -S /tmp/d/x /etc/hostname x:/tmp/y",
    "scp -t -oProxyCommand=x /tmp",
    "scp -f -oProxyCommand=x",
    // An uploaded program that is called scp or rsync.
    "/tmp/d/scp -t /tmp",
    "/tmp/d/rsync --server -logDtpre.iLsfxCIvu . /tmp",
    "/tmp/d/rsync --server . /tmp",
    "./scp -t /tmp",
    "/usr/bin/../../tmp/d/scp -t /tmp",
    "PATH=/tmp/d scp -t /tmp",
    "/usr/bin//scp -t /tmp",
    // Shell syntax around a real server line.
    "scp -t /tmp; sh",
    "scp -t $(id)",
    "scp -t `id`",
    "scp -t /tmp\nsh",
    "scp\t-t /tmp",
    "scp -t /tmp #x",
    "scp -t ~/x",
    "scp -f /tmp/*",
    "scp -f /tmp/{a,b}",
    "scp -t '/tmp'",
    "scp -t \"/tmp\"",
    "scp -t /tm\\p",
    "scp -t (x)",
    "scp -f =sh",
    "rsync --server -logDtpre.iLsfxCIvu . %1",
    "rsync --server x && id",
    "rsync --server -logDtpre.iLsfxCIvu . /tmp/y | sh",
    " scp -t /tmp",
    "scp -t /tmp ",
    "scp  -t /tmp",
    // Not the server grammar.
    "scp a b",
    "scp -t",
    "scp -t /a /b",
    "scp -t -f /x",
    "scp -pt /tmp",
    "scp -t -t /tmp",
    "scp -T -t /tmp",
    "scp -f -x",
    "rsync --server --daemon .",
    "rsync --server --daemon --config=/tmp/d/rsyncd.conf .",
    "rsync --server -logDtpre.iLsfxCIvu --rsh=sh . /tmp",
    "rsync --server -logDtpre.iLsfxCIvu --rsync-path=/tmp/d/x . /tmp",
    "rsync --server -essh . /tmp",
    "rsync --server -e . /tmp",
    "rsync --server -slogDtpre.iLsfxCIvu",
    "rsync --server -logDtpre.iLsfxCIvu --write-devices . /tmp",
    "rsync --server . /tmp --daemon",
    "rsync --server . /a /b",
    "rsync --server --sender .",
    "rsync --server -logDtpre.iLsfxCIvu --sender . /tmp",
    "rsync --server -logDtpre.iLsfxCIvu --temp-dir --daemon . /tmp",
    "rsync -e sh x:y z",
    "rsync --server -logDtpre.iLsfxCIvu --usermap=\\*:1 . /tmp",
    "",
];

#[test]
fn what_real_clients_send_is_a_transfer() {
    for line in REAL_SCP {
        assert_eq!(classify_command(line), Kind::Scp, "{line}");
    }
    for line in REAL_RSYNC {
        assert_eq!(classify_command(line), Kind::Rsync, "{line}");
    }
}

#[test]
fn the_reported_attacks_are_commands() {
    for line in ATTACKS {
        assert_eq!(classify_command(line), Kind::Exec, "{line:?}");
    }
}

/// Characters a shell (sh, bash, zsh, fish, csh) may give a meaning, and
/// bytes no stock client puts in a server line.
const SPECIAL: &[char] = &[
    '"', '\'', '\\', '*', '?', '[', ']', '~', '{', '}', '#', '$', '(', ')', ';', '&', '|', '<', '>', '`', '!', '^',
    '\t', '\n', '\r', '\0', '\u{7f}', 'é', '\u{a0}',
];

/// A path word: plain, not starting with `-`.
fn path() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._/][A-Za-z0-9._/+,:@%=-]{0,15}"
}

/// A generated scp server line, as words, and how many of its words come
/// before `--` or the first path.
fn scp_line() -> impl Strategy<Value = (Vec<String>, usize)> {
    (
        select(SCP.to_vec()),
        subsequence(vec!["-v", "-r", "-p", "-d"], 0..=4).prop_shuffle(),
        any::<bool>(),
        any::<prop::sample::Index>(),
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(path(), 1..4),
    )
        .prop_map(|(program, mut flags, sink, at, dashdash, dash_path, mut paths)| {
            flags.insert(at.index(flags.len() + 1), if sink { "-t" } else { "-f" });
            if sink {
                paths.truncate(1);
            }
            if dashdash && dash_path {
                paths[0].insert(0, '-');
            }
            let mut words: Vec<String> = std::iter::once(program).chain(flags).map(String::from).collect();
            let options_end = words.len();
            if dashdash {
                words.push("--".into());
            }
            words.extend(paths);
            (words, options_end)
        })
}

fn rsync_long() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        select(RSYNC_LONG_FLAGS.to_vec()).prop_map(|n| vec![format!("--{n}")]),
        (select(RSYNC_LONG_VALUES.to_vec()), "[A-Za-z0-9._/+,:@%=-]{0,8}")
            .prop_map(|(n, v)| vec![format!("--{n}={v}")]),
        (select(RSYNC_LONG_VALUES.to_vec()), path()).prop_map(|(n, v)| vec![format!("--{n}"), v]),
        "[0-9]{1,6}".prop_map(|n| vec![format!("-B{n}")]),
        "-?[0-9]{1,3}".prop_map(|n| vec![format!("-@{n}")]),
    ]
}

/// A generated rsync server line, as words.
fn rsync_line() -> impl Strategy<Value = Vec<String>> {
    let letters: Vec<char> = RSYNC_SHORT.iter().map(|&c| c as char).collect();
    (
        select(RSYNC.to_vec()),
        any::<bool>(),
        subsequence(letters, 0..=10).prop_shuffle(),
        prop_oneof![
            Just(String::new()),
            "e\\.[A-Za-z]{0,8}",
            "e[0-9]{1,2}\\.[0-9]{1,2}[A-Za-z]{0,8}"
        ],
        prop::collection::vec(rsync_long(), 0..4),
        prop::collection::vec(path(), 1..4),
    )
        .prop_map(|(program, sender, letters, capabilities, longs, mut paths)| {
            let mut words = vec![program.to_string(), "--server".into()];
            if sender {
                words.push("--sender".into());
            } else {
                paths.truncate(1);
            }
            let short: String = letters.into_iter().collect::<String>() + &capabilities;
            if !short.is_empty() {
                words.push(format!("-{short}"));
            }
            words.extend(longs.into_iter().flatten());
            words.push(".".into());
            words.extend(paths);
            words
        })
}

/// Any generated server line, as words.
fn server_line() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![scp_line().prop_map(|(words, _)| words), rsync_line()]
}

/// Options that make scp a client (or that its server is never sent).
fn scp_bad_option() -> impl Strategy<Value = String> {
    prop_oneof![
        "-[oSFJPicDlX][A-Za-z0-9/=._-]{0,12}",
        select(vec![
            "-3", "-4", "-6", "-A", "-B", "-C", "-O", "-q", "-R", "-s", "-T", "-t", "-f", "-pt", "-rf"
        ])
        .prop_map(String::from),
    ]
}

/// Options that make an rsync server run something, or that only a client
/// takes: never on the allowlists.
fn rsync_bad_option() -> impl Strategy<Value = String> {
    prop_oneof![
        "-[vlogDtpr]{0,3}e[a-df-z/][A-Za-z0-9/._-]{0,10}",
        "--(rsh|rsync-path|config|dparam|address|port|password-file|early-input|copy-as|remote-option)=[A-Za-z0-9/._-]{0,10}",
        select(vec![
            "-e",
            "-s",
            "-vs",
            "-M--daemon",
            "--rsh",
            "--daemon",
            "--write-devices",
            "--copy-devices",
            "--no-munge-links",
            "--protect-args",
            "--secluded-args",
            "--server",
        ])
        .prop_map(String::from),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn generated_server_lines_are_transfers((words, _) in scp_line(), rsync in rsync_line()) {
        prop_assert_eq!(classify_command(&words.join(" ")), Kind::Scp, "{:?}", words);
        prop_assert_eq!(classify_command(&rsync.join(" ")), Kind::Rsync, "{:?}", rsync);
    }

    /// A shell-special character or foreign byte anywhere in a line the
    /// shell would otherwise pass on as it is makes the line a command.
    #[test]
    fn a_special_character_anywhere_makes_a_command(
        words in server_line(),
        special in select(SPECIAL.to_vec()),
        at in any::<prop::sample::Index>(),
    ) {
        let mut line = words.join(" ");
        line.insert(at.index(line.len() + 1), special);
        prop_assert_eq!(classify_command(&line), Kind::Exec, "{:?}", line);
    }

    /// Spaces other than one between words (the shell drops them, but a
    /// client never sends them) make a command.
    #[test]
    fn stray_spaces_make_a_command(words in server_line(), at in any::<prop::sample::Index>(), lead in any::<bool>()) {
        let line = words.join(" ");
        let spaced: Vec<usize> = line.match_indices(' ').map(|(i, _)| i).collect();
        let stray = if lead { format!(" {line}") } else { format!("{line} ") };
        let doubled = format!("{} {}", &line[..spaced[at.index(spaced.len())]], &line[spaced[at.index(spaced.len())]..]);
        prop_assert_eq!(classify_command(&stray), Kind::Exec, "{:?}", stray);
        prop_assert_eq!(classify_command(&doubled), Kind::Exec, "{:?}", doubled);
    }

    /// Only the standard spellings of scp and rsync name a transfer.
    #[test]
    fn any_other_program_makes_a_command(
        mut words in server_line(),
        program in prop_oneof![
            "[ -~]{0,20}",
            "(/[a-z.]{1,6}){1,3}/(scp|rsync)",
            "[A-Z]{1,4}=[a-z/]{0,6} (scp|rsync)",
            "(scp|rsync)[A-Za-z0-9/._=-]{1,4}",
        ],
    ) {
        let first = program.split(' ').next().unwrap_or("");
        prop_assume!(!SCP.contains(&first) && !RSYNC.contains(&first));
        words[0] = program;
        prop_assert_eq!(classify_command(&words.join(" ")), Kind::Exec, "{:?}", words);
    }

    /// An scp client option among the server's options makes a command.
    #[test]
    fn an_scp_client_option_makes_a_command(
        (mut words, options_end) in scp_line(),
        option in scp_bad_option(),
        at in any::<prop::sample::Index>(),
    ) {
        words.insert(1 + at.index(options_end), option);
        prop_assert_eq!(classify_command(&words.join(" ")), Kind::Exec, "{:?}", words);
    }

    /// An rsync option off the allowlists anywhere after the program (among
    /// the options, or where a path would be) makes a command.
    #[test]
    fn an_rsync_option_off_the_allowlist_makes_a_command(
        mut words in rsync_line(),
        option in rsync_bad_option(),
        at in any::<prop::sample::Index>(),
    ) {
        words.insert(1 + at.index(words.len()), option);
        prop_assert_eq!(classify_command(&words.join(" ")), Kind::Exec, "{:?}", words);
    }
}
