//! Which commands are file transfers: the legacy scp server (`scp -t` /
//! `scp -f`) and the rsync server (`rsync --server`), so that a rule can
//! allow file transfer and nothing else.
//!
//! The node's login shell reads the command line, so a line counts as a
//! transfer only when that shell can do nothing with it but split it at
//! spaces, and only when it is the line a stock client sends (OpenSSH 9.2
//! `scp -O`, rsync 3.2.7): the program by bare name or at a standard
//! absolute path, then only the options those server modes take. The
//! grammar is closed: whatever it does not describe is [`Kind::Exec`].

use crate::Kind;

/// How the programs may be named: found on the node's `PATH`, or at a
/// standard place. Any other path could be a file the user uploaded.
const SCP: [&str; 4] = ["scp", "/usr/bin/scp", "/bin/scp", "/usr/local/bin/scp"];
const RSYNC: [&str; 4] = ["rsync", "/usr/bin/rsync", "/bin/rsync", "/usr/local/bin/rsync"];

/// Punctuation a plain word may hold: none of it means anything to a POSIX
/// shell (nor to bash, zsh, fish or csh) inside a word.
const PLAIN_PUNCTUATION: &[u8] = b"._/+,:@%=-";

/// The rsync server's short options that take no argument (rsync's own
/// `support/rrsync` list), without `s`: with protect-args the real
/// arguments come over the connection, where nothing here sees them.
const RSYNC_SHORT: &[u8] = b"ACDEHIJKLNORSUWXbcdgklmnopqrtuvxyz";

/// Long options an rsync client sends its server that take no argument.
/// Missing on purpose: `--daemon` (runs a config file's commands),
/// `--write-devices`, `--copy-devices`, `--no-munge-links`, and everything
/// that only a client uses (`--rsh`, `--rsync-path`, `--config`, …).
const RSYNC_LONG_FLAGS: &[&str] = &[
    "append",
    "copy-unsafe-links",
    "delay-updates",
    "delete",
    "delete-after",
    "delete-before",
    "delete-delay",
    "delete-during",
    "delete-excluded",
    "delete-missing-args",
    "existing",
    "fake-super",
    "force",
    "from0",
    "fsync",
    "fuzzy",
    "group",
    "hard-links",
    "ignore-errors",
    "ignore-existing",
    "ignore-missing-args",
    "ignore-times",
    "inplace",
    "links",
    "list-only",
    "mkpath",
    "msgs2stderr",
    "munge-links",
    "new-compress",
    "no-W",
    "no-implied-dirs",
    "no-msgs2stderr",
    "no-r",
    "no-relative",
    "no-specials",
    "numeric-ids",
    "old-compress",
    "one-file-system",
    "open-noatime",
    "owner",
    "partial",
    "perms",
    "preallocate",
    "recursive",
    "remove-sent-files",
    "remove-source-files",
    "safe-links",
    "size-only",
    "specials",
    "stats",
    "super",
    "times",
    "use-qsort",
];

/// Long options an rsync client sends its server with a value, as
/// `--name=value` or as two words (`--temp-dir DIR`).
const RSYNC_LONG_VALUES: &[&str] = &[
    "backup-dir",
    "block-size",
    "bwlimit",
    "checksum-choice",
    "checksum-seed",
    "compare-dest",
    "compress-choice",
    "compress-level",
    "compress-threads",
    "copy-dest",
    "debug",
    "files-from",
    "groupmap",
    "iconv",
    "info",
    "link-dest",
    "log-file",
    "log-format",
    "max-alloc",
    "max-delete",
    "max-size",
    "min-size",
    "modify-window",
    "only-write-batch",
    "partial-dir",
    "skip-compress",
    "stderr",
    "suffix",
    "temp-dir",
    "timeout",
    "usermap",
];

/// What kind of transfer a command is: [`Kind::Scp`] for an scp server,
/// [`Kind::Rsync`] for an rsync server, [`Kind::Exec`] for anything else.
pub fn classify_command(command: &str) -> Kind {
    let words: Vec<&str> = command.split(' ').collect();
    if !words.iter().all(|w| is_plain(w)) {
        return Kind::Exec;
    }
    match words.split_first() {
        Some((program, args)) if SCP.contains(program) && is_scp_server(args) => Kind::Scp,
        Some((program, args)) if RSYNC.contains(program) && is_rsync_server(args) => Kind::Rsync,
        _ => Kind::Exec,
    }
}

/// A word the shell passes on as it is: ASCII letters, digits and
/// [`PLAIN_PUNCTUATION`], not empty (no runs of spaces, none at either
/// end) and not starting with `=` (zsh's `=cmd`) or `%` (a job).
fn is_plain(word: &str) -> bool {
    match word.as_bytes() {
        [] | [b'=' | b'%', ..] => false,
        bytes => bytes
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || PLAIN_PUNCTUATION.contains(c)),
    }
}

/// `[-v] [-r] [-p] [-d] (-t|-f) [--] PATH…`, each flag a word of its own and
/// at most once, in any order: what OpenSSH's scp runs on the far side. A
/// sink (`-t`) takes one target, a source (`-f`) one or more files. A path
/// may start with `-` only after `--`, since getopt would read it as an
/// option (`-oProxyCommand=…`) wherever it stands.
fn is_scp_server(args: &[&str]) -> bool {
    let mut seen = Vec::new();
    let mut rest = args;
    while let [flag, tail @ ..] = rest {
        match flag.as_bytes() {
            [b'-', letter] if b"vrpdtf".contains(letter) && !seen.contains(letter) => seen.push(*letter),
            _ => break,
        }
        rest = tail;
    }
    let sink = seen.contains(&b't');
    if sink == seen.contains(&b'f') {
        return false;
    }
    let (after_dashdash, paths) = match rest {
        ["--", paths @ ..] => (true, paths),
        paths => (false, paths),
    };
    let count_ok = if sink { paths.len() == 1 } else { !paths.is_empty() };
    count_ok && (after_dashdash || paths.iter().all(|p| !p.starts_with('-')))
}

/// `--server [--sender] OPTION… . PATH…`: what an rsync client runs on the
/// far side. Options come from the allowlists above; the receiver takes one
/// destination, the sender one or more sources. No path may start with `-`:
/// rsync reads options after the `.` as well (a real client sends `./-x`).
fn is_rsync_server(args: &[&str]) -> bool {
    let (sender, mut rest) = match args {
        ["--server", "--sender", rest @ ..] => (true, rest),
        ["--server", rest @ ..] => (false, rest),
        _ => return false,
    };
    let paths = loop {
        match rest {
            [".", paths @ ..] => break paths,
            [] => return false,
            words => match rsync_option(words) {
                Some(taken) => rest = &words[taken..],
                None => return false,
            },
        }
    };
    let count_ok = if sender { !paths.is_empty() } else { paths.len() == 1 };
    count_ok && paths.iter().all(|p| !p.starts_with('-'))
}

/// How many words the option at the head of `words` takes (two for
/// `--temp-dir DIR`, whose value may not look like an option), or `None`
/// when it is not one a client sends a server.
fn rsync_option(words: &[&str]) -> Option<usize> {
    let word = words.first()?;
    if is_rsync_short(word) {
        return Some(1);
    }
    let long = word.strip_prefix("--")?;
    match long.split_once('=') {
        Some((name, _value)) => RSYNC_LONG_VALUES.contains(&name).then_some(1),
        None if RSYNC_LONG_FLAGS.contains(&long) => Some(1),
        None if RSYNC_LONG_VALUES.contains(&long) => words.get(1).filter(|v| !v.starts_with('-')).map(|_| 2),
        None => None,
    }
}

/// One word of short options: `-B<n>` (block size), `-@<n>` (a negative
/// modify window), or letters from [`RSYNC_SHORT`] optionally ending in
/// `e.FLAGS` / `e<ver>.<sub>FLAGS`, the protocol capabilities the client
/// announces (to a server, `-e` is never a remote shell).
fn is_rsync_short(word: &str) -> bool {
    let Some(body) = word.strip_prefix('-') else {
        return false;
    };
    if let Some(n) = body.strip_prefix('B') {
        return is_number(n);
    }
    if let Some(n) = body.strip_prefix('@') {
        return is_number(n.strip_prefix('-').unwrap_or(n));
    }
    let (letters, capabilities) = body.split_once('e').unwrap_or((body, ""));
    let letters_ok = letters.bytes().all(|c| RSYNC_SHORT.contains(&c));
    let capabilities_ok = body.len() == letters.len() || is_capabilities(capabilities);
    !body.is_empty() && letters_ok && capabilities_ok
}

/// What follows `-e` for a server: `.` or `<ver>.<sub>`, then letters.
fn is_capabilities(text: &str) -> bool {
    let version = text.split(|c: char| c.is_ascii_alphabetic()).next().unwrap_or("");
    let flags = &text[version.len()..];
    let version_ok = version == "."
        || version
            .split_once('.')
            .is_some_and(|(v, s)| is_number(v) && is_number(s));
    version_ok && flags.bytes().all(|c| c.is_ascii_alphabetic())
}

fn is_number(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
#[path = "command_tests.rs"]
mod tests;
