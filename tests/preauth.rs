//! Before authentication: the login grace time closes a half-open handshake
//! whatever state it is in, half-open handshakes cannot take the slots real
//! logins need, and nothing unexpected (a keepalive) is sent to a client that
//! is still typing its code.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bastion_e2e::*;

/// An unencrypted `SSH_MSG_IGNORE` with an empty string: what a stalling
/// client sends to look alive before key exchange.
const IGNORE_PACKET: [u8; 16] = [0, 0, 0, 12, 6, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// Opens a connection from `source` that sends its banner and then stalls.
fn half_open(source: [u8; 4], bastion: SocketAddr) -> Option<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    socket.bind(&SocketAddr::from((source, 0)).into()).ok()?;
    socket.connect_timeout(&bastion.into(), Duration::from_secs(5)).ok()?;
    let mut s: TcpStream = socket.into();
    s.write_all(b"SSH-2.0-stall\r\n").ok()?;
    Some(s)
}

/// True once the peer has closed (EOF or reset), waiting up to `wait` for it.
fn closed_by_peer(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn login_grace_closes_a_stalled_handshake_that_sends_ignores() {
    let (lab, _node, _alice) = lab_with_node(&["login_grace_time = \"3s\""]);
    let mut s = half_open([127, 0, 0, 1], lab.addr()).expect("connect");
    let started = Instant::now();
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(20) {
        if s.write_all(&IGNORE_PACKET).is_err() || closed_by_peer(&mut s, Duration::from_secs(1)) {
            closed = true;
            break;
        }
    }
    assert!(closed, "a banner plus IGNOREs kept the connection open for 20 s");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "closed before the grace time: {:?}",
        started.elapsed()
    );
    assert!(lab.log().contains("login grace time over"), "{}", lab.log());
}

#[test]
fn half_open_handshakes_do_not_starve_real_logins() {
    // Every connection slot could be held by handshakes that never finish:
    // 3 sources × 40 = the whole of max_connections.
    let (lab, _node, alice) = lab_with_node(&["max_connections = 120", "max_connections_per_source = 40"]);
    let mut held = Vec::new();
    for source in 2..=4u8 {
        for _ in 0..40 {
            if let Some(s) = half_open([127, 0, 0, source], lab.addr()) {
                held.push(s);
            }
        }
    }
    // The bastion refuses what is over max_startups_per_source at once.
    assert!(
        wait_until(Duration::from_secs(20), || held
            .iter_mut()
            .map(|s| usize::from(closed_by_peer(s, Duration::from_millis(1))))
            .sum::<usize>()
            >= 90),
        "the bastion kept more than 8 half-open handshakes per source"
    );
    for attempt in 0..3 {
        let out = lab
            .ssh(&alice)
            .arg("node-a")
            .arg("echo IN")
            .timeout(Duration::from_secs(30))
            .run();
        assert!(
            out.ok() && out.stdout.contains("IN"),
            "login {attempt} failed under half-open load:\n{out}\n{}",
            lab.log()
        );
    }
    drop(held);
}

#[test]
fn a_totp_code_typed_after_35_seconds_gets_in() {
    // The demo's defaults: keepalive_interval 30 s, TOTP required. To the
    // bastion itself: through a jump, ssh's ConnectTimeout would cover the
    // inner banner, which waits for the outer login.
    let demo = Demo::start_mfa();
    let secret = demo.info.totp_secret.clone().expect("totp_secret");
    let password = demo.info.password.clone().unwrap_or_default();
    let dir = demo.scratch("slow-askpass");
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("askpass.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncase \"$1\" in\n  *erification*) sleep 35; oathtool --totp -b {s} ;;\n  *) printf '%s\\n' {p} ;;\nesac\n",
            s = sh_quote(&secret),
            p = sh_quote(&password),
        ),
    )
    .unwrap();
    let mut perm = std::fs::metadata(&script).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&script, perm).unwrap();
    let out = ssh_askpass(&demo.ssh_config_path(), &script)
        .args(["bastion", "whoami"])
        .timeout(Duration::from_secs(120))
        .run();
    assert!(
        out.ok() && out.stdout.contains(demo.user()),
        "{out}\n{}",
        demo.bastion_log()
    );
}
