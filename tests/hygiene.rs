//! Refusals, robustness and lifecycle: host key pinning, unknown targets,
//! several users, agent forwarding, graceful shutdown, junk on the listener,
//! `config check`, and what the demo promises.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bastion_e2e::*;

/// A lab with one private sshd node (trusting the lab's user CA) and the given users.
fn lab_with_node(users: &[&str]) -> (Lab, SshdNode, Vec<LabUser>) {
    let mut lab = Lab::new();
    let node = SshdNode::start(SshdOptions {
        user_ca: Some(lab.user_ca().to_string()),
        ..Default::default()
    });
    let login = current_login();
    lab.add_target("node-a", &node.addr(), &[&login], &[node.host_key_line()]);
    let users = users.iter().map(|u| lab.add_user(u)).collect();
    (lab, node, users)
}

#[test]
fn wrong_host_key_is_refused() {
    let mut lab = Lab::new();
    let node = SshdNode::start(SshdOptions {
        user_ca: Some(lab.user_ca().to_string()),
        ..Default::default()
    });
    let login = current_login();
    let other = keygen(&lab.dir().join("not-the-node"), "other");
    lab.add_target("node-good", &node.addr(), &[&login], &[node.host_key_line()]);
    lab.add_target("node-bad", &node.addr(), &[&login], &[key_without_comment(&other)]);
    let alice = lab.add_user("alice");
    lab.start();

    // Control: the correctly pinned target works, so the setup is sound.
    let good = lab.ssh(&alice).arg("node-good").arg("echo GOOD").run().expect_ok();
    assert_eq!(good.stdout.trim(), "GOOD");
    let accepted_before = count(&node.log(), "Accepted");
    assert!(
        accepted_before >= 1,
        "the control login is not in the node log:\n{}",
        node.log()
    );

    let bad = lab.ssh(&alice).arg("node-bad").arg("echo BAD").run();
    assert!(
        !bad.ok() && !bad.timed_out,
        "a target with the wrong pinned key was reached:\n{bad}"
    );
    assert!(!bad.stdout.contains("BAD"), "{bad}");
    assert!(
        bad.stderr.contains("pinned"),
        "the user's error does not mention the pinned key:\n{bad}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || lab.log().contains("not the pinned one")),
        "the bastion log does not say `not the pinned one`:\n{}",
        lab.log()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        count(&node.log(), "Accepted"),
        accepted_before,
        "the node accepted a login for the mis-pinned target:\n{}",
        node.log()
    );
}

#[test]
fn unknown_target_is_refused() {
    let demo = Demo::start();
    let out = ssh(&demo)
        .args(["-J", "bastion"])
        .arg(format!("{}@nosuch", demo.login()))
        .arg("echo REACHED")
        .run();
    assert!(!out.timed_out, "{out}");
    assert_ne!(out.code(), Some(0), "an unknown target was reached:\n{out}");
    assert!(!out.stdout.contains("REACHED"), "{out}");
    assert!(
        wait_until(Duration::from_secs(5), || demo.bastion_log().contains("unknown target")),
        "the bastion log does not say `unknown target`:\n{}",
        demo.bastion_log()
    );
    // The bastion is still fine afterwards.
    ssh(&demo).arg(demo.node()).arg("true").run().expect_ok();
}

#[test]
fn login_not_allowed_on_target_is_refused() {
    let (mut lab, node, users) = lab_with_node(&["alice"]);
    lab.start();
    let out = lab
        .ssh(&users[0])
        .arg("nobody-allowed@node-a")
        .arg("echo REACHED")
        .run();
    assert!(
        !out.ok() && !out.timed_out,
        "a login not in the target's `logins` was accepted:\n{out}"
    );
    assert!(!out.stdout.contains("REACHED"));
    assert_eq!(count(&node.log(), "Accepted"), 0, "{}", node.log());
}

#[test]
fn two_users_at_once() {
    let (mut lab, node, users) = lab_with_node(&["alice", "bob"]);
    lab.start();
    let (alice, bob) = (&users[0], &users[1]);
    let a = lab.ssh(alice).arg("node-a").arg("sleep 2; echo ALICE-OK").spawn();
    let b = lab.ssh(bob).arg("node-a").arg("sleep 2; echo BOB-OK").spawn();
    let a = a.wait_timeout(Duration::from_secs(60)).expect_ok();
    let b = b.wait_timeout(Duration::from_secs(60)).expect_ok();
    assert_eq!(a.stdout.trim(), "ALICE-OK", "{a}");
    assert_eq!(b.stdout.trim(), "BOB-OK", "{b}");
    let log = node.log();
    assert!(
        log.contains("Accepted certificate ID \"alice"),
        "no certificate for alice in the node log:\n{log}"
    );
    assert!(
        log.contains("Accepted certificate ID \"bob"),
        "no certificate for bob in the node log:\n{log}"
    );
    // Each is who they are on the bastion.
    let wa = lab.ssh(alice).args(["bastion", "whoami"]).run().expect_ok();
    let wb = lab.ssh(bob).args(["bastion", "whoami"]).run().expect_ok();
    assert!(wa.stdout.contains("alice") && !wa.stdout.contains("bob"), "{wa}");
    assert!(wb.stdout.contains("bob") && !wb.stdout.contains("alice"), "{wb}");
}

#[test]
fn undeclared_key_is_refused() {
    let (mut lab, node, _users) = lab_with_node(&["alice"]);
    let mallory = lab.client("mallory");
    let alice_with_wrong_key = lab.client("alice-wrong");
    lab.start();
    let out = lab.ssh(&mallory).args(["bastion", "whoami"]).run();
    assert!(!out.ok() && !out.timed_out, "an undeclared user got in:\n{out}");
    let out = lab.ssh(&mallory).arg("node-a").arg("echo REACHED").run();
    assert!(
        !out.ok() && !out.stdout.contains("REACHED"),
        "an undeclared user reached a node:\n{out}"
    );
    // A declared name with a key that is not the user's.
    let mut cfg = fs::read_to_string(alice_with_wrong_key.ssh_config_path()).unwrap();
    cfg = cfg.replace("User alice-wrong", "User alice");
    fs::write(alice_with_wrong_key.ssh_config_path(), cfg).unwrap();
    let out = lab.ssh(&alice_with_wrong_key).args(["bastion", "whoami"]).run();
    assert!(
        !out.ok() && !out.timed_out,
        "alice's name with another key got in:\n{out}"
    );
    assert_eq!(count(&node.log(), "Accepted"), 0, "{}", node.log());
}

#[test]
fn sigterm_drains_running_sessions() {
    let (mut lab, _node, users) = lab_with_node(&["alice"]);
    lab.server_option("shutdown_grace = \"30s\"");
    lab.start();
    let alice = &users[0];
    let mut session = lab
        .ssh(alice)
        .arg("node-a")
        .arg("echo started; sleep 3; echo done")
        .spawn();
    assert!(
        wait_until(Duration::from_secs(30), || session.stdout().contains("started")),
        "the session did not start; stderr:\n{}",
        session.stderr()
    );
    lab.sigterm();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        session.is_running(),
        "the running session ended at SIGTERM; stderr:\n{}",
        session.stderr()
    );
    let fresh = lab
        .ssh(alice)
        .args(["bastion", "whoami"])
        .timeout(Duration::from_secs(15))
        .run();
    assert!(!fresh.ok(), "a new connection was served after SIGTERM:\n{fresh}");
    let out = session.wait_timeout(Duration::from_secs(30));
    assert!(
        out.ok(),
        "the session in progress did not complete after SIGTERM:\n{out}"
    );
    assert!(out.stdout.contains("done"), "{out}");
    let st = lab.wait_exit(Duration::from_secs(20));
    let st = st.unwrap_or_else(|| {
        panic!(
            "the bastion did not exit within 20 s after its last session ended ({:?} since SIGTERM)",
            t0.elapsed()
        )
    });
    assert_eq!(st.code(), Some(0), "the bastion exited with {st}");
}

#[test]
fn sigterm_right_after_start_exits_cleanly() {
    // A supervisor may stop the bastion as soon as its port is open.
    let (mut lab, _node, _users) = lab_with_node(&["alice"]);
    lab.start();
    lab.sigterm();
    let st = lab
        .wait_exit(Duration::from_secs(10))
        .expect("the idle bastion did not exit within 10 s of SIGTERM");
    assert_eq!(st.code(), Some(0), "exit status {st}");
    assert!(!port_open(&lab.addr()), "the port still accepts connections");
}

#[test]
fn sigterm_when_idle_exits_promptly() {
    let (mut lab, _node, users) = lab_with_node(&["alice"]);
    lab.start();
    lab.ssh(&users[0]).arg("node-a").arg("true").run().expect_ok();
    lab.sigterm();
    let st = lab
        .wait_exit(Duration::from_secs(10))
        .expect("the idle bastion did not exit within 10 s of SIGTERM");
    assert_eq!(st.code(), Some(0), "exit status {st}");
    assert!(!port_open(&lab.addr()), "the port still accepts connections");
}

#[test]
fn garbage_at_the_listener() {
    let mut demo = Demo::start();
    let addr = demo.bastion_addr();
    let t = Duration::from_secs(5);

    // The server speaks first with its banner.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(t)).unwrap();
    let mut banner = [0u8; 8];
    s.read_exact(&mut banner).expect("no banner from the bastion");
    assert_eq!(&banner, b"SSH-2.0-", "the bastion's first bytes are not an SSH banner");
    drop(s);

    let junk: Vec<Vec<u8>> = vec![
        random_bytes(4096),
        [b"SSH-2.0-bogus\r\n".to_vec(), random_bytes(8192)].concat(),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        vec![b'A'; 300_000],
        [
            b"SSH-2.0-OpenSSH_9.2\r\n".to_vec(),
            vec![0xff, 0xff, 0xff, 0xff, 0x00],
            random_bytes(100),
        ]
        .concat(),
        Vec::new(),
    ];
    for (i, j) in junk.iter().enumerate() {
        let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("junk {i}: connect: {e}"));
        s.set_read_timeout(Some(t)).unwrap();
        s.set_write_timeout(Some(t)).unwrap();
        let _ = s.write_all(j);
        let mut sink = [0u8; 65536];
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            match s.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
    // One that connects and then says nothing, held open during the real sessions.
    let _idle = TcpStream::connect(addr).unwrap();

    assert!(
        demo.is_running(),
        "the bastion died from junk input:\n{}",
        demo.bastion_log()
    );
    let out = ssh(&demo).args(["bastion", "whoami"]).run().expect_ok();
    assert!(out.stdout.contains(demo.user()), "{out}");
    let out = ssh(&demo).arg(demo.node()).arg("echo STILL-OK").run().expect_ok();
    assert_eq!(out.stdout.trim(), "STILL-OK");
}

#[test]
fn node_log_names_the_user_in_the_certificate() {
    let demo = Demo::start();
    ssh(&demo).arg(demo.node()).arg("true").run().expect_ok();
    let want = format!("Accepted certificate ID \"{}", demo.user());
    let node = demo.node().to_string();
    assert!(
        wait_until(Duration::from_secs(5), || demo.node_log(&node).contains(&want)),
        "the node log has no `{want}`:\n{}",
        demo.node_log(&node)
    );
}

#[test]
fn agent_forwarding_is_refused() {
    let demo = Demo::start();
    let scratch = demo.scratch("agent");
    let (_agent, sock) = start_agent(&scratch);

    // Control: with a plain sshd, the same client forwards the agent.
    let key = scratch.join("direct_ed25519");
    let pubkey = keygen(&key, "direct");
    let plain = SshdNode::start(SshdOptions {
        authorized_keys: vec![pubkey],
        ..Default::default()
    });
    let control = plain
        .direct_ssh(&key)
        .env("SSH_AUTH_SOCK", &sock)
        .arg("-A")
        .arg("echo \"[$SSH_AUTH_SOCK]\"")
        .run()
        .expect_ok();
    assert_ne!(
        control.stdout.trim(),
        "[]",
        "control: agent forwarding does not work even without the bastion:\n{control}"
    );

    let out = ssh(&demo)
        .env("SSH_AUTH_SOCK", &sock)
        .arg("-A")
        .arg(demo.node())
        .arg("echo \"[$SSH_AUTH_SOCK]\"")
        .run()
        .expect_ok();
    assert_eq!(
        out.stdout.trim(),
        "[]",
        "an agent was forwarded through the bastion:\n{out}"
    );
}

const GOOD_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

fn sample_config() -> String {
    format!(
        "[server]\n\
         listen = \"127.0.0.1:2222\"\n\
         host_key = \"keys/host_ed25519\"\n\
         host_ca = \"keys/host_ca_ed25519\"\n\
         user_ca = \"keys/user_ca_ed25519\"\n\
         recording_key = \"keys/recording_ed25519\"\n\
         \n\
         [[targets]]\n\
         name = \"node-1\"\n\
         address = \"127.0.0.1:2201\"\n\
         logins = [\"root\"]\n\
         host_keys = [\"{GOOD_KEY}\"]\n\
         \n\
         [[users]]\n\
         name = \"demo\"\n\
         keys = [\"{GOOD_KEY}\"]\n"
    )
}

#[test]
fn config_check_reports_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    // Real keys, in case the check also opens them.
    Cmd::new(bastion_bin())
        .args(["ca", "init"])
        .arg(dir.path().join("keys"))
        .run()
        .expect_ok();
    let check = |text: &str| {
        let p = dir.path().join("bastion.toml");
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

    let (_, ok) = check(&sample_config());
    let ok = ok.expect_ok();
    assert!(ok.all_output().contains("ok: 1 targets, 1 users"), "{ok}");

    // line 2: listen
    let (p, bad) = check(&sample_config().replace("127.0.0.1:2222", "nowhere"));
    assert_eq!(bad.code(), Some(2), "a broken listen address passed the check:\n{bad}");
    let want = format!("{}:2: `server.listen`", p.display());
    assert!(bad.all_output().contains(&want), "expected `{want}` in:\n{bad}");

    // line 12: a bad pinned key
    let (p, bad) = check(&sample_config().replacen(
        &format!("host_keys = [\"{GOOD_KEY}\"]"),
        "host_keys = [\"ssh-ed25519 nonsense\"]",
        1,
    ));
    assert_eq!(bad.code(), Some(2), "{bad}");
    let want = format!("{}:12: `targets[0].host_keys[0]`", p.display());
    assert!(bad.all_output().contains(&want), "expected `{want}` in:\n{bad}");

    // an unknown key on line 12
    let (p, bad) = check(&sample_config().replace("logins = [\"root\"]\n", "logins = [\"root\"]\nlogin_as = \"x\"\n"));
    assert_eq!(bad.code(), Some(2), "{bad}");
    let out = bad.all_output();
    assert!(
        out.contains(&format!("{}:12:", p.display())) && out.contains("login_as"),
        "{bad}"
    );
}

#[test]
fn demo_json_and_files_match_the_contract() {
    let demo = Demo::start();
    let j = &demo.raw_json;
    for k in [
        "bastion",
        "user",
        "password",
        "identity",
        "login",
        "nodes",
        "node_addresses",
        "node_logs",
        "ssh_config",
        "known_hosts",
        "config",
        "recordings",
        "pid",
    ] {
        assert!(j.get(k).is_some(), "demo.json lacks `{k}`: {j}");
    }
    for p in [
        &demo.info.identity,
        &demo.info.ssh_config,
        &demo.info.known_hosts,
        &demo.info.config,
    ] {
        assert!(
            p.is_absolute() && p.is_file(),
            "{} is not an absolute path to a file",
            p.display()
        );
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(&demo.info.identity).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the identity file is mode {mode:o}");
    assert_eq!(
        demo.info.pid,
        Some(demo.child_pid()),
        "demo.json pid is not the demo process"
    );
    assert_eq!(
        demo.login(),
        current_login(),
        "the login is not the user running the demo"
    );
    let cfg = fs::read_to_string(&demo.info.ssh_config).unwrap();
    assert!(cfg.contains("Host bastion"), "{cfg}");
    assert!(cfg.contains(&format!("Port {}", demo.port())), "{cfg}");
    for n in &demo.info.nodes {
        assert!(cfg.contains(&format!("Host {n}")), "no Host block for {n}:\n{cfg}");
        assert!(
            demo.info.node_addresses.contains_key(n) && demo.info.node_logs.contains_key(n),
            "{j}"
        );
    }
    let kh = fs::read_to_string(&demo.info.known_hosts).unwrap();
    assert!(
        kh.contains(&format!("[127.0.0.1]:{} ssh-ed25519 ", demo.port())),
        "{kh}"
    );
    assert!(kh.contains("@cert-authority * ssh-ed25519 "), "{kh}");
    // The config the demo runs with passes its own check.
    Cmd::new(bastion_bin())
        .args(["config", "check"])
        .arg(demo.config_path())
        .run()
        .expect_ok();
}

fn sigterm_demo_and_check_it_stops(demo: &mut Demo) {
    let node_addr = demo.node_addr(demo.node());
    assert!(port_open(&node_addr), "the node does not listen at {node_addr}");
    let pid = demo.child_pid() as i32;
    // SAFETY: kill(2) takes plain integers; the demo is our own child.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    assert!(
        wait_until(Duration::from_secs(30), || !demo.is_running()),
        "the demo did not exit after SIGTERM"
    );
    let status = demo.exit_status();
    assert!(!port_open(&demo.bastion_addr()), "the bastion port is still open");
    assert!(
        wait_until(Duration::from_secs(10), || !port_open(&node_addr)),
        "the demo's node sshd still listens at {node_addr} after the demo exited ({status:?}; demo log:\n{})",
        demo.bastion_log()
    );
}

#[test]
fn demo_sigterm_stops_bastion_and_nodes() {
    let mut demo = Demo::start();
    // One session first, so the demo is well past its start-up.
    ssh(&demo).args(["bastion", "whoami"]).run().expect_ok();
    std::thread::sleep(Duration::from_millis(500));
    sigterm_demo_and_check_it_stops(&mut demo);
}

#[test]
fn demo_sigterm_right_after_demo_json() {
    // demo.json is the "ready" signal scripts wait for: a SIGTERM right after it
    // must still stop the nodes.
    let mut demo = Demo::start();
    sigterm_demo_and_check_it_stops(&mut demo);
}
