//! Sessions through the bastion: interactive terminals, exec semantics,
//! the different ways of naming a target, and commands to the bastion itself.

use std::time::Duration;

use bastion_e2e::*;

/// The ssh command line that tmux runs for an interactive session to the demo's first node.
fn interactive_ssh(demo: &Demo) -> String {
    format!(
        "ssh -F {} -o BatchMode=yes -o ConnectTimeout=10 -tt {}",
        sh_quote(&demo.ssh_config_path().display().to_string()),
        demo.node()
    )
}

/// Waits until the remote shell answers (typing a probe until its result shows).
fn wait_for_shell(t: &Tmux) {
    assert!(
        t.retype_until(
            "echo READY-$((1+2))",
            "READY-3",
            Duration::from_secs(3),
            Duration::from_secs(40)
        ),
        "the remote shell never answered through the bastion"
    );
}

#[test]
fn interactive_shell_through_proxyjump() {
    let demo = Demo::start();
    let t = Tmux::start(&interactive_ssh(&demo), 120, 40);
    wait_for_shell(&t);
    t.type_line("echo $((6*7))");
    assert!(
        wait_until(Duration::from_secs(15), || t.has_line("42")),
        "`echo $((6*7))` did not print 42 in the interactive session"
    );
    // The shell runs on the node as the login, with a terminal.
    t.type_line("echo WHO-$(id -un)-TTY-$(test -t 0 && echo yes || echo no)");
    let want = format!("WHO-{}-TTY-yes", demo.login());
    assert!(
        wait_until(Duration::from_secs(15), || t.has_line(&want)),
        "expected a line `{want}`"
    );
    // Leaving the shell ends ssh with the shell's status.
    t.type_line("exit 7");
    assert!(
        wait_until(Duration::from_secs(15), || t.has_line("[exited 7]")),
        "ssh did not end with the remote shell's exit status 7"
    );
}

#[test]
fn terminal_resize_reaches_node() {
    let demo = Demo::start();
    let t = Tmux::start(&interactive_ssh(&demo), 120, 40);
    wait_for_shell(&t);
    let (rows, cols) = t.pane_size();
    let first = format!("SIZE-{rows} {cols}-END");
    assert!(
        t.retype_until(
            "echo SIZE-$(stty size)-END",
            &first,
            Duration::from_secs(3),
            Duration::from_secs(15)
        ),
        "the node's terminal size is not the client's {rows}x{cols}"
    );
    t.resize(90, 25);
    let (rows2, cols2) = t.pane_size();
    assert_eq!((rows2, cols2), (25, 90), "tmux did not resize the pane");
    let second = format!("SIZE2-{rows2} {cols2}-END");
    assert!(
        t.retype_until(
            "echo SIZE2-$(stty size)-END",
            &second,
            Duration::from_secs(2),
            Duration::from_secs(20)
        ),
        "after resizing to {rows2}x{cols2} the node's terminal did not follow"
    );
}

#[test]
fn ctrl_c_reaches_remote_process() {
    let demo = Demo::start();
    let t = Tmux::start(&interactive_ssh(&demo), 120, 40);
    wait_for_shell(&t);
    t.type_line("echo SLEEPING-$((3+4)); sleep 100");
    assert!(
        wait_until(Duration::from_secs(15), || t.has_line("SLEEPING-7")),
        "the command did not start"
    );
    std::thread::sleep(Duration::from_millis(500));
    t.keys(&["C-c"]);
    // `sleep 100` blocks the shell far longer than this deadline: the shell
    // answering again means the interrupt reached the remote process.
    assert!(
        t.retype_until(
            "echo ALIVE-$((1+1))",
            "ALIVE-2",
            Duration::from_secs(2),
            Duration::from_secs(20)
        ),
        "after Ctrl-C the remote shell did not come back (sleep 100 not interrupted)"
    );
    assert!(!t.has_line("[exited 255]"), "ssh itself died on Ctrl-C");
}

#[test]
fn proxyjump_exec_runs_on_node_as_login() {
    let demo = Demo::start();
    let out = ssh(&demo)
        .arg(demo.node())
        .arg("echo OUT-$(id -un); echo ERR >&2")
        .run()
        .expect_ok();
    assert_eq!(out.stdout.trim(), format!("OUT-{}", demo.login()), "{out}");
    assert!(
        out.stderr.contains("ERR"),
        "remote stderr did not reach the client's stderr:\n{out}"
    );
    assert!(!out.stdout.contains("ERR"), "remote stderr leaked into stdout:\n{out}");
}

#[test]
fn explicit_jump_form() {
    let demo = Demo::start();
    let local = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    let out = ssh(&demo)
        .args(["-J", "bastion"])
        .arg(format!("{}@{}", demo.login(), demo.node()))
        .arg("hostname")
        .run()
        .expect_ok();
    // The demo nodes run on this machine.
    assert_eq!(out.stdout.trim(), local, "{out}");
}

#[test]
fn exit_status_is_propagated() {
    let demo = Demo::start();
    ssh(&demo).arg(demo.node()).arg("exit 3").run().expect_code(3);
    ssh(&demo).arg(demo.node()).arg("true").run().expect_code(0);
    ssh(&demo).arg(demo.node()).arg("exit 200").run().expect_code(200);
}

/// A command that closes its output and exits later, over a shared
/// connection: OpenSSH's ControlMaster closes the channel as soon as EOF went
/// both ways, so the bastion must send the exit status before the EOF (russh
/// drops whatever follows the client's close; `ssh` exited 255). Through a
/// plain jump host the master waits and `ssh` gets 7.
#[test]
fn exit_status_after_the_output_closed_reaches_a_shared_connection() {
    let demo = Demo::start();
    let control = demo.dir().join("cm");
    let _master = master_connection(&demo, demo.node(), &control);
    let out = ssh_shared(&demo, &control)
        .arg(demo.node())
        .arg("echo before; exec >&- 2>&-; sleep 0.3; exit 7")
        .run();
    assert_eq!(out.code(), Some(7), "{out}\n{}", demo.bastion_log());
    assert_eq!(out.stdout, "before\n", "{out}");
}

#[test]
fn stdin_and_eof_pass_through() {
    let demo = Demo::start();
    let data = random_bytes(3 << 20);
    let out = ssh(&demo)
        .arg(demo.node())
        .arg("sha256sum")
        .stdin(data.clone())
        .timeout(Duration::from_secs(60))
        .run()
        .expect_ok();
    let got = out.stdout.split_whitespace().next().unwrap_or("").to_string();
    assert_eq!(
        got,
        sha256_bytes(&data),
        "the node did not read exactly our stdin up to EOF:\n{out}"
    );
}

/// Stock OpenSSH reports a command killed by a signal as exit status 255
/// (exit-signal, no exit-status). Measured against a private sshd, then the
/// same command through the bastion must give the same.
#[test]
fn remote_signal_matches_stock_openssh() {
    let demo = Demo::start();
    let scratch = demo.scratch("signal");
    let key = scratch.join("direct_ed25519");
    let pubkey = keygen(&key, "direct");
    let node = SshdNode::start(SshdOptions {
        authorized_keys: vec![pubkey],
        ..Default::default()
    });
    let direct = node.direct_ssh(&key).arg("kill -TERM $$").run();
    assert!(!direct.timed_out, "{direct}");
    let want = direct.code();
    assert!(
        want == Some(255) || want == Some(128 + 15),
        "stock OpenSSH gave an unexpected status for a signalled command:\n{direct}"
    );
    let via = ssh(&demo).arg(demo.node()).arg("kill -TERM $$").run();
    assert!(!via.timed_out, "{via}");
    assert_eq!(via.code(), want, "through the bastion (direct gave {want:?}):\n{via}");
    let direct_kill = node.direct_ssh(&key).arg("kill -KILL $$").run();
    let via_kill = ssh(&demo).arg(demo.node()).arg("kill -KILL $$").run();
    assert_eq!(
        via_kill.code(),
        direct_kill.code(),
        "SIGKILL: direct\n{direct_kill}\nthrough the bastion\n{via_kill}"
    );
}

#[test]
fn direct_mode_login() {
    let demo = Demo::start();
    let out = ssh(&demo)
        .arg("-l")
        .arg(format!("{}:{}@{}", demo.user(), demo.login(), demo.node()))
        .arg("-p")
        .arg(demo.port().to_string())
        .arg("-i")
        .arg(demo.identity())
        .args(["-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", demo.known_hosts().display()))
        .arg("127.0.0.1")
        .arg("echo DIRECT-$(id -un)")
        .run()
        .expect_ok();
    assert_eq!(out.stdout.trim(), format!("DIRECT-{}", demo.login()), "{out}");
}

#[test]
fn direct_mode_exit_status() {
    let demo = Demo::start();
    ssh(&demo)
        .arg("-l")
        .arg(format!("{}:{}@{}", demo.user(), demo.login(), demo.node()))
        .arg("-p")
        .arg(demo.port().to_string())
        .arg("-i")
        .arg(demo.identity())
        .args(["-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", demo.known_hosts().display()))
        .arg("127.0.0.1")
        .arg("exit 5")
        .run()
        .expect_code(5);
}

#[test]
fn bastion_whoami() {
    let demo = Demo::start();
    let out = ssh(&demo).args(["bastion", "whoami"]).run().expect_ok();
    assert!(
        out.stdout.contains(demo.user()),
        "whoami does not name `{}`:\n{out}",
        demo.user()
    );
}

#[test]
fn bastion_targets_lists_node() {
    let demo = Demo::start();
    let out = ssh(&demo).args(["bastion", "targets"]).run().expect_ok();
    for node in &demo.info.nodes {
        let line = out
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(node.as_str()));
        let line = line.unwrap_or_else(|| panic!("`targets` does not list {node}:\n{out}"));
        assert!(
            line.split_whitespace().any(|w| w == demo.login()),
            "the line for {node} does not name the login:\n{out}"
        );
    }
}

#[test]
fn two_concurrent_sessions_of_one_user() {
    let demo = Demo::start();
    let a = ssh(&demo).arg(demo.node()).arg("sleep 2; echo A-done").spawn();
    let b = ssh(&demo).arg(demo.node()).arg("sleep 2; echo B-done").spawn();
    let started = std::time::Instant::now();
    let a = a.wait_timeout(Duration::from_secs(60)).expect_ok();
    let b = b.wait_timeout(Duration::from_secs(60)).expect_ok();
    assert_eq!(a.stdout.trim(), "A-done", "{a}");
    assert_eq!(b.stdout.trim(), "B-done", "{b}");
    // Both sleeps ran at the same time, not one after the other.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "sessions took {:?}",
        started.elapsed()
    );
}

/// `ssh bastion whoami` with password login only, the password typed by an SSH_ASKPASS program.
fn password_login(demo: &Demo, password: &str) -> (Out, String) {
    let dir = demo.scratch(&format!("askpass-{}", &sha256_bytes(password.as_bytes())[..8]));
    let prompts = dir.join("prompts");
    let script = dir.join("askpass.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$1\" >> {}\nprintf '%s\\n' {}\n",
            sh_quote(&prompts.display().to_string()),
            sh_quote(password)
        ),
    )
    .unwrap();
    chmod(&script, 0o755);
    // Not the ssh() builder: its BatchMode=yes would win over ours (first value counts).
    let out = Cmd::new("ssh")
        .arg("-F")
        .arg(demo.ssh_config_path())
        .args([
            "-o",
            "BatchMode=no",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "PubkeyAuthentication=no",
        ])
        .args([
            "-o",
            "PreferredAuthentications=keyboard-interactive,password",
            "-o",
            "NumberOfPasswordPrompts=1",
        ])
        .env("SSH_ASKPASS", &script)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0")
        .args(["bastion", "whoami"])
        .timeout(Duration::from_secs(30))
        .run();
    (out, read_lossy(&prompts))
}

#[test]
fn password_login_via_askpass() {
    let demo = Demo::start();
    let password = demo.info.password.clone().expect("demo.json has no password");
    let (out, prompts) = password_login(&demo, &password);
    assert!(out.ok(), "password login failed (prompts seen: {prompts:?}):\n{out}");
    assert!(out.stdout.contains(demo.user()), "{out}");
    assert!(
        prompts.to_lowercase().contains("password"),
        "the prompt did not ask for a password: {prompts:?}"
    );
    let (bad, _) = password_login(&demo, "certainly-not-the-password");
    assert!(!bad.ok() && !bad.timed_out, "a wrong password was accepted:\n{bad}");
    assert!(!bad.stdout.contains(demo.user()), "{bad}");
}
