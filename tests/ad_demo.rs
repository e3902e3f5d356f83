//! `bastion demo --directory ad` as a newcomer uses it: the AD user logs in
//! through ProxyJump with her Active Directory password and a TOTP code
//! (from `oathtool`), and reaches the node.

use std::path::Path;
use std::time::Duration;

use bastion_e2e::*;

#[test]
fn ad_password_plus_totp_through_proxyjump() {
    // Share the AD provisioned by the other tests (its ports are fixed).
    // SAFETY: set before any thread of this test binary starts a child.
    unsafe {
        std::env::set_var(
            "BASTION_SAMBA_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("samba-ad"),
        )
    };
    let demo = Demo::start_with(&["--directory", "ad"]);
    assert_eq!(demo.user(), "alice");
    let secret = demo.info.totp_secret.clone().expect("totp_secret");
    let code = Cmd::new("oathtool")
        .args(["--totp", "-b", &secret])
        .run()
        .expect_ok()
        .stdout
        .trim()
        .to_string();
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
