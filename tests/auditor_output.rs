//! What an auditor's terminal receives, through stock OpenSSH and the demo:
//! a session whose exec command line, refused subsystem name and sftp path
//! carry terminal attacks (OSC 52 clipboard write, `ESC [6n` device status
//! query, a title, `\r ESC[2K` and a fake `exec uptime`, C1 CSI, a
//! right-to-left override) is shown by `sessions show`, `list`, `search`,
//! `verify`, `export` and the error paths with every such character escaped and
//! visible, never raw.

use std::fs;
use std::time::Duration;

use bastion_e2e::*;

/// The attacks, each as a recorded string would carry it.
const OSC52: &str = "\x1b]52;c;ZXZpbA==\x07";
const DSR: &str = "\x1b[6n";
const FAKE_LINE: &str = "\r\x1b[2K exec uptime";
const C1_CSI: &str = "\u{9b}6n";
const RLO: &str = "\u{202e}gnp.sh";

fn hostile() -> String {
    format!("{OSC52} {DSR} \x1b]0;owned\x07 {C1_CSI} {RLO} {FAKE_LINE}")
}

/// Judged here, independently of the code under test: what a terminal acts
/// on or what reorders or hides text.
fn dangerous(c: char) -> bool {
    matches!(c,
        '\x00'..='\x08' | '\x0b'..='\x1f' | '\x7f'..='\u{9f}'
        | '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        // Raw bytes that were not UTF-8 arrive here as replacement characters.
        | '\u{fffd}')
}

#[track_caller]
fn assert_inert(what: &str, text: &str) {
    if let Some(c) = text.chars().find(|&c| dangerous(c)) {
        panic!("{what} sends {c:?} raw to the auditor's terminal:\n{text:?}");
    }
}

fn sessions(demo: &Demo, args: &[&str]) -> Out {
    bastion(demo, "sessions", args)
}

fn bastion(demo: &Demo, command: &str, args: &[&str]) -> Out {
    Cmd::new(bastion_bin())
        .arg(command)
        .args(args)
        .arg("--config")
        .arg(demo.config_path())
        .timeout(Duration::from_secs(120))
        .run()
}

/// The ids of the recorded sessions, once at least `n` are sealed.
fn sealed_ids(demo: &Demo, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    wait_until(Duration::from_secs(60), || {
        let out = sessions(demo, &["list", "--json"]);
        let rows: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap_or_default();
        ids = rows
            .iter()
            .filter(|r| r["ended_how"] != "running")
            .filter_map(|r| r["id"].as_str().map(str::to_string))
            .collect();
        ids.len() >= n
    });
    assert!(
        ids.len() >= n,
        "only {} sessions sealed:\n{}",
        ids.len(),
        demo.bastion_log()
    );
    ids
}

#[test]
fn recorded_attacks_reach_the_auditor_escaped() {
    let demo = Demo::start();
    let node = demo.node().to_string();
    let attack = hostile();
    // The output carries the attack too (for search); the comment keeps
    // the shell away from the rest of the command line.
    let exec = ssh(&demo)
        .arg(&node)
        .arg(format!(
            "echo 'SEARCH-MARK {RLO} {C1_CSI}'; echo 'AUDIT-MARK {attack} END'; exit 0 # {attack}"
        ))
        .run();
    assert!(exec.ok() && exec.stdout.contains("AUDIT-MARK"), "{exec:?}");
    // A subsystem the node does not have: refused, and its name recorded.
    let subsystem = format!("sftp{DSR}{RLO}");
    let _ = ssh(&demo).arg("-s").arg(&node).arg(&subsystem).run();
    // An sftp upload to a path that is an attack.
    let scratch = demo.scratch("sftp");
    let local = scratch.join("payload");
    fs::write(&local, "payload\n").unwrap();
    let remote = format!("/tmp/bastion-e2e-{}-{RLO}{DSR}{C1_CSI}", std::process::id());
    let batch = scratch.join("batch");
    fs::write(&batch, format!("put {} \"{remote}\"\n", local.display())).unwrap();
    let sftp = sftp_batch(&demo, &batch, &node).run();
    let _ = fs::remove_file(&remote);
    assert!(sftp.ok(), "{sftp:?}");

    let ids = sealed_ids(&demo, 3);
    let mut shown = String::new();
    for id in &ids {
        let show = sessions(&demo, &["show", id]);
        assert_inert("sessions show", &show.all_output());
        shown.push_str(&show.stdout);
    }
    // Each attack is there, as visible text.
    for escaped in [
        "\\x1b]52;c;ZXZpbA==\\x07",
        "\\x1b[6n",
        "\\r\\x1b[2K exec uptime",
        "\\u{9b}6n",
        "\\u{202e}gnp.sh",
    ] {
        assert!(shown.contains(escaped), "`sessions show` lacks {escaped}:\n{shown:?}");
    }
    assert!(
        shown.contains("(upload)") && shown.contains("/tmp/bastion-e2e-"),
        "{shown:?}"
    );

    let list = sessions(&demo, &["list"]);
    assert!(list.ok(), "{list:?}");
    assert_inert("sessions list", &list.all_output());
    let json = sessions(&demo, &["list", "--json"]);
    assert_inert("sessions list --json", &json.all_output());
    let rows: Vec<serde_json::Value> = serde_json::from_str(&json.stdout).expect("list --json is JSON");
    assert!(rows.len() >= 3, "{rows:?}");

    // Search echoes the query: a hostile one is escaped too.
    let missed = sessions(&demo, &["search", &format!("NOWHERE{DSR}{RLO}")]);
    assert_eq!(missed.code(), Some(1), "{missed:?}");
    assert_inert("sessions search (no match)", &missed.all_output());
    assert!(missed.stdout.contains("NOWHERE\\x1b[6n\\u{202e}"), "{missed:?}");

    // A hit shows the screen line, which still holds what the terminal
    // rendering left of the attack (the bidi override, a C1 CSI).
    let found = sessions(&demo, &["search", "SEARCH-MARK"]);
    assert!(found.ok(), "{found:?}");
    assert_inert("sessions search (hit)", &found.all_output());
    assert!(found.stdout.contains("SEARCH-MARK \\u{202e}"), "{found:?}");

    // An export is JSON text someone will `cat`: C1 and bidi controls are
    // JSON escapes there, and the file still plays in stock asciinema.
    let exec_id = ids
        .iter()
        .find(|id| sessions(&demo, &["show", id]).stdout.contains("SEARCH-MARK"))
        .expect("the exec session");
    let cast = demo.scratch("export").join("exec.cast");
    sessions(&demo, &["export", exec_id, "--out", cast.to_str().unwrap()]).expect_ok();
    let text = read_lossy(&cast);
    assert_inert("sessions export", &text);
    assert!(text.contains("\\u009b6n") && text.contains("\\u202egnp.sh"), "{text:?}");
    let played = Cmd::new("asciinema").arg("cat").arg(&cast).run().expect_ok();
    assert!(played.stdout.contains("SEARCH-MARK \u{202e}"), "{played:?}");

    let verify = sessions(&demo, &["verify", "--all"]);
    assert_inert("sessions verify", &verify.all_output());

    // Error paths quote what they were given.
    let bad = sessions(&demo, &["show", &format!("no-such{OSC52}")]);
    assert!(!bad.ok(), "{bad:?}");
    assert_inert("sessions show (error)", &bad.all_output());
    let who = bastion(
        &demo,
        "policy",
        &["explain", &format!("mallory{DSR}{RLO}"), &format!("root@{node}")],
    );
    assert_inert("policy explain", &who.all_output());
}
