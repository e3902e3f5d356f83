//! Third-party SSH clients through the demo bastion, as their users run them:
//! paramiko (Fabric, Netmiko, Ansible's paramiko transport) with a key and a
//! TOTP code, straight to the bastion and on to a node; Dropbear's `dbclient`
//! jumping to a node (it has no AES-GCM) and logging in with a code typed
//! after 35 s; and what stock OpenSSH is offered on each hop (no DH group
//! exchange, only EtM MACs, AES-GCM kept inside).

use std::path::{Path, PathBuf};
use std::time::Duration;

use bastion_e2e::*;

/// The Python that has paramiko: the tests' venv (scripts/install-test-deps),
/// else the system's.
fn python() -> PathBuf {
    let venv = Path::new("/usr/local/lib/bastion-tests/moto/bin/python");
    if venv.exists() {
        venv.to_path_buf()
    } else {
        PathBuf::from("python3")
    }
}

/// The absolute path of `program` on PATH.
fn which(program: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{program} is not installed (scripts/install-test-deps)"))
}

fn paramiko_login(demo: &Demo, extra: &[&str]) -> Out {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/paramiko_login.py");
    let state = demo.scratch("paramiko").join("totp-step");
    Cmd::new(python())
        .arg(script)
        .args(["--host", "127.0.0.1", "--port", &demo.port().to_string()])
        .args(["--user", demo.user()])
        .arg("--key")
        .arg(demo.identity())
        .args(["--totp-secret", demo.info.totp_secret.as_deref().expect("totp_secret")])
        .arg("--totp-state")
        .arg(state)
        .args(["--mode", "service-once", "--timeout", "20"])
        .args(extra)
        .timeout(Duration::from_secs(150))
        .run()
}

/// The set-up docs/operator-guide.md gives for paramiko and Fabric:
/// `SSHClient.connect(pkey=…, password=<code>,
/// transport_factory=ServiceRequestingTransport)`.
#[test]
fn paramiko_key_plus_totp_logs_in_and_jumps_to_a_node() {
    let demo = Demo::start_mfa();
    let out = paramiko_login(&demo, &["--command", "whoami"]);
    assert!(
        out.ok() && out.stdout.starts_with("SUCCESS") && out.stdout.contains(demo.user()),
        "{out}\n{}",
        demo.bastion_log()
    );
    assert!(
        demo.bastion_log().contains("factors=[\"publickey\", \"totp\"]"),
        "{}",
        demo.bastion_log()
    );
    // ProxyJump by hand: direct-tcpip to the node's name, SSH over it.
    let node = format!("{}:22", demo.node());
    let jumped = paramiko_login(
        &demo,
        &[
            "--direct-tcpip",
            &node,
            "--inner-login",
            demo.login(),
            "--command",
            "echo PARAMIKO-ON-NODE",
        ],
    );
    assert!(
        jumped.ok() && jumped.stdout.contains("PARAMIKO-ON-NODE"),
        "{jumped}\n{}",
        demo.bastion_log()
    );
}

/// `dbclient user@bastion/port,login@node cmd`: Dropbear's multi-hop, which
/// runs a second dbclient over a direct-tcpip channel (`-B`).
#[test]
fn dropbear_jumps_through_the_bastion() {
    let demo = Demo::start();
    let home = demo.scratch("dropbear-home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    let key = home.join("id_dropbear");
    Cmd::new("dropbearconvert")
        .args(["openssh", "dropbear"])
        .arg(demo.identity())
        .arg(&key)
        .run()
        .expect_ok();
    let addr = demo.bastion_addr();
    let hops = format!(
        "{}@{}/{},{}@{}",
        demo.user(),
        addr.ip(),
        addr.port(),
        demo.login(),
        demo.node()
    );
    // -y: accept (and remember) the host keys on first use, in this HOME.
    // By absolute path: the multi-hop runs argv[0] again for the next hop.
    let out = Cmd::new(which("dbclient"))
        .env("HOME", &home)
        .arg("-y")
        .arg("-i")
        .arg(&key)
        .arg(&hops)
        .arg("echo DROPBEAR-ON-NODE")
        .stdin("")
        .timeout(Duration::from_secs(60))
        .run();
    assert!(
        out.ok() && out.stdout.contains("DROPBEAR-ON-NODE"),
        "{out}\n{}",
        demo.bastion_log()
    );
}

/// The algorithm lists a server proposed, as `ssh -vv` prints them
/// (`debug2: KEX algorithms: …` after `debug2: peer server KEXINIT proposal`,
/// up to `first_kex_follows`).
fn server_proposals(verbose: &str) -> Vec<Vec<(String, String)>> {
    let mut proposals = Vec::new();
    let mut current: Option<Vec<(String, String)>> = None;
    for line in verbose.lines() {
        let line = line.trim_start_matches("debug2: ");
        if line.starts_with("peer server KEXINIT proposal") {
            current = Some(Vec::new());
            continue;
        }
        let Some(p) = current.as_mut() else { continue };
        match line.split_once(':') {
            Some((k, v)) if !k.starts_with("first_kex_follows") => p.push((k.to_string(), v.trim().to_string())),
            _ => proposals.extend(current.take()),
        }
    }
    proposals.extend(current);
    proposals
}

/// What the server proposed on the connection `args` makes, checked.
#[track_caller]
fn assert_strong_offer(demo: &Demo, args: &[&str]) -> Out {
    let out = ssh(demo).arg("-vv").args(args).run();
    assert!(out.ok(), "{out}");
    let proposals = server_proposals(&out.stderr);
    let ours = proposals
        .last()
        .unwrap_or_else(|| panic!("no server proposal in:\n{}", out.stderr));
    let list = |name: &str| {
        ours.iter()
            .find(|(k, _)| k.starts_with(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {name} in {ours:?}"))
    };
    let kex = list("KEX algorithms");
    assert!(kex.starts_with("mlkem768x25519-sha256,"), "{kex}");
    assert!(!kex.contains("diffie-hellman"), "{kex}");
    let macs = list("MACs");
    assert!(macs.split(',').all(|m| m.ends_with("-etm@openssh.com")), "{macs}");
    assert_eq!(list("compression"), "none");
    assert!(!list("ciphers").contains("-cbc"), "{ours:?}");
    out
}

#[test]
fn openssh_is_offered_strong_algorithms_and_keeps_aes_gcm_inside() {
    let demo = Demo::start();
    // The outer server: the bastion itself.
    let outer = assert_strong_offer(&demo, &["bastion", "whoami"]);
    assert!(outer.stdout.contains(demo.user()), "{outer}");
    // The inner server (ProxyJump's second hop, the main ssh process), which
    // must still choose AES-GCM for OpenSSH.
    let inner = assert_strong_offer(&demo, &[demo.node(), "echo OPENSSH-ON-NODE"]);
    assert!(inner.stdout.contains("OPENSSH-ON-NODE"), "{inner}");
    let chosen: Vec<&str> = inner
        .stderr
        .lines()
        .filter(|l| l.contains("kex: server->client cipher:"))
        .collect();
    assert!(
        chosen.last().is_some_and(|l| l.contains("-gcm@openssh.com MAC")),
        "{chosen:?}"
    );
    // A client that insists on DH key exchange, or on MAC-then-encrypt, is refused.
    let dh = ssh(&demo)
        .args([
            "-o",
            "KexAlgorithms=diffie-hellman-group-exchange-sha256,diffie-hellman-group14-sha256",
        ])
        .args(["bastion", "whoami"])
        .run();
    assert!(
        !dh.ok() && dh.stderr.contains("no matching key exchange method"),
        "{dh}"
    );
    let mac = ssh(&demo)
        .args(["-o", "Ciphers=aes256-ctr", "-o", "MACs=hmac-sha2-256,hmac-sha1"])
        .args(["bastion", "whoami"])
        .run();
    assert!(!mac.ok() && mac.stderr.contains("no matching MAC"), "{mac}");
}

/// A Dropbear user who takes 35 s to read the code from a phone still gets
/// in: nothing (no keepalive) is sent to a client mid-login. dbclient reads
/// keyboard-interactive answers from stdin when it has no terminal.
#[test]
fn dropbear_logs_in_with_a_code_typed_after_35_seconds() {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    let demo = Demo::start_mfa();
    let home = demo.scratch("dropbear-slow-home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    let key = home.join("id_dropbear");
    Cmd::new("dropbearconvert")
        .args(["openssh", "dropbear"])
        .arg(demo.identity())
        .arg(&key)
        .run()
        .expect_ok();
    let secret = demo.info.totp_secret.clone().expect("totp_secret");
    let addr = demo.bastion_addr();
    let mut child = Command::new(which("dbclient"))
        .env("HOME", &home)
        .arg("-y")
        .arg("-i")
        .arg(&key)
        .arg(format!("{}@{}/{}", demo.user(), addr.ip(), addr.port()))
        .arg("whoami")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dbclient");
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 || tx.send(String::from_utf8_lossy(&buf[..n]).into_owned()).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !seen.contains("Verification code:") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(text) => seen.push_str(&text),
            Err(_) => {
                let _ = child.kill();
                panic!("no code was asked for:\n{seen}\n{}", demo.bastion_log());
            }
        }
    }
    // The user reads the phone for 35 s (longer than the 30 s keepalive
    // interval that used to end the login), then types the code.
    std::thread::sleep(Duration::from_secs(35));
    let code = Cmd::new("oathtool").args(["--totp", "-b", &secret]).run().expect_ok();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{}", code.stdout.trim()).unwrap();
    drop(stdin);
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    let status = child.wait().unwrap();
    seen.extend(rx.try_iter());
    assert!(
        status.success() && stdout.contains(demo.user()),
        "{status}\nstdout: {stdout}\nstderr: {seen}\n{}",
        demo.bastion_log()
    );
    assert!(
        demo.bastion_log().contains("factors=[\"publickey\", \"totp\"]"),
        "{}",
        demo.bastion_log()
    );
}
