//! Identity end to end, through the real `ssh` client: key or password plus
//! a TOTP code (computed by `oathtool`, not by our code), replayed and wrong
//! codes refused with the same message, enrollment with an admin token, and
//! the operator's lock and unlock.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bastion_e2e::*;

fn oathtool(secret: &str, at: Option<u64>) -> String {
    let mut cmd = Cmd::new("oathtool").args(["--totp", "-b"]);
    if let Some(t) = at {
        cmd = cmd.arg(format!("--now=@{t}"));
    }
    let out = cmd.arg(secret).timeout(Duration::from_secs(10)).run().expect_ok();
    out.stdout.trim().to_string()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// An askpass script in the demo's scratch space (see `askpass_script`).
fn askpass(demo: &Demo, name: &str, password: &str, code: &str) -> (PathBuf, PathBuf) {
    askpass_script(&demo.scratch(name), password, code)
}

/// `ssh bastion COMMAND` answering prompts through `script`.
fn login(demo: &Demo, script: &std::path::Path, extra: &[&str], command: &str) -> Out {
    ssh_askpass(&demo.ssh_config_path(), script)
        .args(extra)
        .args(["bastion", command])
        .run()
}

fn secret(demo: &Demo) -> String {
    demo.info.totp_secret.clone().expect("demo.json has totp_secret")
}

#[test]
fn key_plus_totp_and_password_plus_totp() {
    let demo = Demo::start_mfa();
    let password = demo.info.password.clone().unwrap();
    // Key alone is not enough: BatchMode cannot answer the code prompt.
    let alone = ssh(&demo).args(["bastion", "whoami"]).run();
    assert!(!alone.ok(), "a key alone let the user in:\n{alone}");

    let code = oathtool(&secret(&demo), None);
    let (script, prompts) = askpass(&demo, "key-totp", "unused", &code);
    let out = login(&demo, &script, &[], "whoami");
    assert!(out.ok(), "key + TOTP refused:\n{out}\n{}", demo.bastion_log());
    assert!(out.stdout.contains("publickey") && out.stdout.contains("totp"), "{out}");
    let seen = read_lossy(&prompts);
    assert!(seen.contains("Verification code:"), "prompts: {seen:?}");
    assert!(
        !seen.contains("Password:"),
        "after a key only the code is asked: {seen:?}"
    );

    // Password + TOTP, without the key; the next time step's code so the
    // first one (already used) does not count.
    let code2 = oathtool(&secret(&demo), Some(now() + 30));
    let (script2, prompts2) = askpass(&demo, "pw-totp", &password, &code2);
    let out = login(&demo, &script2, &["-o", "PubkeyAuthentication=no"], "whoami");
    assert!(out.ok(), "password + TOTP refused:\n{out}\n{}", demo.bastion_log());
    assert!(out.stdout.contains("password") && out.stdout.contains("totp"), "{out}");
    let seen = read_lossy(&prompts2);
    assert!(
        seen.contains("Password:") && seen.contains("Verification code:"),
        "{seen:?}"
    );
}

#[test]
fn replayed_and_wrong_codes_are_refused_alike() {
    let demo = Demo::start_mfa();
    let code = oathtool(&secret(&demo), None);
    let (script, _) = askpass(&demo, "first", "unused", &code);
    let first = login(&demo, &script, &[], "whoami");
    assert!(first.ok(), "{first}\n{}", demo.bastion_log());
    // The same code again: refused, although it is still within its window.
    let replay = login(&demo, &script, &[], "whoami");
    assert!(!replay.ok(), "a replayed code was accepted:\n{replay}");
    // A code from far away in time: refused with the same words.
    let wrong = oathtool(&secret(&demo), Some(now() + 3600));
    let (script_wrong, _) = askpass(&demo, "wrong", "unused", &wrong);
    let bad = login(&demo, &script_wrong, &[], "whoami");
    assert!(!bad.ok(), "a wrong code was accepted:\n{bad}");
    let generic = |o: &Out| {
        o.stderr
            .lines()
            .filter(|l| l.contains("Permission denied"))
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(generic(&replay), generic(&bad), "the refusals differ:\n{replay}\n{bad}");
    assert!(!replay.stderr.to_lowercase().contains("used"), "{replay}");
    let log = demo.bastion_log();
    assert!(log.contains("code already used"), "{log}");
    assert!(log.contains("wrong code"), "{log}");
}

#[test]
fn enrollment_with_an_admin_token_end_to_end() {
    let demo = Demo::start_mfa();
    // Forget the demo user's TOTP as an operator would after a lost phone.
    let bin = bastion_bin();
    let cfg = demo.config_path().to_path_buf();
    Cmd::new(&bin)
        .args(["users", "reset-totp", "demo", "--config"])
        .arg(&cfg)
        .run()
        .expect_ok();
    // Without TOTP a key login only opens enrollment.
    let out = ssh(&demo).args(["bastion", "targets"]).run();
    assert!(!out.ok() && out.stderr.contains("enrollment is required"), "{out}");
    let to_node = ssh(&demo).args([demo.node(), "true"]).run();
    assert!(!to_node.ok(), "an enrollment-only login reached a node:\n{to_node}");
    // A wrong token changes nothing.
    let bad = ssh(&demo)
        .args(["bastion", "enroll", "totp", "--token", "nope"])
        .stdin("")
        .run();
    assert!(!bad.ok() && bad.stderr.contains("not valid"), "{bad}");
    let token = Cmd::new(&bin)
        .args(["users", "enroll-token", "demo", "--config"])
        .arg(&cfg)
        .run()
        .expect_ok()
        .stdout
        .trim()
        .to_string();
    // Enroll: read the secret the bastion shows, answer with oathtool's code.
    let mut child = std::process::Command::new("ssh")
        .arg("-F")
        .arg(demo.ssh_config_path())
        .args(["-o", "BatchMode=yes", "bastion", "enroll", "totp", "--token", &token])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 4096];
    let secret = loop {
        use std::io::Read;
        assert!(std::time::Instant::now() < deadline, "no secret shown: {seen}");
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "enrollment ended early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        if let Some(line) = seen.lines().find(|l| l.starts_with("secret: "))
            && seen.contains("Verification code:")
        {
            break line.trim_start_matches("secret: ").trim().to_string();
        }
    };
    assert!(seen.contains("otpauth://totp/"), "{seen}");
    assert!(
        seen.contains('█') || seen.contains('▀') || seen.contains('▄'),
        "no QR code drawn:\n{seen}"
    );
    let code = oathtool(&secret, None);
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{code}").unwrap();
    }
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert!(status.success(), "enrollment failed: {seen}{rest}");
    assert!(rest.contains("TOTP enrolled"), "{rest}");
    // From now on the new secret is the one asked for.
    let next = oathtool(&secret, Some(now() + 30));
    let (script, _) = askpass(&demo, "after-enroll", "unused", &next);
    let out = login(&demo, &script, &[], "whoami");
    assert!(
        out.ok(),
        "login with the new secret failed:\n{out}\n{}",
        demo.bastion_log()
    );
    assert!(out.stdout.contains("enrolled: totp"), "{out}");
    // The token was single-use.
    let again = ssh(&demo)
        .args(["bastion", "enroll", "totp", "--token", &token])
        .stdin("")
        .run();
    assert!(!again.ok(), "{again}");
}

#[test]
fn repeated_failures_lock_until_an_operator_unlocks() {
    let demo = Demo::start_mfa();
    let bin = bastion_bin();
    let cfg = demo.config_path().to_path_buf();
    // Ten wrong passwords (PCI DSS 8.3.4 default). Back-off delays grow, so
    // count the failures through the state store instead of the wall clock:
    // `users show` says how many there are.
    let (script, _) = askpass(&demo, "wrong-pw", "wrong password", "000000");
    let mut locked = false;
    // Attackers do not wait for the back-off: four attempts at a time.
    for _round in 0..5 {
        let attempts: Vec<Bg> = (0..4)
            .map(|_| {
                Cmd::new("ssh")
                    .arg("-F")
                    .arg(demo.ssh_config_path())
                    .args([
                        "-o",
                        "BatchMode=no",
                        "-o",
                        "ConnectTimeout=10",
                        "-o",
                        "NumberOfPasswordPrompts=1",
                    ])
                    .args(["-o", "PubkeyAuthentication=no"])
                    .env("SSH_ASKPASS", &script)
                    .env("SSH_ASKPASS_REQUIRE", "force")
                    .env("DISPLAY", ":0")
                    .args(["bastion", "whoami"])
                    .timeout(Duration::from_secs(90))
                    .spawn()
            })
            .collect();
        for a in attempts {
            let out = a.wait();
            assert!(!out.ok(), "{out}");
        }
        let show = Cmd::new(&bin)
            .args(["users", "show", "demo", "--config"])
            .arg(&cfg)
            .run()
            .expect_ok();
        if show.stdout.contains("locked until") {
            let failures: u32 = show
                .stdout
                .lines()
                .find_map(|l| l.strip_prefix("failures:"))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0);
            assert!(failures >= 10, "locked before the 10th failure:\n{}", show.stdout);
            locked = true;
            break;
        }
        assert!(!show.stdout.contains("locked"), "{}", show.stdout);
    }
    assert!(locked, "no lock after repeated failures:\n{}", demo.bastion_log());
    // Now even the right key and code are refused.
    let code = oathtool(&secret(&demo), None);
    let (good, _) = askpass(&demo, "good", "unused", &code);
    let refused = login(&demo, &good, &[], "whoami");
    assert!(!refused.ok(), "a locked account got in:\n{refused}");
    assert!(demo.bastion_log().contains("locked"), "{}", demo.bastion_log());
    Cmd::new(&bin)
        .args(["users", "unlock", "demo", "--config"])
        .arg(&cfg)
        .run()
        .expect_ok();
    let code = oathtool(&secret(&demo), Some(now() + 30));
    let (good, _) = askpass(&demo, "good-after", "unused", &code);
    let out = login(&demo, &good, &[], "whoami");
    assert!(
        out.ok(),
        "unlock did not let the user back in:\n{out}\n{}",
        demo.bastion_log()
    );
}
