//! Checks of the test harness itself against a plain private sshd (no bastion
//! involved), so that a failure in the other suites can be told apart from a
//! broken test environment. These need no bastion binary.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bastion_e2e::*;

fn node_and_key() -> (SshdNode, tempfile::TempDir, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let key = d.path().join("id_ed25519");
    let pubkey = keygen(&key, "harness");
    let node = SshdNode::start(SshdOptions {
        authorized_keys: vec![pubkey],
        ..Default::default()
    });
    (node, d, key)
}

#[test]
fn private_sshd_runs_commands() {
    let (node, _d, key) = node_and_key();
    let out = node.direct_ssh(&key).arg("echo hi; exit 4").run();
    assert_eq!(out.code(), Some(4), "{out}");
    assert_eq!(out.stdout.trim(), "hi");
    assert!(node.log().contains("Accepted publickey"), "{}", node.log());
}

#[test]
fn timeouts_kill_the_command() {
    let out = Cmd::new("sh")
        .arg("-c")
        .arg("sleep 30")
        .timeout(Duration::from_millis(500))
        .run();
    assert!(out.timed_out && out.elapsed < Duration::from_secs(10), "{out}");
}

#[test]
fn tmux_drives_an_interactive_session() {
    let (node, _d, key) = node_and_key();
    let line = node.direct_ssh(&key).arg("-tt").shell_line();
    let t = Tmux::start(&line, 100, 30);
    assert!(t.retype_until(
        "echo R-$((2+2))",
        "R-4",
        Duration::from_secs(3),
        Duration::from_secs(30)
    ));
    assert_eq!(t.pane_size(), (30, 100));
    assert!(t.retype_until(
        "echo S-$(stty size)",
        "S-30 100",
        Duration::from_secs(2),
        Duration::from_secs(10)
    ));
    t.resize(80, 20);
    assert!(t.retype_until(
        "echo T-$(stty size)",
        "T-20 80",
        Duration::from_secs(2),
        Duration::from_secs(10)
    ));
    t.type_line("sleep 100");
    std::thread::sleep(Duration::from_millis(500));
    t.keys(&["C-c"]);
    assert!(t.retype_until(
        "echo U-$((1+1))",
        "U-2",
        Duration::from_secs(2),
        Duration::from_secs(15)
    ));
    t.type_line("exit 6");
    assert!(
        wait_until(Duration::from_secs(10), || t.has_line("[exited 6]")),
        "{}",
        t.capture()
    );
}

#[test]
fn forwards_and_socks_client_work_without_bastion() {
    let (node, _d, key) = node_and_key();
    let echo = EchoServer::start();
    let (l, dport) = (free_port(), free_port());
    let mut fwd = node
        .direct_ssh(&key)
        .args(["-N", "-o", "ExitOnForwardFailure=yes", "-L"])
        .arg(format!("127.0.0.1:{l}:127.0.0.1:{}", echo.port))
        .arg("-D")
        .arg(format!("127.0.0.1:{dport}"))
        .timeout(Duration::from_secs(120))
        .spawn();
    let la: SocketAddr = format!("127.0.0.1:{l}").parse().unwrap();
    let da: SocketAddr = format!("127.0.0.1:{dport}").parse().unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || port_open(&la) && port_open(&da)),
        "{}",
        fwd.stderr()
    );
    let got = echo_roundtrip(TcpStream::connect(la).unwrap(), b"plain -L", Duration::from_secs(10)).unwrap();
    assert_eq!(got, b"plain -L");
    let s = socks5_connect(
        &da,
        SocksTarget::Ipv4([127, 0, 0, 1], echo.port),
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(
        echo_roundtrip(s, b"plain -D", Duration::from_secs(10)).unwrap(),
        b"plain -D"
    );
    let s = socks5_connect(
        &da,
        SocksTarget::Domain("127.0.0.1", echo.port),
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(
        echo_roundtrip(s, b"plain -D name", Duration::from_secs(10)).unwrap(),
        b"plain -D name"
    );
    assert!(fwd.is_running());
}

#[test]
fn agent_helper_gives_a_socket() {
    let d = tempfile::tempdir().unwrap();
    let (_agent, sock) = start_agent(d.path());
    let out = Cmd::new("ssh-add").arg("-l").env("SSH_AUTH_SOCK", &sock).run();
    // 1 = agent reachable but empty.
    assert_eq!(out.code(), Some(1), "{out}");
}

#[test]
fn sha256_matches_coreutils() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("f");
    write_random_file(&p, 3 << 20);
    let out = Cmd::new("sha256sum").arg(&p).run().expect_ok();
    assert_eq!(out.stdout.split_whitespace().next().unwrap(), sha256_file(&p));
}
