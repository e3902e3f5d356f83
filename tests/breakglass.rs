//! Policy and break-glass end to end, through stock OpenSSH: who reaches
//! workers, the reason prompt for a control-plane node (answered by
//! SSH_ASKPASS), refused reasons, grants made ahead with `breakglass`, the
//! time box closing a session, signed webhook alerts (also after the
//! receiver was down and the bastion restarted), reviews, `policy explain`
//! and the dead-rule findings of `config check`.
//!
//! One file although long: every test shares the one break-glass lab (a
//! control-plane node, a worker, the askpass helper) set up here.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bastion_e2e::*;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const TICKET_RE: &str = "(INC|CHG)-[0-9]+";
const GOOD_REASON: &str = "etcd quorum lost, API down";

/// A lab with one sshd behind two targets: `node-1` (worker) and `cp-1`
/// (control-plane); alice and bob in k8s-ops, mallory in no group.
struct BgLab {
    lab: Lab,
    node: SshdNode,
    alice: LabUser,
    bob: LabUser,
    mallory: LabUser,
}

fn bg_lab(extra: &str) -> BgLab {
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
    let bob = lab.add_user_in("bob", &["k8s-ops"]);
    let mallory = lab.add_user_in("mallory", &["contractors"]);
    lab.section(&format!(
        "[[rules]]\nname = \"ops\"\ngroups = [\"k8s-ops\"]\ntargets = [\"role=worker\", \"role=control-plane\"]\nlogins = [\"*\"]\n\n\
         [break_glass]\nreason_min = 10\nticket_pattern = \"{TICKET_RE}\"\ndefault_duration = \"1h\"\nwarn_before = \"3s\"\n{extra}"
    ));
    BgLab {
        lab,
        node,
        alice,
        bob,
        mallory,
    }
}

/// An askpass script answering the reason and ticket prompts; logs prompts.
fn reason_askpass(dir: &Path, name: &str, reason: &str, ticket: &str) -> (PathBuf, PathBuf) {
    let dir = dir.join(name);
    fs::create_dir_all(&dir).unwrap();
    let prompts = dir.join("prompts");
    let script = dir.join("askpass.sh");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$1\" >> {p}\ncase \"$1\" in\n  *Reason*) printf '%s\\n' {r} ;;\n  *Ticket*) printf '%s\\n' {t} ;;\n  *) printf '\\n' ;;\nesac\n",
            p = sh_quote(&prompts.display().to_string()),
            r = sh_quote(reason),
            t = sh_quote(ticket),
        ),
    )
    .unwrap();
    let mut perm = fs::metadata(&script).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    fs::set_permissions(&script, perm).unwrap();
    (script, prompts)
}

fn admin(lab: &Lab, args: &[&str]) -> Out {
    Cmd::new(bastion_bin())
        .args(args)
        .arg("--config")
        .arg(lab.config_path())
        .timeout(Duration::from_secs(30))
        .run()
}

fn grants_json(lab: &Lab) -> Vec<serde_json::Value> {
    let out = admin(lab, &["breakglass", "list", "--json"]).expect_ok();
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

fn audit_text(lab: &Lab) -> String {
    read_lossy(&lab.dir().join("audit/audit.jsonl"))
}

/// The manifests of sealed recordings in the lab's write-once directory,
/// once at least `n` of them are there.
fn recorded_sessions(lab: &Lab, n: usize) -> Vec<serde_json::Value> {
    let read = || {
        let mut found = Vec::new();
        if let Ok(dir) = fs::read_dir(lab.dir().join("recordings")) {
            for e in dir.flatten() {
                let text = read_lossy(&e.path().join("manifest.json"));
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                    found.push(v);
                }
            }
        }
        found
    };
    let mut found = Vec::new();
    wait_until(Duration::from_secs(30), || {
        found = read();
        found.len() >= n
    });
    found
}

#[test]
fn workers_for_ops_and_a_plain_refusal_for_everyone_else() {
    let mut b = bg_lab("");
    b.lab.start();
    let login = current_login();
    let alice = ssh(&b.alice).args(["node-1", "echo WORKER-IN"]).run();
    assert!(
        alice.ok() && alice.stdout.contains("WORKER-IN"),
        "{alice}\n{}",
        b.lab.log()
    );

    let (script, _) = reason_askpass(b.lab.dir(), "mallory", GOOD_REASON, "INC-1");
    for target in ["node-1", "cp-1"] {
        let out = ssh_askpass(&b.mallory.ssh_config_path(), &script)
            .args([target, "echo MALLORY-IN"])
            .run();
        assert!(!out.ok() && !out.stdout.contains("MALLORY-IN"), "{out}");
        let want = format!("access to {target} as {login} is not granted");
        assert!(out.stderr.contains(&want), "expected `{want}`:\n{out}");
        // Nothing more: no group names, no rule names, no break-glass prompt.
        assert!(
            !out.stderr.contains("k8s-ops") && !out.stderr.contains("ops\"") && !out.stderr.contains("Reason"),
            "{out}"
        );
    }
    assert!(
        !b.node.log().contains("ID \"mallory"),
        "mallory reached the node:\n{}",
        b.node.log()
    );
    // Worker sessions record output only; the decision's flag reaches the recorder.
    let sessions = recorded_sessions(&b.lab, 1);
    let worker = sessions
        .iter()
        .find(|s| s["target"] == "node-1")
        .expect("a node-1 session");
    assert_eq!(worker["record_input"], false, "{worker}");
}

#[test]
fn control_plane_asks_for_a_reason_and_a_ticket_then_lets_in_recorded_and_audited() {
    let mut b = bg_lab("");
    b.lab.start();
    // No prompt possible (BatchMode): refused, and nothing granted.
    let batch = ssh(&b.alice).args(["cp-1", "echo CP-IN"]).run();
    assert!(!batch.ok() && !batch.stdout.contains("CP-IN"), "{batch}");
    assert!(grants_json(&b.lab).is_empty());

    let (script, prompts) = reason_askpass(b.lab.dir(), "alice", GOOD_REASON, "INC-4711");
    let out = ssh_askpass(&b.alice.ssh_config_path(), &script)
        .args(["cp-1", "echo CP-IN"])
        .run();
    assert!(out.ok() && out.stdout.contains("CP-IN"), "{out}\n{}", b.lab.log());
    let asked = read_lossy(&prompts);
    assert!(asked.contains("Break-glass access to cp-1. Reason:"), "{asked}");
    assert!(asked.contains("Ticket:"), "{asked}");
    assert!(out.stderr.contains("time-boxed (60 min)"), "{out}");
    assert!(
        b.node.log().contains("Accepted certificate ID \"alice"),
        "{}",
        b.node.log()
    );

    let grants = grants_json(&b.lab);
    assert_eq!(grants.len(), 1, "{grants:?}");
    let g = &grants[0]["grant"];
    assert_eq!(g["user"], "alice");
    assert_eq!(g["reason"], GOOD_REASON);
    assert_eq!(g["ticket"], "INC-4711");
    assert_eq!(g["source"], "prompt");
    assert_eq!(g["targets"], serde_json::json!(["cp-1"]));
    let length = g["ends_at"].as_i64().unwrap() - g["starts_at"].as_i64().unwrap();
    assert_eq!(length, 3600, "{g}");
    assert_eq!(grants[0]["sessions"].as_array().unwrap().len(), 1, "{grants:?}");

    // Within the time box, no prompt any more, even in batch mode.
    let again = ssh(&b.alice).args(["cp-1", "echo AGAIN"]).run();
    assert!(again.ok() && again.stdout.contains("AGAIN"), "{again}");

    // Keystrokes recorded for break-glass sessions, with the grant named.
    let sessions = recorded_sessions(&b.lab, 2);
    let cp: Vec<_> = sessions.iter().filter(|s| s["target"] == "cp-1").collect();
    assert_eq!(cp.len(), 2, "{sessions:?}");
    for s in cp {
        assert_eq!(s["record_input"], true, "{s}");
        assert_eq!(s["break_glass"]["grant"], g["id"], "{s}");
        assert_eq!(s["break_glass"]["reason"], GOOD_REASON, "{s}");
    }
    let audit = audit_text(&b.lab);
    assert!(audit.contains("\"event\":\"breakglass.granted\""), "{audit}");
    assert_eq!(
        audit.matches("\"event\":\"breakglass.session_started\"").count(),
        2,
        "{audit}"
    );
    admin(&b.lab, &["audit", "verify"]).expect_ok();
}

#[test]
fn reasons_that_are_too_short_lack_the_ticket_or_carry_escapes_are_refused() {
    let mut b = bg_lab("");
    b.lab.start();
    for (name, reason, ticket, want) in [
        (
            "short",
            "fix",
            "INC-1",
            "the reason is too short (3 characters, at least 10 needed)",
        ),
        (
            "noticket",
            GOOD_REASON,
            "",
            "a ticket is required (matching (INC|CHG)-[0-9]+)",
        ),
        (
            "badticket",
            GOOD_REASON,
            "JIRA-1",
            "the ticket must match (INC|CHG)-[0-9]+",
        ),
        (
            "escape",
            "etcd down \u{1b}]0;owned\u{7} really",
            "INC-1",
            "the reason contains a control or formatting character (U+001B)",
        ),
    ] {
        let (script, prompts) = reason_askpass(b.lab.dir(), name, reason, ticket);
        let out = ssh_askpass(&b.alice.ssh_config_path(), &script)
            .args(["cp-1", "echo CP-IN"])
            .run();
        assert!(!out.ok() && !out.stdout.contains("CP-IN"), "{name}: {out}");
        assert!(out.stderr.contains(want), "{name}: expected `{want}`:\n{out}");
        // Asked again after each refusal, three times in all.
        let asked = read_lossy(&prompts);
        assert_eq!(asked.matches("Reason:").count(), 3, "{name}: {asked}");
    }
    assert!(grants_json(&b.lab).is_empty(), "a refused reason made a grant");
    assert!(
        !b.node.log().contains("ID \"alice"),
        "alice reached the node without a valid reason:\n{}",
        b.node.log()
    );
}

#[test]
fn breakglass_command_grants_ahead_for_scripts_and_lists_grants() {
    let mut b = bg_lab("");
    b.lab.start();
    let bg = |user: &LabUser, args: &str| ssh(user).args(["bastion", &format!("breakglass {args}")]).run();

    let refusals = [
        (
            &b.alice,
            "node-1 --reason 'disk full on node-1' --ticket INC-1",
            "node-1 is not break-glass only",
        ),
        (
            &b.mallory,
            &format!("cp-1 --reason '{GOOD_REASON}' --ticket INC-1") as &str,
            "access to cp-1 is not granted",
        ),
        (
            &b.alice,
            "nosuch --reason 'disk full on nosuch' --ticket INC-1",
            "access to nosuch is not granted",
        ),
        (
            &b.alice,
            &format!("cp-1 --reason '{GOOD_REASON}' --ticket INC-1 --for 9h"),
            "at most 240 minutes",
        ),
        (
            &b.alice,
            &format!("cp-1 --reason '{GOOD_REASON}'"),
            "a ticket is required",
        ),
        (&b.alice, "cp-1 --ticket INC-1", "--reason is required"),
    ];
    for (user, args, want) in refusals {
        let out = bg(user, args);
        assert!(
            !out.ok() && out.stderr.contains(want),
            "`breakglass {args}`: expected `{want}`:\n{out}"
        );
    }
    assert!(grants_json(&b.lab).is_empty());

    let out = bg(
        &b.alice,
        &format!("cp-1 --reason '{GOOD_REASON}' --ticket INC-4711 --for 30m"),
    );
    assert!(
        out.ok() && out.stdout.contains("Break-glass grant bg-"),
        "{out}\n{}",
        b.lab.log()
    );
    assert!(out.stdout.contains("(30 min)"), "{out}");
    // A script with BatchMode now gets in without any prompt.
    let script = ssh(&b.alice).args(["cp-1", "echo SCRIPTED"]).run();
    assert!(
        script.ok() && script.stdout.contains("SCRIPTED"),
        "{script}\n{}",
        b.lab.log()
    );
    // Only alice's own grant counts: bob still cannot.
    let bob = ssh(&b.bob).args(["cp-1", "echo BOB"]).run();
    assert!(!bob.ok(), "{bob}");

    let list = bg(&b.alice, "--list").expect_ok();
    assert!(
        list.stdout.contains("cp-1") && list.stdout.contains("active") && list.stdout.contains("INC-4711"),
        "{list}"
    );
    assert!(list.stdout.contains(GOOD_REASON), "{list}");
    let bob_list = bg(&b.bob, "--list").expect_ok();
    assert!(bob_list.stdout.contains("no break-glass grants"), "{bob_list}");
    let g = &grants_json(&b.lab)[0]["grant"];
    assert_eq!(g["ends_at"].as_i64().unwrap() - g["starts_at"].as_i64().unwrap(), 1800);
    assert_eq!(g["source"], "command");
}

#[test]
fn the_time_box_warns_the_terminal_then_closes_the_session() {
    let mut b = bg_lab("");
    b.lab.start();
    let grant = ssh(&b.alice)
        .args([
            "bastion",
            &format!("breakglass cp-1 --reason '{GOOD_REASON}' --ticket INC-4711 --for 8s"),
        ])
        .run()
        .expect_ok();
    assert!(grant.stdout.contains("Break-glass grant"), "{grant}");
    let started = std::time::Instant::now();
    let out = ssh(&b.alice)
        .args(["cp-1", "echo STARTED; sleep 120; echo NEVER"])
        .timeout(Duration::from_secs(100))
        .run();
    assert!(out.stdout.contains("STARTED") && !out.stdout.contains("NEVER"), "{out}");
    assert!(!out.ok(), "{out}");
    assert!(
        out.stderr.contains("break-glass access to cp-1 ends in"),
        "no warning before the end:\n{out}"
    );
    assert!(
        out.stderr.contains("the break-glass time box for cp-1 ended"),
        "not told why the session closed:\n{out}"
    );
    assert!(started.elapsed() < Duration::from_secs(60), "{:?}", started.elapsed());
    // After the end, a new connection is back to needing a reason.
    let after = ssh(&b.alice).args(["cp-1", "echo AFTER"]).run();
    assert!(!after.ok(), "{after}");
}

/// One request a webhook received: lower-cased headers and the body.
type Request = (BTreeMap<String, String>, String);

/// A webhook receiver on 127.0.0.1: records each request's headers and body.
struct Receiver {
    requests: Arc<Mutex<Vec<Request>>>,
    _thread: std::thread::JoinHandle<()>,
}

impl Receiver {
    fn start(listener: TcpListener) -> Receiver {
        let requests: Arc<Mutex<Vec<Request>>> = Arc::default();
        let seen = requests.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming().take(50) {
                let Ok(mut stream) = stream else { continue };
                stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut headers = BTreeMap::new();
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                    }
                }
                let n: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                let mut body = vec![0; n];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
                seen.lock()
                    .unwrap()
                    .push((headers, String::from_utf8_lossy(&body).into_owned()));
            }
        });
        Receiver {
            requests,
            _thread: thread,
        }
    }

    fn wait_for(&self, event: &str) -> Request {
        let mut found = None;
        wait_until(Duration::from_secs(30), || {
            found = self
                .requests
                .lock()
                .unwrap()
                .iter()
                .find(|(_, body)| body.contains(&format!("\"event\":\"{event}\"")))
                .cloned();
            found.is_some()
        });
        found.unwrap_or_else(|| panic!("no {event} alert arrived; got {:?}", self.requests.lock().unwrap()))
    }
}

fn check_signature(secret: &[u8], headers: &BTreeMap<String, String>, body: &str) {
    let ts = &headers["x-bastion-timestamp"];
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).unwrap();
    mac.update(format!("{ts}.{body}").as_bytes());
    let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(headers["x-bastion-signature"], want, "bad signature for {body}");
    assert!(headers.contains_key("x-bastion-delivery"), "{headers:?}");
}

fn webhook_section(dir: &Path, port: u16) -> (String, Vec<u8>) {
    let secret = b"e2e-webhook-secret-5a1f".to_vec();
    let path = dir.join("webhook.secret");
    fs::write(&path, &secret).unwrap();
    let mut perm = fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o600);
    fs::set_permissions(&path, perm).unwrap();
    (
        format!(
            "\n[alerts]\nretry_initial = \"300ms\"\nretry_max = \"1s\"\n\n[[alerts.webhooks]]\nname = \"oncall\"\n\
             url = \"http://127.0.0.1:{port}/hooks/bastion\"\nsecret_file = \"{}\"\ntimeout = \"3s\"\n",
            path.display()
        ),
        secret,
    )
}

#[test]
fn alerts_reach_the_webhook_signed() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let receiver = Receiver::start(listener);
    let dir = tempfile::tempdir().unwrap();
    let (section, secret) = webhook_section(dir.path(), port);
    let mut b = bg_lab(&section);
    b.lab.start();
    let (script, _) = reason_askpass(b.lab.dir(), "alice", GOOD_REASON, "INC-4711");
    let out = ssh_askpass(&b.alice.ssh_config_path(), &script)
        .args(["cp-1", "echo CP-IN"])
        .run();
    assert!(out.ok(), "{out}\n{}", b.lab.log());
    let (headers, body) = receiver.wait_for("breakglass.granted");
    check_signature(&secret, &headers, &body);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["user"], "alice");
    assert_eq!(v["reason"], GOOD_REASON);
    assert_eq!(v["ticket"], "INC-4711");
    assert_eq!(v["targets"], serde_json::json!(["cp-1"]));
    let (headers, body) = receiver.wait_for("breakglass.session_started");
    check_signature(&secret, &headers, &body);
    // A tampered body fails the check (so the check can fail).
    let tampered = std::panic::catch_unwind(|| check_signature(&secret, &headers, &body.replace("alice", "eve")));
    assert!(tampered.is_err());
}

#[test]
fn an_alert_is_kept_while_the_webhook_is_down_and_sent_after_a_restart() {
    // A port with nobody listening yet.
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let (section, secret) = webhook_section(dir.path(), port);
    let mut b = bg_lab(&section);
    b.lab.start();
    let out = ssh(&b.alice)
        .args([
            "bastion",
            &format!("breakglass cp-1 --reason '{GOOD_REASON}' --ticket INC-4711 --for 30m"),
        ])
        .run();
    // A failing webhook never blocks access.
    assert!(out.ok(), "{out}\n{}", b.lab.log());
    let log_has_failure = wait_until(Duration::from_secs(20), || {
        b.lab.log().contains("not delivered; it will be retried")
    });
    let cp = ssh(&b.alice).args(["cp-1", "echo CP-IN"]).run();
    assert!(cp.ok() && cp.stdout.contains("CP-IN"), "{cp}");
    assert!(log_has_failure, "no failed delivery was logged:\n{}", b.lab.log());
    // Restart the bastion, then bring the receiver up: the queued alert is sent.
    b.lab.restart();
    let receiver = Receiver::start(TcpListener::bind(("127.0.0.1", port)).unwrap());
    let (headers, body) = receiver.wait_for("breakglass.granted");
    check_signature(&secret, &headers, &body);
    assert!(body.contains(GOOD_REASON), "{body}");
}

#[test]
fn review_by_a_second_person_self_review_refused() {
    let mut b = bg_lab("");
    b.lab.start();
    ssh(&b.alice)
        .args([
            "bastion",
            &format!("breakglass cp-1 --reason '{GOOD_REASON}' --ticket INC-4711 --for 4s"),
        ])
        .run()
        .expect_ok();
    ssh(&b.alice).args(["cp-1", "true"]).run().expect_ok();
    let id = grants_json(&b.lab)[0]["grant"]["id"].as_str().unwrap().to_string();
    // Not while it runs: sessions under it would escape the review.
    let early = admin(
        &b.lab,
        &["breakglass", "review", &id, "--reviewer", "bob", "--note", "early"],
    );
    assert!(!early.ok() && early.stderr.contains("is still active until"), "{early}");
    assert!(
        wait_until(Duration::from_secs(20), || {
            admin(&b.lab, &["breakglass", "list"]).stdout.contains("[ended]")
        }),
        "the 4 s grant never ended"
    );

    let unreviewed = admin(&b.lab, &["breakglass", "list", "--unreviewed"]).expect_ok();
    assert!(
        unreviewed.stdout.contains(&id) && unreviewed.stdout.contains("NOT YET"),
        "{unreviewed}"
    );
    assert!(unreviewed.stdout.contains("session:"), "{unreviewed}");

    let own = admin(
        &b.lab,
        &["breakglass", "review", &id, "--reviewer", "alice", "--note", "fine"],
    );
    assert_eq!(own.code(), Some(1), "{own}");
    assert!(
        own.stderr.contains("alice used grant") && own.stderr.contains("a second person must"),
        "{own}"
    );

    let ok = admin(
        &b.lab,
        &[
            "breakglass",
            "review",
            &id,
            "--reviewer",
            "bob",
            "--note",
            "replayed; only etcdctl snapshot restore",
        ],
    )
    .expect_ok();
    assert!(ok.stdout.contains("reviewed by bob"), "{ok}");
    let twice = admin(
        &b.lab,
        &["breakglass", "review", &id, "--reviewer", "carol", "--note", "again"],
    );
    assert!(
        !twice.ok() && twice.stderr.contains("already reviewed by bob"),
        "{twice}"
    );
    let left = admin(&b.lab, &["breakglass", "list", "--unreviewed"]).expect_ok();
    assert!(!left.stdout.contains(&id), "{left}");
    let audit = audit_text(&b.lab);
    assert!(audit.contains("\"event\":\"breakglass.reviewed\""), "{audit}");
    assert!(
        audit.contains("\"event\":\"breakglass.self_review_refused\""),
        "{audit}"
    );
    admin(&b.lab, &["audit", "verify"]).expect_ok();
}

#[test]
fn policy_explain_and_config_check() {
    let b = bg_lab("");
    b.lab.write_config();
    let login = current_login();
    let cp = admin(&b.lab, &["policy", "explain", "alice", &format!("{login}@cp-1")]).expect_ok();
    for want in [
        "decision:  BREAK-GLASS",
        "requires:  a reason of 10-500 characters and a ticket matching (INC|CHG)-[0-9]+",
        "limits:    time box 1h",
        "rule \"ops\" grants",
        "cp-1 matches the break-glass selector (role=control-plane)",
    ] {
        assert!(cp.stdout.contains(want), "expected `{want}`:\n{cp}");
    }
    let worker = admin(&b.lab, &["policy", "explain", "alice", &format!("{login}@node-1")]).expect_ok();
    assert!(worker.stdout.contains("decision:  ALLOW"), "{worker}");
    assert!(worker.stdout.contains("limits:    max session"), "{worker}");
    let mallory = admin(&b.lab, &["policy", "explain", "mallory", &format!("{login}@node-1")]);
    assert_eq!(mallory.code(), Some(1), "{mallory}");
    assert!(mallory.stdout.contains("decision:  DENY"), "{mallory}");
    assert!(mallory.stdout.contains("none of its groups (k8s-ops)"), "{mallory}");

    let good = admin(&b.lab, &["config", "check"]);
    // `config check` takes the file as an argument, not --config.
    assert!(!good.ok());
    let check = |text: &str| {
        let p = b.lab.dir().join("check.toml");
        fs::write(&p, text).unwrap();
        (
            p.clone(),
            Cmd::new(bastion_bin())
                .args(["config", "check"])
                .arg(&p)
                .timeout(Duration::from_secs(30))
                .run(),
        )
    };
    let (_, ok) = check(&b.lab.config_text());
    assert!(ok.ok() && ok.stdout.contains("1 rules"), "{ok}");
    let dead = format!(
        "{}\n[[rules]]\nname = \"ghost\"\ngroups = [\"dbas\"]\ntargets = [\"db-*\"]\nlogins = [\"postgres\"]\n",
        b.lab.config_text()
    );
    let (p, bad) = check(&dead);
    assert_eq!(bad.code(), Some(1), "{bad}");
    let line = dead.lines().position(|l| l == "name = \"ghost\"").unwrap();
    let at = format!("{}:{line}: rule \"ghost\":", p.display());
    for want in [
        "can never match: it selects no configured target",
        "target selector `db-*` matches no target",
    ] {
        assert!(
            bad.stderr.contains(&format!("{at} {want}")),
            "expected `{at} {want}`:\n{bad}"
        );
    }
    let unknown_group = b
        .lab
        .config_text()
        .replace("groups = [\"k8s-ops\"]\ntargets", "groups = [\"k8s-opz\"]\ntargets");
    let (_, typo) = check(&unknown_group);
    assert_eq!(typo.code(), Some(1), "{typo}");
    assert!(
        typo.stderr
            .contains("can never match: no user of the embedded directory is in `k8s-opz`"),
        "{typo}"
    );
}
