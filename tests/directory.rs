//! The directory through the real `ssh` client: an OpenLDAP slapd (started
//! by `tests/peers/slapd.sh`) proves users by their LDAP password, nested
//! group membership opens a target, and the live re-check cuts a running
//! session when the user leaves the granting group, and the next Kubernetes
//! certificate over a shared connection is refused.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bastion_e2e::*;

const ALICE_PW: &str = "Alice-Passw0rd!";
const BOB_PW: &str = "Bob-Passw0rd!";
const CAROL_PW: &str = "Carol-Passw0rd!";
const ADMIN_PW: &str = "Admin-Passw0rd!";

struct Slapd {
    _dir: tempfile::TempDir,
    info: HashMap<String, String>,
}

fn start_slapd() -> Slapd {
    let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers");
    let mut last = String::new();
    for _ in 0..3 {
        let dir = tempfile::Builder::new().prefix("bastion-e2e-slapd-").tempdir().unwrap();
        let out = Cmd::new("bash")
            .arg(peers.join("slapd.sh"))
            .arg(dir.path())
            .arg(free_port().to_string())
            .arg(free_port().to_string())
            .args(["--watch", &std::process::id().to_string()])
            .timeout(Duration::from_secs(60))
            .run();
        if out.ok() {
            let info = out
                .stdout
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            return Slapd { _dir: dir, info };
        }
        last = out.to_string();
    }
    panic!("slapd did not start: {last}");
}

/// The one Samba AD DC of this machine (its ports are fixed), provisioned
/// once into the target dir and reused.
fn start_samba() -> Slapd {
    let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers");
    let dir = std::env::var_os("BASTION_SAMBA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("samba-ad"));
    let out = Cmd::new("bash")
        .arg(peers.join("samba-ad.sh"))
        .arg(&dir)
        .args(["--watch", &std::process::id().to_string()])
        .timeout(Duration::from_secs(300))
        .run()
        .expect_ok();
    let info = out
        .stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Slapd {
        _dir: tempfile::Builder::new().prefix("bastion-e2e-ad-").tempdir().unwrap(),
        info,
    }
}

/// A lab whose directory is the slapd, with one target open to `k8s-ops`.
fn ldap_lab(slapd: &Slapd, recheck: &str) -> (Lab, SshdNode) {
    directory_lab(slapd, recheck, "openldap")
}

fn directory_lab(slapd: &Slapd, recheck: &str, flavor: &str) -> (Lab, SshdNode) {
    let mut lab = Lab::new();
    let node = SshdNode::start(SshdOptions {
        user_ca: Some(lab.user_ca().to_string()),
        ..Default::default()
    });
    let login = current_login();
    lab.add_raw_target(&format!(
        "[[targets]]\nname = \"node-a\"\naddress = \"{}\"\nlogins = [\"{login}\"]\nhost_keys = [\"{}\"]\ngroups = [\"k8s-ops\"]\n",
        node.addr(),
        node.host_key_line()
    ));
    let i = &slapd.info;
    lab.section(&format!(
        "[directory]\nkind = \"ldap\"\n\n[directory.ldap]\nurl = \"{}\"\nca_file = \"{}\"\nbind_dn = \"{}\"\n\
         bind_password_file = \"{}\"\nbase_dn = \"{}\"\nflavor = \"{flavor}\"\n",
        i["url"], i["ca_file"], i["bind_dn"], i["bind_password_file"], i["base_dn"]
    ));
    lab.auth_option(&format!("recheck_interval = \"{recheck}\""));
    (lab, node)
}

/// Direct mode (`-l 'user:login@node-a' bastion`: one connection, so the
/// `-o` options below hold for it) answering the password prompt.
fn ssh_with_password(lab: &Lab, client: &LabUser, password: &str, command: &str) -> Cmd {
    let (script, _) = askpass_script(&lab.dir().join(format!("askpass-{}", client.name)), password, "");
    ssh_askpass(&client.ssh_config_path(), &script)
        .args(["-o", "PubkeyAuthentication=no"])
        .arg("-l")
        .arg(format!("{}:{}@node-a", client.name, current_login()))
        .arg("bastion")
        .arg(command)
        .timeout(Duration::from_secs(60))
}

#[test]
fn ldap_password_and_nested_group_open_the_target() {
    let slapd = start_slapd();
    let (mut lab, node) = ldap_lab(&slapd, "5m");
    let alice = lab.client("alice");
    let bob = lab.client("bob");
    let carol = lab.client("carol");
    lab.start();
    // alice ∈ sre ∈ k8s-ops: in.
    let out = ssh_with_password(&lab, &alice, ALICE_PW, "echo ALICE-IN").run();
    assert!(out.ok() && out.stdout.contains("ALICE-IN"), "{out}\n{}", lab.log());
    assert!(node.log().contains("Accepted certificate ID \"alice"), "{}", node.log());
    // Wrong password, a user in no granting group, a locked user: all out.
    let wrong = ssh_with_password(&lab, &alice, "not her password", "echo NO").run();
    assert!(!wrong.ok(), "{wrong}");
    let bob_out = ssh_with_password(&lab, &bob, BOB_PW, "echo BOB-IN").run();
    assert!(!bob_out.ok() && !bob_out.stdout.contains("BOB-IN"), "{bob_out}");
    let carol_out = ssh_with_password(&lab, &carol, CAROL_PW, "echo CAROL-IN").run();
    assert!(!carol_out.ok() && !carol_out.stdout.contains("CAROL-IN"), "{carol_out}");
    let log = lab.log();
    assert!(log.contains("none of its groups"), "{log}");
    assert!(log.contains("locked"), "{log}");
}

/// Takes alice out of sre (and so out of k8s-ops, through the nesting).
fn take_alice_out_of_sre(slapd: &Slapd) {
    let i = &slapd.info;
    let ldif = format!(
        // groupOfNames needs a member: bob takes alice's place.
        "dn: cn=sre,ou=groups,{}\nchangetype: modify\nreplace: member\nmember: uid=bob,ou=people,{}\n",
        i["base_dn"], i["base_dn"]
    );
    Cmd::new("ldapmodify")
        .args([
            "-H",
            &i["url"],
            "-x",
            "-D",
            &format!("cn=admin,{}", i["base_dn"]),
            "-w",
            ADMIN_PW,
        ])
        .env("LDAPTLS_CACERT", &i["ca_file"])
        .stdin(ldif)
        .timeout(Duration::from_secs(20))
        .run()
        .expect_ok();
}

#[test]
fn leaving_the_granting_group_cuts_a_live_session() {
    let slapd = start_slapd();
    let (mut lab, _node) = ldap_lab(&slapd, "2s");
    let alice = lab.client("alice");
    lab.start();
    let session = ssh_with_password(&lab, &alice, ALICE_PW, "echo STARTED; sleep 60; echo NOT-CUT").spawn();
    let log_path: PathBuf = lab.dir().join("bastion.log");
    assert!(
        wait_until(Duration::from_secs(30), || read_lossy(&log_path)
            .contains("logged in to node")),
        "the session did not start:\n{}",
        lab.log()
    );
    let cut_at = Instant::now();
    take_alice_out_of_sre(&slapd);
    let out = session.wait_timeout(Duration::from_secs(30));
    assert!(!out.timed_out, "the session was not cut:\n{out}");
    assert!(
        out.stdout.contains("STARTED") && !out.stdout.contains("NOT-CUT"),
        "{out}"
    );
    assert!(
        out.stderr.contains("access revoked"),
        "the user was not told why:\n{out}"
    );
    assert!(
        cut_at.elapsed() < Duration::from_secs(20),
        "cut only after {:?}",
        cut_at.elapsed()
    );
}

#[test]
fn active_directory_login_through_ssh() {
    let ad = start_samba();
    let (mut lab, node) = directory_lab(&ad, "5m", "active_directory");
    let alice = lab.client("alice");
    let bob = lab.client("bob");
    let dave = lab.client("dave");
    let erin = lab.client("erin");
    lab.start();
    // alice ∈ sre ∈ k8s-ops (nesting resolved by AD's in-chain rule): in.
    let out = ssh_with_password(&lab, &alice, "Alice-Passw0rd!1", "echo ALICE-IN").run();
    assert!(out.ok() && out.stdout.contains("ALICE-IN"), "{out}\n{}", lab.log());
    assert!(node.log().contains("Accepted certificate ID \"alice"), "{}", node.log());
    // bob is in no granting group; dave is disabled; erin has expired: all
    // refused with the same words.
    let refusals: Vec<Out> = [
        (&bob, "Bob-Passw0rd!1"),
        (&dave, "Dave-Passw0rd!1"),
        (&erin, "Erin-Passw0rd!1"),
    ]
    .into_iter()
    .map(|(c, pw)| ssh_with_password(&lab, c, pw, "echo IN").run())
    .collect();
    for r in &refusals {
        assert!(!r.ok() && !r.stdout.contains("IN"), "{r}");
        assert!(r.stderr.contains("Permission denied"), "{r}");
    }
    let log = lab.log();
    assert!(log.contains("none of its groups"), "{log}");
    assert!(log.contains("disabled"), "{log}");
    assert!(log.contains("expired"), "{log}");
}

#[test]
fn directory_down_refuses_users_but_not_the_emergency_account() {
    let slapd = start_slapd();
    let (mut lab, _node) = ldap_lab(&slapd, "5m");
    let (sos_key, sos_line) = sk_key(lab.dir(), "sos_sk");
    lab.section(&format!("[[emergency]]\nname = \"sos\"\nkeys = [\"{sos_line}\"]\n"));
    let alice = lab.client("alice");
    lab.start();
    let up = ssh_with_password(&lab, &alice, ALICE_PW, "echo UP").run();
    assert!(up.ok(), "{up}\n{}", lab.log());
    // Stop the directory.
    let pid: i32 = slapd.info["pid"].parse().unwrap();
    // SAFETY: kill(2) takes plain integers; the process is our own child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    // SAFETY: signal 0 only asks whether the process still exists.
    let gone = || unsafe { libc::kill(pid, 0) } != 0;
    assert!(wait_until(Duration::from_secs(10), gone));
    let down = ssh_with_password(&lab, &alice, ALICE_PW, "echo IN").run();
    assert!(
        !down.ok() && !down.stdout.contains("IN"),
        "a user got in with the directory down:\n{down}"
    );
    assert!(
        down.stderr.contains("directory cannot be reached"),
        "the user was not told why:\n{down}"
    );
    // The emergency account (FIDO key, no directory) still reaches the
    // node, always as break-glass: first a stated reason, then access.
    let sos_ssh = |login: String, command: &str| {
        Cmd::new("ssh")
            .arg("-F")
            .arg(alice.ssh_config_path())
            .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
            .arg("-o")
            .arg(format!("SecurityKeyProvider={}", sk_provider().display()))
            .arg("-i")
            .arg(&sos_key)
            .arg("-l")
            .arg(login)
            .args(["bastion", command])
            .timeout(Duration::from_secs(60))
            .run()
    };
    let direct = format!("sos:{}@node-a", current_login());
    let unstated = sos_ssh(direct.clone(), "echo SOS-IN");
    assert!(!unstated.stdout.contains("SOS-IN"), "{unstated}");
    assert!(unstated.stderr.contains("node-a is break-glass only"), "{unstated}");
    let grant = sos_ssh(
        "sos".into(),
        "breakglass node-a --reason 'directory down, node-a kubelet stuck' --for 15m",
    );
    assert!(
        grant.ok() && grant.stdout.contains("Break-glass grant"),
        "{grant}\n{}",
        lab.log()
    );
    let sos = sos_ssh(direct, "echo SOS-IN");
    assert!(
        sos.ok() && sos.stdout.contains("SOS-IN"),
        "the emergency account was refused:\n{sos}\n{}",
        lab.log()
    );
}

/// Over one shared ssh connection (what kubectl's exec plugin uses), a
/// group taken away in the directory counts at the next Kubernetes
/// certificate, long before the live re-check (5 min here) would see it.
#[test]
fn leaving_a_group_counts_at_the_next_kubernetes_certificate() {
    let slapd = start_slapd();
    let (mut lab, _node) = ldap_lab(&slapd, "5m");
    let keys = lab.dir().join("keys");
    Cmd::new(bastion_bin())
        .args(["kube", "ca-init", "--cluster", "prod", "--cert"])
        .arg(keys.join("kube-ca.pem"))
        .arg("--key")
        .arg(keys.join("kube-ca.key"))
        .timeout(Duration::from_secs(30))
        .run()
        .expect_ok();
    // No API server is needed to issue; its CA bundle is any certificate.
    lab.section(
        "[[clusters]]\nname = \"prod\"\nserver = \"https://127.0.0.1:6443\"\ncertificate_authority = \"keys/kube-ca.pem\"\n\
         client_ca_cert = \"keys/kube-ca.pem\"\nclient_ca_key = \"keys/kube-ca.key\"\n\n\
         [[clusters.groups]]\nad = [\"k8s-ops\"]\nkubernetes = [\"ops\"]\n",
    );
    let alice = lab.client("alice");
    lab.start();
    let (script, _) = askpass_script(&lab.dir().join("askpass-alice"), ALICE_PW, "");
    let control = lab.dir().join("cm-%C");
    let shared = |cmd: Cmd| {
        cmd.args(["-o", "ControlMaster=auto", "-o"])
            .arg(format!("ControlPath={}", control.display()))
            .args(["-o", "ControlPersist=60", "-o", "PubkeyAuthentication=no"])
    };
    // alice ∈ sre ∈ k8s-ops: a certificate for group ops.
    let first = shared(ssh_askpass(&alice.ssh_config_path(), &script))
        .args(["bastion", "kube-credential", "prod"])
        .run()
        .expect_ok();
    assert!(first.stdout.contains("\"kind\":\"ExecCredential\""), "{first}");

    take_alice_out_of_sre(&slapd);

    // The same connection (no new login: BatchMode would refuse a prompt).
    let second = shared(ssh(&alice)).args(["bastion", "kube-credential", "prod"]).run();
    assert_eq!(second.code(), Some(1), "{second}");
    assert!(
        second
            .stderr
            .contains("your groups map to no Kubernetes group on cluster prod"),
        "{second}"
    );
    assert!(second.stdout.is_empty(), "{second}");
    let _ = shared(ssh(&alice)).args(["-O", "exit", "bastion"]).run();
}
