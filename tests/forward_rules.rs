//! Forward rules over addresses, end to end through stock OpenSSH: a rule
//! destination `127.0.0.*:P` or `127.0.0.0/8:P` lets `-L` reach the address
//! as written and nothing the node's resolver would read otherwise. glibc's
//! getaddrinfo on the node takes inet_aton spellings, so `127.0.0.01` and
//! `127.0.0.0x1` reach 127.0.0.1 there although, as text, they match the glob
//! `127.0.0.*`; names such as `10.0.0.evil.example` matched it the same way.
//! `-R` bind addresses go through the same matcher.
//!
//! The node is a private sshd on this machine, and the forwards end at an
//! echo server here, so whether a forward got through is seen directly.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::time::Duration;

use bastion_e2e::*;

struct ForwardLab {
    _lab: Lab,
    _node: SshdNode,
    echo: EchoServer,
    /// In a rule with `local_forward = ["127.0.0.*:ECHO"]`.
    globber: LabUser,
    /// In a rule with `127.0.0.0/8:ECHO` for `-L` and `127.0.0.0/8:*` for `-R`.
    cidr: LabUser,
}

fn forward_lab() -> ForwardLab {
    let mut lab = Lab::new();
    let node = SshdNode::start(SshdOptions {
        user_ca: Some(lab.user_ca().to_string()),
        ..Default::default()
    });
    let echo = EchoServer::start();
    // No `groups` shorthand: it would allow every forward.
    lab.add_target_toml(&format!(
        "[[targets]]\nname = \"node-1\"\naddress = \"{}\"\nlogins = [\"{}\"]\nhost_keys = [\"{}\"]\n\
         allow_local_forwarding = true\nallow_remote_forwarding = true\n",
        node.addr(),
        current_login(),
        node.host_key_line()
    ));
    let p = echo.port;
    lab.section(&format!(
        "[[rules]]\nname = \"glob\"\ngroups = [\"globbers\"]\ntargets = [\"node-1\"]\nlogins = [\"*\"]\n\
         local_forward = [\"127.0.0.*:{p}\"]\n\n\
         [[rules]]\nname = \"cidr\"\ngroups = [\"cidr\"]\ntargets = [\"node-1\"]\nlogins = [\"*\"]\n\
         local_forward = [\"127.0.0.0/8:{p}\"]\nremote_forward = [\"127.0.0.0/8:*\"]\n"
    ));
    let globber = lab.add_user_in("globber", &["globbers"]);
    let cidr = lab.add_user_in("cidr", &["cidr"]);
    lab.start();
    ForwardLab {
        _lab: lab,
        _node: node,
        echo,
        globber,
        cidr,
    }
}

impl ForwardLab {
    /// Opens one `ssh -L` per host (each to the echo port) as `user` and
    /// asserts that a connection echoes through 127.0.0.1 alone, and that
    /// the echo server saw no other connection.
    fn assert_only_127_0_0_1_gets_through(&self, user: &LabUser, rule: &str, hosts: &[&str]) {
        let ports: Vec<u16> = hosts.iter().map(|_| free_port()).collect();
        let mut cmd = ssh(user).args(["-N", "-o", "ExitOnForwardFailure=yes"]);
        for (host, port) in hosts.iter().zip(&ports) {
            cmd = cmd.arg("-L").arg(format!("127.0.0.1:{port}:{host}:{}", self.echo.port));
        }
        let mut fwd = cmd.arg("node-1").timeout(Duration::from_secs(120)).spawn();
        // Probing by connecting would itself open forwards and reach the echo server.
        let up = wait_until(Duration::from_secs(30), || {
            !fwd.is_running() || ports.iter().all(|p| TcpListener::bind(("127.0.0.1", *p)).is_err())
        });
        assert!(
            up && fwd.is_running(),
            "ssh did not listen on {ports:?}:\n{}",
            fwd.stderr()
        );
        let before = self.echo.accepted.load(Ordering::SeqCst);
        let mut through = Vec::new();
        for (host, port) in hosts.iter().zip(&ports) {
            let msg = format!("to {host}\n").into_bytes();
            let echoed = TcpStream::connect(("127.0.0.1", *port))
                .and_then(|s| echo_roundtrip(s, &msg, Duration::from_secs(10)))
                .is_ok_and(|got| got == msg);
            if echoed {
                through.push(*host);
            }
        }
        assert_eq!(through, ["127.0.0.1"], "what got through the rule {rule}");
        let reached = self.echo.accepted.load(Ordering::SeqCst) - before;
        assert_eq!(
            reached, 1,
            "the echo server saw connections the rule {rule} does not allow"
        );
    }

    /// `ssh -N -R SPEC:127.0.0.1:ECHO node-1` as the CIDR user.
    fn remote_forward(&self, spec: &str) -> Cmd {
        ssh(&self.cidr)
            .args(["-N", "-o", "ExitOnForwardFailure=yes", "-R"])
            .arg(format!("{spec}:127.0.0.1:{}", self.echo.port))
            .arg("node-1")
    }
}

#[test]
fn an_address_glob_reaches_only_the_address_as_written() {
    let l = forward_lab();
    // Each of these reaches 127.0.0.1 on a glibc node.
    l.assert_only_127_0_0_1_gets_through(&l.globber, "127.0.0.*", &["127.0.0.1", "127.0.0.01", "127.0.0.0x1"]);
}

#[test]
fn a_cidr_rule_covers_addresses_in_the_block_only() {
    let l = forward_lab();
    // 127.0.0.2 is in the block but nothing listens there: it gets through
    // the bastion and fails at the node.
    let hosts = ["127.0.0.1", "127.0.0.2", "2130706433", "127.1", "localhost"];
    l.assert_only_127_0_0_1_gets_through(&l.cidr, "127.0.0.0/8", &hosts);
}

#[test]
fn remote_forward_bind_addresses_use_the_same_rules() {
    let l = forward_lab();
    let rport = free_port();
    let mut fwd = l
        .remote_forward(&format!("127.0.0.1:{rport}"))
        .timeout(Duration::from_secs(120))
        .spawn();
    let addr: SocketAddr = format!("127.0.0.1:{rport}").parse().unwrap();
    let up = wait_until(Duration::from_secs(30), || !fwd.is_running() || port_open(&addr));
    assert!(
        up && fwd.is_running(),
        "-R on 127.0.0.1 (inside 127.0.0.0/8) was refused:\n{}",
        fwd.stderr()
    );
    let got =
        echo_roundtrip(TcpStream::connect(addr).unwrap(), b"back", Duration::from_secs(10)).expect("echo over -R");
    assert_eq!(got, b"back");
    // Without a bind address OpenSSH asks for `localhost`: a name, which an
    // address rule does not cover.
    let refused = l
        .remote_forward(&free_port().to_string())
        .timeout(Duration::from_secs(60))
        .run();
    assert!(
        !refused.timed_out && refused.stderr.contains("remote port forwarding failed"),
        "-R on localhost was not refused by the rule 127.0.0.0/8:\n{refused}"
    );
}

#[test]
fn config_check_rejects_mixed_destination_patterns() {
    let mut lab = Lab::new();
    // A config the old parser passed whole, so only the pattern can fail it.
    let key = keygen(&lab.dir().join("node_key"), "node");
    lab.add_target("node-1", "127.0.0.1:1", &["root"], &[key_without_comment(&key)]);
    lab.add_user_in("op", &["ops"]);
    let base = lab.config_text();
    // The line of `local_forward` in the rule appended below.
    let line = base.lines().count() + 7;
    for (bad, says) in [
        ("10.0.0.0/33:443", "prefix length must be 0-32"),
        ("10.0.*.0/24:443", "a wildcard and a prefix length do not mix"),
        ("010.0.0.*:443", "`010` is not a number 0-255"),
    ] {
        lab.start_with_config_text_only(&format!(
            "{base}\n[[rules]]\nname = \"bad\"\ngroups = [\"ops\"]\ntargets = [\"node-1\"]\nlogins = [\"*\"]\n\
             local_forward = [\"{bad}\"]\n"
        ));
        let out = Cmd::new(bastion_bin())
            .args(["config", "check"])
            .arg(lab.config_path())
            .timeout(Duration::from_secs(30))
            .run();
        let want = format!("{}:{line}: `rules[0].local_forward[0]`", lab.config_path().display());
        assert!(
            !out.ok() && out.all_output().contains(&want) && out.all_output().contains(says),
            "`{bad}` was not rejected at {want} saying {says:?}:\n{out}"
        );
    }
}
