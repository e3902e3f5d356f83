//! `bastion demo --directory ad` as a newcomer uses it: the AD user logs in
//! through ProxyJump with her Active Directory password and a TOTP code
//! (from `oathtool`), and reaches the node; and her failure counter holds
//! whatever case she is typed in, and however many attempts run at once.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bastion_e2e::*;

/// AD's ports are fixed, so one DC serves this binary: one demo at a time.
static AD: Mutex<()> = Mutex::new(());

fn ad_demo() -> (std::sync::MutexGuard<'static, ()>, Demo) {
    let guard = AD.lock().unwrap_or_else(|p| p.into_inner());
    // Share the AD provisioned by the other tests (its ports are fixed).
    // SAFETY: every test sets the same value, under the lock, before it
    // starts a child.
    unsafe {
        std::env::set_var(
            "BASTION_SAMBA_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("samba-ad"),
        )
    };
    (guard, Demo::start_with(&["--directory", "ad"]))
}

fn totp_now(secret: &str) -> String {
    Cmd::new("oathtool")
        .args(["--totp", "-b", secret])
        .run()
        .expect_ok()
        .stdout
        .trim()
        .to_string()
}

fn failures_of(demo: &Demo, user: &str) -> u32 {
    let show = Cmd::new(bastion_bin())
        .args(["users", "show", user, "--config"])
        .arg(demo.config_path())
        .run()
        .expect_ok();
    show.stdout
        .lines()
        .find_map(|l| l.strip_prefix("failures:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no failure count:\n{}", show.stdout))
}

/// Logs in to the bastion itself as `login` with a password and a code.
fn bastion_login(demo: &Demo, tag: &str, login: &str, password: &str, code: &str) -> Bg {
    let (script, _) = askpass_script(&demo.scratch(tag), password, code);
    ssh_askpass(&demo.ssh_config_path(), &script)
        .args(["-o", "PubkeyAuthentication=no", "-l", login, "bastion", "whoami"])
        .timeout(Duration::from_secs(120))
        .spawn()
}

#[test]
fn ad_lockout_counts_every_spelling_and_parallel_attempts_queue() {
    let (_ad, demo) = ad_demo();
    let user = demo.user().to_string();
    assert_eq!(user, "alice");
    // Four wrong passwords at once, each spelling of alice AD accepts.
    let spellings = ["alice", "Alice", "ALICE", "aLiCe"];
    let started = Instant::now();
    let attempts: Vec<Bg> = spellings
        .iter()
        .enumerate()
        .map(|(i, login)| bastion_login(&demo, &format!("wrong-{i}"), login, "Wrong-Passw0rd!1", "000000"))
        .collect();
    for a in attempts {
        let out = a.wait();
        assert!(!out.ok(), "a wrong password got in:\n{out}");
    }
    let took = started.elapsed();
    // One counter, the directory's canonical name: all four count for alice.
    assert_eq!(failures_of(&demo, "alice"), 4, "{}", demo.bastion_log());
    // The back-off (1 s after the first failure, doubling) holds although the
    // attempts ran in parallel: the last one waited 1 + 2 + 4 s.
    assert!(
        took >= Duration::from_secs(7),
        "4 parallel wrong passwords took {took:?}, less than the back-off they earned"
    );
    // The right password and code under another spelling: in as alice, and
    // the success clears alice's counter.
    let secret = demo.info.totp_secret.clone().expect("totp_secret");
    let password = demo.info.password.clone().expect("password");
    let out = bastion_login(&demo, "right", "ALICE", &password, &totp_now(&secret)).wait();
    assert!(
        out.ok() && out.stdout.contains("alice"),
        "{out}\n{}",
        demo.bastion_log()
    );
    assert_eq!(failures_of(&demo, "alice"), 0, "{}", demo.bastion_log());
}

#[test]
fn ad_password_plus_totp_through_proxyjump() {
    let (_ad, demo) = ad_demo();
    assert_eq!(demo.user(), "alice");
    let secret = demo.info.totp_secret.clone().expect("totp_secret");
    let code = totp_now(&secret);
    let password = demo.info.password.clone().expect("password");
    let (script, prompts) = askpass_script(&demo.scratch("ad-askpass"), &password, &code);
    let out = ssh_askpass(&demo.ssh_config_path(), &script)
        .args([demo.node(), "echo AD-IN"])
        .timeout(Duration::from_secs(90))
        .run();
    assert!(
        out.ok() && out.stdout.contains("AD-IN"),
        "{out}\n{}",
        demo.bastion_log()
    );
    let seen = read_lossy(&prompts);
    assert!(
        seen.contains("Password:") && seen.contains("Verification code:"),
        "{seen:?}"
    );
    assert!(
        demo.bastion_log().contains("factors=[\"password\", \"totp\"]"),
        "{}",
        demo.bastion_log()
    );
}
