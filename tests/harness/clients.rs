//! The stock OpenSSH clients (`ssh`, `scp`, `sftp`, `rsync`) with the test's
//! ssh_config, askpass scripts and shared connections.

use crate::*;

/// Anything that has an ssh_config file usable with `ssh -F`.
pub trait SshSetup {
    fn ssh_config_path(&self) -> PathBuf;
}

pub(crate) fn client_opts(cfg: &Path) -> Vec<String> {
    vec![
        "-F".into(),
        cfg.display().to_string(),
        "-o".into(),
        "BatchMode=yes".into(),
        "-o".into(),
        "ConnectTimeout=10".into(),
    ]
}

/// `ssh -F <ssh_config> -o BatchMode=yes -o ConnectTimeout=10`; add the host and command.
pub fn ssh(setup: &impl SshSetup) -> Cmd {
    Cmd::new("ssh").args(client_opts(&setup.ssh_config_path()))
}

/// A shared connection (`ssh -M -N`, OpenSSH's ControlMaster) to `host`,
/// with its control socket at `control`, once it is up; it ends when the
/// returned process is dropped. It runs in the foreground: a ControlPersist
/// master would lose its ProxyJump helper when the first command's process
/// group ends. Commands use it through [`ssh_shared`].
pub fn master_connection(setup: &impl SshSetup, host: &str, control: &Path) -> Bg {
    let master = ssh(setup)
        .args(["-M", "-N", "-o"])
        .arg(format!("ControlPath={}", control.display()))
        .arg(host)
        .timeout(Duration::from_secs(300))
        .spawn();
    assert!(
        wait_until(Duration::from_secs(30), || control.exists()),
        "the master connection to {host} did not come up"
    );
    master
}

/// `ssh` through the shared connection whose control socket is `control`
/// (see [`master_connection`]); add the host and command.
pub fn ssh_shared(setup: &impl SshSetup, control: &Path) -> Cmd {
    ssh(setup)
        .args(["-o", "ControlMaster=no", "-o"])
        .arg(format!("ControlPath={}", control.display()))
}

/// `scp -F <ssh_config> -o BatchMode=yes -o ConnectTimeout=10`.
pub fn scp(setup: &impl SshSetup) -> Cmd {
    Cmd::new("scp")
        .args(client_opts(&setup.ssh_config_path()))
        .timeout(Duration::from_secs(300))
}

/// `sftp -F <ssh_config> -o BatchMode=yes -o ConnectTimeout=10 -b <batch> <host>`.
pub fn sftp_batch(setup: &impl SshSetup, batch: &Path, host: &str) -> Cmd {
    Cmd::new("sftp")
        .args(client_opts(&setup.ssh_config_path()))
        .arg("-b")
        .arg(batch)
        .arg(host)
        .timeout(Duration::from_secs(120))
}

/// `rsync -e "ssh -F <ssh_config> -o BatchMode=yes -o ConnectTimeout=10"`; add options and paths.
pub fn rsync(setup: &impl SshSetup) -> Cmd {
    let e = format!("ssh {}", client_opts(&setup.ssh_config_path()).join(" "));
    Cmd::new("rsync").arg("-e").arg(e).timeout(Duration::from_secs(120))
}

/// OpenSSH's software FIDO authenticator (`sk-dummy.so`), put in place by
/// `scripts/install-test-deps` (or named by `BASTION_SK_DUMMY`).
pub fn sk_provider() -> PathBuf {
    let p = std::env::var_os("BASTION_SK_DUMMY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/local/lib/bastion-tests/sk-dummy.so"));
    assert!(p.exists(), "{} is missing: run scripts/install-test-deps", p.display());
    p
}

/// A FIDO key made by the software authenticator; returns (private key path, public line).
pub fn sk_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    Cmd::new("ssh-keygen")
        .args(["-q", "-t", "ed25519-sk", "-N", "", "-w"])
        .arg(sk_provider())
        .arg("-f")
        .arg(&key)
        .env("SSH_SK_PROVIDER", sk_provider())
        .timeout(Duration::from_secs(30))
        .run()
        .expect_ok();
    let line = fs::read_to_string(key.with_extension("pub")).unwrap();
    let line = line.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    (key, line)
}

/// Writes an `SSH_ASKPASS` script into `dir` that answers prompts containing
/// "erification" (`Verification code:`) with `code` and any other with
/// `password`, logging each prompt. Returns (script, prompt log).
pub fn askpass_script(dir: &Path, password: &str, code: &str) -> (PathBuf, PathBuf) {
    fs::create_dir_all(dir).unwrap();
    let prompts = dir.join("prompts");
    let script = dir.join("askpass.sh");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$1\" >> {p}\ncase \"$1\" in\n  *erification*) printf '%s\\n' {c} ;;\n  *) printf '%s\\n' {pw} ;;\nesac\n",
            p = sh_quote(&prompts.display().to_string()),
            c = sh_quote(code),
            pw = sh_quote(password),
        ),
    )
    .unwrap();
    let mut perm = fs::metadata(&script).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    fs::set_permissions(&script, perm).unwrap();
    (script, prompts)
}

/// A started lab with one sshd node `node-a` (trusting the lab's user CA,
/// the current login allowed), the given `server` options, and user alice.
pub fn lab_with_node(server_options: &[&str]) -> (Lab, SshdNode, LabUser) {
    let mut lab = Lab::new();
    let node = SshdNode::start(SshdOptions {
        user_ca: Some(lab.user_ca().to_string()),
        ..Default::default()
    });
    let login = current_login();
    lab.add_target("node-a", &node.addr(), &[&login], &[node.host_key_line()]);
    for o in server_options {
        lab.server_option(o);
    }
    let alice = lab.add_user("alice");
    lab.start();
    (lab, node, alice)
}

/// `ssh -F <config>` that answers prompts through `script` (BatchMode off,
/// one prompt per method); add options, host and command.
pub fn ssh_askpass(config: &Path, script: &Path) -> Cmd {
    Cmd::new("ssh")
        .arg("-F")
        .arg(config)
        .args([
            "-o",
            "BatchMode=no",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "NumberOfPasswordPrompts=1",
        ])
        .env("SSH_ASKPASS", script)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0")
        .timeout(Duration::from_secs(60))
}

/// Runs `ssh-keygen` to make an ed25519 key pair; returns the public key line.
pub fn keygen(path: &Path, comment: &str) -> String {
    Cmd::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .timeout(Duration::from_secs(20))
        .run()
        .expect_ok();
    let pubfile = PathBuf::from(format!("{}.pub", path.display()));
    fs::read_to_string(&pubfile).unwrap().trim().to_string()
}

/// The first two fields of a public key line ("ssh-ed25519 AAAA…"), without the comment.
pub fn key_without_comment(line: &str) -> String {
    line.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// The TOTP code for `secret` (base32) at Unix time `at`, from `oathtool`
/// (not from our own code).
pub fn oathtool(secret: &str, at: u64) -> String {
    Cmd::new("oathtool")
        .args(["--totp", "-b", &format!("--now=@{at}"), secret])
        .timeout(Duration::from_secs(10))
        .run()
        .expect_ok()
        .stdout
        .trim()
        .to_string()
}
