//! A second pair of eyes, through stock OpenSSH: `[break_glass] watch =
//! "required"` holds a break-glass session at the inner prompt until an
//! auditor who is not its user watches it (`sessions watch`), refuses it
//! after `watch_wait`, and notes the watcher in the manifest; terminators
//! end a running session with `sessions terminate ID --reason`, the
//! engineer's client prints who and why, the recording ends with it and
//! verifies; others are refused, and audited.

use std::process::Command;
use std::time::Duration;

use bastion_e2e::*;

const REASON: &str = "etcd quorum lost, API down";

struct Eyes {
    lab: Lab,
    _node: SshdNode,
    /// The engineer (k8s-ops).
    alice: LabUser,
    /// An engineer who is also an auditor: may not watch herself.
    dana: LabUser,
    /// An auditor and terminator.
    carol: LabUser,
    /// An auditor, not a terminator.
    erin: LabUser,
}

fn eyes(watch_wait: &str) -> Eyes {
    let mut lab = Lab::new();
    let node = SshdNode::start(SshdOptions {
        user_ca: Some(lab.user_ca().to_string()),
        ..Default::default()
    });
    let login = current_login();
    for (name, role) in [("node-1", "worker"), ("cp-1", "control-plane")] {
        lab.add_target_toml(&format!(
            "[[targets]]\nname = \"{name}\"\naddress = \"{}\"\nlabels = {{ role = \"{role}\" }}\nlogins = [\"{login}\"]\n\
             host_keys = [\"{}\"]\n",
            node.addr(),
            node.host_key_line()
        ));
    }
    let alice = lab.add_user_in("alice", &["k8s-ops"]);
    let dana = lab.add_user_in("dana", &["k8s-ops", "secops"]);
    let carol = lab.add_user_in("carol", &["secops", "incident-command"]);
    let erin = lab.add_user_in("erin", &["secops"]);
    lab.section(&format!(
        "[[rules]]\nname = \"ops\"\ngroups = [\"k8s-ops\"]\ntargets = [\"role=worker\", \"role=control-plane\"]\nlogins = [\"*\"]\n\n\
         [break_glass]\nreason_min = 10\nwatch = \"required\"\nwatch_wait = \"{watch_wait}\"\n\n\
         [console]\nauditors = [\"secops\"]\nterminators = [\"incident-command\"]\nurl = \"https://console.example:8443\"\n"
    ));
    lab.start();
    Eyes {
        lab,
        _node: node,
        alice,
        dana,
        carol,
        erin,
    }
}

fn bastion_cmd(e: &Eyes, who: &LabUser, args: &[&str]) -> Out {
    e.lab
        .ssh(who)
        .arg("bastion")
        .args(args)
        .timeout(Duration::from_secs(60))
        .run()
}

fn audit(e: &Eyes) -> String {
    read_lossy(&e.lab.dir().join("audit/audit.jsonl"))
}

/// A grant ahead of time, so the session itself asks nothing.
fn grant(e: &Eyes, who: &LabUser) {
    let quoted = format!("'{REASON}'");
    bastion_cmd(e, who, &["breakglass", "cp-1", "--reason", &quoted]).expect_ok();
}

/// `ssh -tt HOST COMMAND` as `who`, able to show the inner prompt's text
/// (BatchMode off; no prompt asks for an answer).
fn interactive(who: &LabUser, host: &str, command: &str) -> Gathered {
    let mut cmd = Command::new("ssh");
    cmd.arg("-F").arg(who.ssh_config_path()).args([
        "-o",
        "BatchMode=no",
        "-o",
        "NumberOfPasswordPrompts=1",
        "-tt",
        host,
        command,
    ]);
    Gathered::spawn(cmd)
}

/// The running sessions as `who` lists them.
fn running(e: &Eyes, who: &LabUser) -> Vec<serde_json::Value> {
    let out = bastion_cmd(e, who, &["sessions", "list", "--running", "--json"]);
    assert!(out.ok(), "{out}");
    serde_json::from_str(&out.stdout).unwrap_or_else(|err| panic!("{err}:\n{out}"))
}

/// The one running session of `user` (waits for it).
fn running_id(e: &Eyes, user: &str) -> String {
    let mut id = None;
    wait_until(Duration::from_secs(30), || {
        id = running(e, &e.carol)
            .iter()
            .find(|r| r["user"] == user)
            .and_then(|r| r["id"].as_str().map(str::to_string));
        id.is_some()
    });
    id.unwrap_or_else(|| panic!("no running session of {user}:\n{}", e.lab.log()))
}

/// The sealed manifest of `id`.
fn manifest(e: &Eyes, id: &str) -> serde_json::Value {
    let path = e.lab.dir().join("recordings").join(id).join("manifest.json");
    let mut m = None;
    wait_until(Duration::from_secs(30), || {
        m = serde_json::from_str(&read_lossy(&path)).ok();
        m.is_some()
    });
    m.unwrap_or_else(|| panic!("no manifest for {id}:\n{}", e.lab.log()))
}

#[test]
fn a_required_watcher_holds_break_glass_until_an_auditor_watches() {
    let e = eyes("60s");
    grant(&e, &e.alice);
    let mut alice = interactive(&e.alice, "cp-1", "echo CP-OPEN; read x; echo \"got-$x\"");
    assert!(
        alice.shows("waiting for a second person to watch; on-call has been alerted"),
        "{}\n{}",
        alice.text(),
        e.lab.log()
    );
    let id = running_id(&e, "alice");
    let listed = running(&e, &e.carol);
    assert_eq!(listed[0]["held_for_watcher"], true, "{listed:?}");
    // Held: nothing reached the node.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!alice.text().contains("CP-OPEN"), "{}", alice.text());

    // Someone who is not an auditor may not watch; a user never watches herself.
    let refused = bastion_cmd(&e, &e.alice, &["sessions", "watch", &id]);
    assert!(!refused.ok() && refused.stderr.contains("for auditors"), "{refused}");

    // The auditor watches: the session opens, and both see it.
    let mut cmd = Command::new("ssh");
    cmd.arg("-F")
        .arg(e.carol.ssh_config_path())
        .args(["-tt", "bastion", "sessions", "watch", &id]);
    let carol = Gathered::spawn(cmd);
    assert!(alice.shows("CP-OPEN"), "{}\n{}", alice.text(), e.lab.log());
    assert!(carol.shows("CP-OPEN"), "{}", carol.text());
    alice.type_text("seen\r");
    assert!(carol.shows("got-seen"), "{}", carol.text());
    assert!(alice.ended().is_some_and(|s| s.success()), "{}", alice.text());

    let m = manifest(&e, &id);
    let watchers = m["watchers"].as_array().cloned().unwrap_or_default();
    assert_eq!(watchers.len(), 1, "{m}");
    assert_eq!(watchers[0]["user"], "carol");
    assert_eq!(watchers[0]["door"], "ssh");
    let a = audit(&e);
    assert!(a.contains("\"event\":\"breakglass.watched\""), "{a}");
    let alert = a
        .lines()
        .find(|l| l.contains("\"event\":\"breakglass.session_started\"") && l.contains(&id))
        .unwrap_or_else(|| panic!("{a}"));
    assert!(
        alert.contains(&format!("https://console.example:8443/sessions/{id}/live"))
            && alert.contains("\"watch\":\"required\""),
        "{alert}"
    );
    let verify = bastion_cmd(&e, &e.carol, &["sessions", "verify", &id]);
    assert!(verify.ok(), "{verify}");
}

#[test]
fn an_unwatched_session_is_refused_after_the_wait_and_nobody_watches_themselves() {
    let e = eyes("6s");
    grant(&e, &e.dana);
    let mut dana = interactive(&e.dana, "cp-1", "echo CP-OPEN");
    assert!(dana.shows("waiting for a second person"), "{}", dana.text());
    let id = running_id(&e, "dana");
    // Dana is an auditor, but not of her own session.
    let own = bastion_cmd(&e, &e.dana, &["sessions", "watch", &id]);
    assert!(!own.ok() && own.stderr.contains("your own session"), "{own}");
    let status = dana.ended();
    assert!(status.is_some_and(|s| !s.success()), "{}", dana.text());
    assert!(
        dana.text().contains("nobody started watching within 6s"),
        "{}",
        dana.text()
    );
    assert!(!dana.text().contains("CP-OPEN"), "{}", dana.text());
    let a = audit(&e);
    assert!(a.contains("\"event\":\"breakglass.unwatched\""), "{a}");
    assert!(a.contains("\"event\":\"console.watch_refused\""), "{a}");
    // The held time is recorded too, and ends closed with no channel.
    let m = manifest(&e, &id);
    assert_eq!(m["channels"].as_array().map(Vec::len), Some(0), "{m}");
}

#[test]
fn a_terminator_ends_a_session_and_the_recording_says_who_and_why() {
    let e = eyes("60s");
    // A worker session: no watcher needed.
    let alice = interactive(&e.alice, "node-1", "echo WORKER-IN; sleep 600");
    assert!(alice.shows("WORKER-IN"), "{}\n{}", alice.text(), e.lab.log());
    let id = running_id(&e, "alice");

    let reason = "'rogue rm on a node'";
    for (who, why) in [(&e.alice, "for the groups"), (&e.erin, "for the groups")] {
        let out = bastion_cmd(&e, who, &["sessions", "terminate", &id, "--reason", reason]);
        assert!(!out.ok() && out.stderr.contains(why), "{out}");
    }
    let escape = bastion_cmd(
        &e,
        &e.carol,
        &["sessions", "terminate", &id, "--reason", "'stop\u{1b}[2J'"],
    );
    assert!(!escape.ok() && escape.stderr.contains("plain text"), "{escape}");

    let out = bastion_cmd(&e, &e.carol, &["sessions", "terminate", &id, "--reason", reason]);
    assert!(out.ok(), "{out}\n{}", e.lab.log());
    let mut alice = alice;
    assert!(alice.ended().is_some(), "{}", alice.text());
    assert!(
        alice.text().contains("session terminated by carol: rogue rm on a node"),
        "{}",
        alice.text()
    );

    let m = manifest(&e, &id);
    assert_eq!(m["ended_how"], "terminated", "{m}");
    assert_eq!(m["terminated"]["by"], "carol", "{m}");
    assert_eq!(m["terminated"]["reason"], "rogue rm on a node", "{m}");
    let verify = bastion_cmd(&e, &e.carol, &["sessions", "verify", &id]);
    assert!(verify.ok(), "{verify}");
    // The recording ends with the termination (the closes that follow it).
    let export = bastion_cmd(&e, &e.carol, &["sessions", "export", &id]);
    assert!(
        export
            .stdout
            .contains("session terminated by carol: rogue rm on a node"),
        "{export}"
    );

    // A session held for a watcher can be ended too: it is never let in.
    grant(&e, &e.alice);
    let mut held = interactive(&e.alice, "cp-1", "echo CP-OPEN");
    assert!(held.shows("waiting for a second person"), "{}", held.text());
    let held_id = running_id(&e, "alice");
    let out = bastion_cmd(
        &e,
        &e.carol,
        &["sessions", "terminate", &held_id, "--reason", "'not now'"],
    );
    assert!(out.ok(), "{out}");
    assert!(held.ended().is_some_and(|s| !s.success()), "{}", held.text());
    assert!(
        held.text().contains("session terminated by carol: not now"),
        "{}",
        held.text()
    );
    assert!(!held.text().contains("CP-OPEN"), "{}", held.text());

    let a = audit(&e);
    let refused = a
        .lines()
        .filter(|l| l.contains("\"event\":\"console.terminate_refused\""))
        .count();
    assert_eq!(refused, 3, "{a}");
    assert!(
        a.lines().any(|l| l.contains("\"event\":\"console.terminate\"")
            && l.contains("\"viewer\":\"carol\"")
            && l.contains(&id)),
        "{a}"
    );
}
