//! The auditor console over SSH, through stock OpenSSH: an auditor (by
//! directory group) lists, searches, shows, exports and verifies every
//! session without a shell on the bastion host; a user sees only their own,
//! and another's session is answered exactly like one that does not exist;
//! reviewing and `verify --all` are refused to those without the role;
//! every read is in the audit trail.

use std::time::Duration;

use bastion_e2e::*;

struct Setup {
    lab: Lab,
    _node: SshdNode,
    alice: LabUser,
    bob: LabUser,
    carol: LabUser,
}

fn setup() -> Setup {
    let mut lab = Lab::new();
    let node = SshdNode::start(SshdOptions {
        user_ca: Some(lab.user_ca().to_string()),
        ..Default::default()
    });
    let login = current_login();
    lab.add_target("node-a", &node.addr(), &[&login], &[node.host_key_line()]);
    let alice = lab.add_user_in("alice", &["k8s-ops"]);
    let bob = lab.add_user_in("bob", &["k8s-ops"]);
    let carol = lab.add_user_in("carol", &["SecOps"]);
    lab.section("[console]\nauditors = [\"secops\"]\nreviewers = [\"secops-leads\"]\n");
    lab.start();
    Setup {
        lab,
        _node: node,
        alice,
        bob,
        carol,
    }
}

fn bastion_cmd(s: &Setup, who: &LabUser, args: &[&str]) -> Out {
    s.lab
        .ssh(who)
        .arg("bastion")
        .args(args)
        .timeout(Duration::from_secs(60))
        .run()
}

/// Sealed sessions as `who` sees them: (id, user).
fn sealed(s: &Setup, who: &LabUser) -> Vec<(String, String)> {
    let out = bastion_cmd(s, who, &["sessions", "list", "--json"]);
    assert!(out.ok(), "sessions list --json:\n{out}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}:\n{out}"));
    rows.iter()
        .filter(|r| r["ended_how"] != "running")
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["user"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn id_of(rows: &[(String, String)], user: &str) -> String {
    rows.iter().find(|(_, u)| u == user).map(|(id, _)| id.clone()).unwrap()
}

#[test]
fn auditors_see_every_session_and_users_only_their_own() {
    let s = setup();
    let (mark_a, mark_b) = (
        format!("alice-marker-{}", std::process::id()),
        format!("bob-marker-{}", std::process::id()),
    );
    for (who, mark) in [(&s.alice, &mark_a), (&s.bob, &mark_b)] {
        let out = s
            .lab
            .ssh(who)
            .args(["node-a", "echo", mark])
            .timeout(Duration::from_secs(60))
            .run();
        assert!(out.ok() && out.stdout.contains(mark.as_str()), "{out}\n{}", s.lab.log());
    }
    let mut rows = Vec::new();
    assert!(
        wait_until(Duration::from_secs(60), || {
            rows = sealed(&s, &s.carol);
            rows.len() >= 2
        }),
        "the auditor sees {rows:?}\n{}",
        s.lab.log()
    );
    let (alice_id, bob_id) = (id_of(&rows, "alice"), id_of(&rows, "bob"));

    // The auditor finds both markers; bob finds his own and not alice's.
    for mark in [&mark_a, &mark_b] {
        let out = bastion_cmd(&s, &s.carol, &["sessions", "search", mark]);
        assert!(
            out.ok() && out.stdout.contains(mark.as_str()),
            "auditor search {mark}:\n{out}"
        );
    }
    let own = bastion_cmd(&s, &s.bob, &["sessions", "search", &mark_b]);
    assert!(own.ok() && own.stdout.contains(&bob_id), "{own}");
    let other = bastion_cmd(&s, &s.bob, &["sessions", "search", &mark_a]);
    assert!(
        !other.ok() && other.stdout.contains("No match"),
        "bob found alice's marker:\n{other}"
    );
    assert!(!other.stdout.contains(&alice_id), "{other}");

    // Bob's list holds only his session.
    let bobs = sealed(&s, &s.bob);
    assert!(bobs.iter().all(|(_, u)| u == "bob") && !bobs.is_empty(), "{bobs:?}");

    // Alice's session is to bob what a session that never was is.
    let theirs = bastion_cmd(&s, &s.bob, &["sessions", "show", &alice_id]);
    let nobody = bastion_cmd(&s, &s.bob, &["sessions", "show", "s-never-was-0000"]);
    assert!(!theirs.ok() && !nobody.ok(), "{theirs}\n{nobody}");
    assert_eq!(
        theirs.stderr.replace(&alice_id, "ID"),
        nobody.stderr.replace("s-never-was-0000", "ID"),
        "bob can tell alice's session from none"
    );

    // The auditor's show, export and verify.
    let show = bastion_cmd(&s, &s.carol, &["sessions", "show", &alice_id]);
    assert!(
        show.ok() && show.stdout.contains("user:      alice") && show.stdout.contains("verification: OK"),
        "{show}"
    );
    let export = bastion_cmd(&s, &s.carol, &["sessions", "export", &alice_id]);
    assert!(export.ok(), "{export}");
    let header: serde_json::Value = serde_json::from_str(export.stdout.lines().next().unwrap_or("")).unwrap();
    assert_eq!(header["version"], 2, "{export}");
    assert!(export.stdout.contains(&mark_a), "{export}");
    let all = bastion_cmd(&s, &s.carol, &["sessions", "verify", "--all"]);
    assert!(all.ok() && all.stdout.contains("0 failed"), "{all}");

    let chain = bastion_cmd(&s, &s.carol, &["audit", "verify"]);
    assert!(chain.ok() && chain.stdout.contains("chain intact"), "{chain}");

    // What the role does not allow.
    let chain = bastion_cmd(&s, &s.bob, &["audit", "verify"]);
    assert!(!chain.ok() && chain.stderr.contains("for auditors"), "{chain}");
    let refused = bastion_cmd(&s, &s.bob, &["sessions", "verify", "--all"]);
    assert!(!refused.ok() && refused.stderr.contains("for auditors"), "{refused}");
    let review = bastion_cmd(&s, &s.carol, &["breakglass", "review", "g-1", "--note", "checked"]);
    assert!(!review.ok() && review.stderr.contains("for reviewers"), "{review}");
    let replay = bastion_cmd(&s, &s.carol, &["sessions", "replay", &alice_id]);
    assert!(!replay.ok() && replay.stderr.contains("ssh -t"), "{replay}");

    // Every read is audited, with who and through which door.
    let audit = read_lossy(&s.lab.dir().join("audit/audit.jsonl"));
    let searched = audit.lines().any(|l| {
        l.contains("\"console.search\"") && l.contains("\"viewer\":\"carol\"") && l.contains("\"door\":\"ssh\"")
    });
    assert!(searched, "no console.search by carol in the audit trail:\n{audit}");
    assert!(audit.contains(&format!("\"session\":\"{alice_id}\"")), "{audit}");
}

#[test]
fn an_auditor_replays_over_ssh_with_a_terminal() {
    let s = setup();
    let mark = format!("replay-marker-{}", std::process::id());
    let out = s
        .lab
        .ssh(&s.alice)
        .args(["node-a", "echo", &mark])
        .timeout(Duration::from_secs(60))
        .run();
    assert!(out.ok(), "{out}");
    let mut rows = Vec::new();
    assert!(wait_until(Duration::from_secs(60), || {
        rows = sealed(&s, &s.carol);
        !rows.is_empty()
    }));
    let id = id_of(&rows, "alice");
    let replay = s
        .lab
        .ssh(&s.carol)
        .args(["-tt", "bastion", "sessions", "replay", &id, "--speed", "100"])
        .timeout(Duration::from_secs(60))
        .run();
    assert!(replay.ok() && replay.stdout.contains(&mark), "{replay}");
}

/// The session id of `user`'s running session, from the audit trail.
fn running_session(s: &Setup, user: &str) -> String {
    let mut id = None;
    wait_until(Duration::from_secs(30), || {
        id = read_lossy(&s.lab.dir().join("audit/audit.jsonl"))
            .lines()
            .filter(|l| l.contains("\"event\":\"session.start\"") && l.contains(&format!("\"user\":\"{user}\"")))
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["session"].as_str().map(str::to_string))
            .next_back();
        id.is_some()
    });
    id.unwrap_or_else(|| panic!("no session.start for {user}:\n{}", s.lab.log()))
}

fn ssh_process(s: &Setup, who: &LabUser, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new("ssh");
    cmd.arg("-F").arg(who.ssh_config_path()).args(args);
    let _ = s;
    cmd
}

#[test]
fn an_auditor_watches_a_running_session_from_its_screen_to_its_end() {
    let s = setup();
    // Alice's session prints a line, then echoes what she types, twice.
    let script = "echo before-the-watcher; read a; echo \"got-$a\"; read b; echo \"got-$b\"";
    let mut alice = Gathered::spawn(ssh_process(&s, &s.alice, &["-tt", "node-a", script]));
    assert!(alice.shows("before-the-watcher"), "{}\n{}", alice.text(), s.lab.log());
    let id = running_session(&s, "alice");

    // Bob may not watch; the auditor may, and sees what was already on screen.
    let refused = bastion_cmd(&s, &s.bob, &["sessions", "watch", &id]);
    assert!(!refused.ok() && refused.stderr.contains("for auditors"), "{refused}");
    let mut carol = Gathered::spawn(ssh_process(&s, &s.carol, &["-tt", "bastion", "sessions", "watch", &id]));
    assert!(
        carol.shows("before-the-watcher"),
        "the watcher missed the screen so far:\n{}",
        carol.text()
    );

    // What alice's session prints now reaches the watcher, once.
    alice.type_text("live-one\r");
    assert!(carol.shows("got-live-one"), "{}", carol.text());
    alice.type_text("live-two\r");
    assert!(carol.shows("got-live-two"), "{}", carol.text());
    assert!(alice.shows("got-live-two"), "{}", alice.text());
    assert_eq!(
        carol.text().matches("got-live-one").count(),
        1,
        "shown twice:\n{}",
        carol.text()
    );

    // The session ends; so does the watch, saying so.
    assert!(wait_until(Duration::from_secs(20), || alice
        .child
        .try_wait()
        .ok()
        .flatten()
        .is_some()));
    assert!(carol.shows("[the "), "{}", carol.text());
    let status = wait_until(Duration::from_secs(20), || {
        carol.child.try_wait().ok().flatten().is_some()
    });
    assert!(status, "the watcher did not end with the session:\n{}", carol.text());

    let audit = read_lossy(&s.lab.dir().join("audit/audit.jsonl"));
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"console.watch\"") && l.contains("\"viewer\":\"carol\"") && l.contains(&id)),
        "{audit}"
    );
}
