//! FIDO security keys through the real `ssh`, with OpenSSH's own software
//! authenticator (`sk-dummy.so` from Debian's openssh-tests) making real
//! `sk-ssh-ed25519@openssh.com` signatures: a FIDO key with the password
//! lets a user in, the FIDO key alone does not, and an emergency account
//! enters with its FIDO key alone.

use std::path::Path;
use std::time::Duration;

use bastion_e2e::*;

fn hash(password: &str) -> String {
    Cmd::new(bastion_bin())
        .args(["users", "hash-password"])
        .stdin(format!("{password}\n"))
        .run()
        .expect_ok()
        .stdout
        .trim()
        .to_string()
}

/// `ssh -l USER bastion whoami` with the FIDO key, answering prompts with `password`.
fn login(lab: &Lab, client: &LabUser, user: &str, key: &Path, password: Option<&str>) -> Out {
    let mut cmd = Cmd::new("ssh")
        .arg("-F")
        .arg(client.ssh_config_path())
        .args([
            "-o",
            "ConnectTimeout=10",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "NumberOfPasswordPrompts=1",
        ])
        .arg("-o")
        .arg(format!("SecurityKeyProvider={}", sk_provider().display()))
        .arg("-i")
        .arg(key)
        .timeout(Duration::from_secs(60));
    match password {
        Some(pw) => {
            let (script, _) = askpass_script(&lab.dir().join(format!("askpass-{user}")), pw, "");
            cmd = cmd
                .args(["-o", "BatchMode=no"])
                .env("SSH_ASKPASS", &script)
                .env("SSH_ASKPASS_REQUIRE", "force")
                .env("DISPLAY", ":0");
        }
        None => cmd = cmd.args(["-o", "BatchMode=yes"]),
    }
    cmd.args(["-l", user, "bastion", "whoami"]).run()
}

#[test]
fn fido_key_with_password_and_emergency_fido_alone() {
    let mut lab = Lab::new();
    lab.auth_methods(r#"[["password", "sk"]]"#);
    let (alice_key, alice_line) = sk_key(lab.dir(), "alice_sk");
    let (sos_key, sos_line) = sk_key(lab.dir(), "sos_sk");
    let password = "Fido-And-Passw0rd";
    lab.section(&format!(
        "[[users]]\nname = \"alice\"\npassword_hash = \"{}\"\nkeys = [\"{alice_line}\"]\ngroups = [\"k8s-ops\"]\n\n\
         [[emergency]]\nname = \"sos\"\nkeys = [\"{sos_line}\"]\n",
        hash(password)
    ));
    let client = lab.client("fido-client");
    lab.start();

    let both = login(&lab, &client, "alice", &alice_key, Some(password));
    assert!(both.ok(), "FIDO key + password refused:\n{both}\n{}", lab.log());
    assert!(both.stdout.contains("sk") && both.stdout.contains("password"), "{both}");

    let key_alone = login(&lab, &client, "alice", &alice_key, None);
    assert!(!key_alone.ok(), "a FIDO key alone let alice in:\n{key_alone}");
    let wrong_pw = login(&lab, &client, "alice", &alice_key, Some("not the password"));
    assert!(!wrong_pw.ok(), "{wrong_pw}");

    let sos = login(&lab, &client, "sos", &sos_key, None);
    assert!(sos.ok(), "the emergency account was refused:\n{sos}\n{}", lab.log());
    assert!(sos.stdout.contains("emergency"), "{sos}");
    // Another FIDO key does not open the emergency account.
    let stranger = login(&lab, &client, "sos", &alice_key, None);
    assert!(!stranger.ok(), "{stranger}");
}

#[test]
fn emergency_accounts_take_fido_keys_only() {
    let lab = Lab::new();
    let plain = keygen(&lab.dir().join("plain"), "plain");
    let plain = plain.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    let cfg = lab.dir().join("emergency.toml");
    let text = format!(
        "{}\n[[emergency]]\nname = \"sos\"\nkeys = [\"{plain}\"]\n",
        lab.config_text()
    );
    std::fs::write(&cfg, text).unwrap();
    let out = Cmd::new(bastion_bin()).args(["config", "check"]).arg(&cfg).run();
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(
        out.stderr.contains("emergency[0].keys[0]") && out.stderr.contains("FIDO keys only"),
        "{out}"
    );
}
