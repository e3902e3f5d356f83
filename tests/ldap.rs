//! The LDAP directory backend against real servers: OpenLDAP slapd (a fresh
//! one per test, on free ports) and a Samba AD DC (one per test run, shared:
//! AD's ports cannot move). The servers come from `tests/peers/slapd.sh` and
//! `tests/peers/samba-ad.sh`; a watchdog started by those scripts stops them
//! when this test process exits, however it exits.
//!
//! `BASTION_SAMBA_DIR` picks where the AD DC is provisioned (default
//! `target/tmp/samba-ad`); it is kept between runs so that the next run only
//! starts it (about 3 s) instead of provisioning (about 30 s).
//!
//! One file although long: the tests share the servers started here, and the
//! Samba DC can run only once at a time.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bastion::directory::ldap::{LdapConfig, LdapDirectory};
use bastion::directory::{AccountState, DirError, DirUser, Directory};

const ALICE_SLAPD_KEY: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIMptlwWmSavNGueQGHeAIbZUhGSG/tSYns28JF2eBDWz";
const ALICE_AD_KEY: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIHnRfIIKW24QhbfgObsoD3l5kHQw74LOu3pLbRXKn+6G";

/// Login names that try to widen the user filter: none may ever find alice.
const INJECTIONS: &[&str] = &[
    "*",
    "al*",
    "alice*",
    "a\0",
    "alice\0",
    "alice)(uid=*",
    "alice)(sAMAccountName=*",
    "*)(objectClass=*",
    "alice)(|(uid=*",
    "\\2a",
    "(alice)",
];

fn peers() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn parse_info(stdout: &[u8]) -> HashMap<String, String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn config(
    url: &str,
    starttls: bool,
    ca_file: &str,
    bind_dn: &str,
    password_file: &str,
    base_dn: &str,
    flavor: &str,
    ssh_key_attribute: &str,
    timeout: &str,
) -> LdapConfig {
    serde_json::from_value(serde_json::json!({
        "url": url,
        "starttls": starttls,
        "ca_file": ca_file,
        "bind_dn": bind_dn,
        "bind_password_file": password_file,
        "base_dn": base_dn,
        "flavor": flavor,
        "ssh_key_attribute": ssh_key_attribute,
        "connect_timeout": timeout,
        "operation_timeout": timeout,
        "pool_size": 2,
    }))
    .expect("LdapConfig from JSON")
}

fn err_name(r: &Result<DirUser, DirError>) -> String {
    match r {
        Ok(u) => format!("Ok({})", u.name),
        Err(DirError::Unavailable(m)) => format!("Unavailable({m})"),
        Err(e) => format!("{e:?}"),
    }
}

fn assert_err(r: Result<DirUser, DirError>, want: &str, context: &str) {
    let got = err_name(&r);
    assert_eq!(got, want, "{context}");
}

fn has_key(u: &DirUser, blob: &str) -> bool {
    u.ssh_keys
        .iter()
        .any(|k| k.to_openssh().map(|s| s.contains(blob)).unwrap_or(false))
}

// ---------------------------------------------------------------------------
// slapd: one per test
// ---------------------------------------------------------------------------

struct Slapd {
    dir: tempfile::TempDir,
    ldap_port: u16,
    ldaps_port: u16,
    info: HashMap<String, String>,
}

impl Slapd {
    fn start() -> Slapd {
        let mut last = String::new();
        for _ in 0..3 {
            let dir = tempfile::Builder::new().prefix("bastion-slapd-").tempdir().unwrap();
            let (ldap_port, ldaps_port) = (free_port(), free_port());
            let t = Instant::now();
            match Self::run_script(dir.path(), ldap_port, ldaps_port) {
                Ok(info) => {
                    eprintln!("slapd on {ldaps_port} ready and seeded in {:?}", t.elapsed());
                    return Slapd {
                        dir,
                        ldap_port,
                        ldaps_port,
                        info,
                    };
                }
                // Most likely a port taken in between: try other ports.
                Err(e) => last = e,
            }
        }
        panic!("slapd did not start: {last}");
    }

    fn run_script(dir: &Path, ldap_port: u16, ldaps_port: u16) -> Result<HashMap<String, String>, String> {
        let out = Command::new("bash")
            .arg(peers().join("slapd.sh"))
            .arg(dir)
            .arg(ldap_port.to_string())
            .arg(ldaps_port.to_string())
            .args(["--watch", &std::process::id().to_string(), "--cleanup"])
            .output()
            .map_err(|e| format!("running slapd.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "slapd.sh failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(parse_info(&out.stdout))
    }

    /// Stops and starts it again on the same ports, freshly seeded.
    fn restart(&self) {
        Self::run_script(self.dir.path(), self.ldap_port, self.ldaps_port).expect("slapd restart");
    }

    fn stop(&self) {
        let _ = Command::new("bash")
            .arg(peers().join("slapd.sh"))
            .arg(self.dir.path())
            .arg("--stop")
            .status();
    }

    fn url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.ldaps_port)
    }

    fn config_for(&self, url: &str, starttls: bool, timeout: &str) -> LdapConfig {
        config(
            url,
            starttls,
            &self.info["ca_file"],
            &self.info["bind_dn"],
            &self.info["bind_password_file"],
            &self.info["base_dn"],
            "openldap",
            "sshPublicKey",
            timeout,
        )
    }

    fn directory(&self) -> LdapDirectory {
        LdapDirectory::new(self.config_for(&self.url(), false, "5s"), self.dir.path()).expect("LdapDirectory")
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

const ALICE_PW: &str = "Alice-Passw0rd!";
const BOB_PW: &str = "Bob-Passw0rd!";
const CAROL_PW: &str = "Carol-Passw0rd!";

#[tokio::test]
async fn slapd_alice_password_nested_groups_and_key() {
    let s = Slapd::start();
    let d = s.directory();
    let t = Instant::now();
    let u = d
        .verify_password("alice", ALICE_PW)
        .await
        .expect("alice's password verifies");
    eprintln!("verify_password(alice) took {:?}", t.elapsed());
    assert_eq!(u.name, "alice");
    assert_eq!(u.dn, "uid=alice,ou=people,dc=corp,dc=test");
    assert_eq!(u.state, AccountState::Active);
    assert_eq!(
        u.groups,
        vec!["k8s-ops".to_string(), "sre".to_string()],
        "nested groups by CN"
    );
    assert!(u.in_group("k8s-ops") && u.in_group("sre"));
    assert!(
        u.in_group("cn=k8s-ops,ou=groups,dc=corp,dc=test"),
        "by DN: {:?}",
        u.group_dns
    );
    assert!(
        u.in_group("CN=K8S-OPS,OU=Groups,DC=corp,DC=test"),
        "DNs compare case-insensitively"
    );
    // One real key; the garbage value next to it is skipped.
    assert_eq!(u.ssh_keys.len(), 1, "{:?}", u.ssh_keys);
    assert!(has_key(&u, ALICE_SLAPD_KEY));
    // lookup answers the same without a password.
    let l = d.lookup("alice").await.expect("lookup");
    assert_eq!((l.dn, l.groups, l.state), (u.dn, u.groups, u.state));
}

#[tokio::test]
async fn slapd_bad_password_unknown_user_empty_password() {
    let s = Slapd::start();
    let d = s.directory();
    assert_err(
        d.verify_password("alice", "wrong password").await,
        "BadPassword",
        "wrong password",
    );
    assert_err(
        d.verify_password("alice", BOB_PW).await,
        "BadPassword",
        "another user's password",
    );
    // The unauthenticated-bind trap: an empty password never binds.
    assert_err(d.verify_password("alice", "").await, "BadPassword", "empty password");
    assert_err(d.verify_password("nobody", ALICE_PW).await, "NotFound", "unknown user");
    assert_err(d.lookup("nobody").await, "NotFound", "unknown user lookup");
    assert_err(d.lookup("").await, "NotFound", "empty user");
    // alice still gets in after all that (one wrong password is below pwdMaxFailure).
    d.verify_password("alice", ALICE_PW).await.expect("alice");
}

#[tokio::test]
async fn slapd_bob_has_no_groups() {
    let s = Slapd::start();
    let u = s.directory().verify_password("bob", BOB_PW).await.expect("bob");
    assert_eq!(u.state, AccountState::Active);
    assert!(u.groups.is_empty() && u.group_dns.is_empty(), "{:?}", u.groups);
    assert!(u.ssh_keys.is_empty());
}

#[tokio::test]
async fn slapd_ppolicy_locked_account() {
    let s = Slapd::start();
    let d = s.directory();
    // carol was locked by three wrong passwords (pwdAccountLockedTime set).
    let l = d.lookup("carol").await.expect("lookup carol");
    assert_eq!(l.state, AccountState::Locked);
    assert_err(
        d.verify_password("carol", CAROL_PW).await,
        "AccountState(Locked)",
        "right password, locked",
    );
    assert_err(
        d.verify_password("carol", "wrong").await,
        "AccountState(Locked)",
        "wrong password, locked",
    );
}

#[tokio::test]
async fn slapd_group_cycle_terminates() {
    let s = Slapd::start();
    let u = tokio::time::timeout(Duration::from_secs(10), s.directory().lookup("grace"))
        .await
        .expect("the group walk ends despite the cycle")
        .expect("grace");
    assert_eq!(u.groups, vec!["cyc-a".to_string(), "cyc-b".to_string()]);
    assert_eq!(u.group_dns.len(), 2);
}

#[tokio::test]
async fn slapd_filter_injection_finds_nothing() {
    let s = Slapd::start();
    let d = s.directory();
    for name in INJECTIONS {
        assert_err(d.lookup(name).await, "NotFound", &format!("lookup {name:?}"));
        assert_err(
            d.verify_password(name, ALICE_PW).await,
            "NotFound",
            &format!("verify_password {name:?}"),
        );
    }
    d.lookup("alice").await.expect("the plain name still works");
}

#[tokio::test]
async fn slapd_starttls() {
    let s = Slapd::start();
    let url = format!("ldap://127.0.0.1:{}", s.ldap_port);
    let d = LdapDirectory::new(s.config_for(&url, true, "5s"), s.dir.path()).expect("starttls config");
    let u = d.verify_password("alice", ALICE_PW).await.expect("alice over StartTLS");
    assert!(u.in_group("k8s-ops"));
    // The same port without StartTLS is refused before anything is sent.
    let e = LdapDirectory::new(s.config_for(&url, false, "5s"), s.dir.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("in clear"), "{e}");
}

#[tokio::test]
async fn plain_ldap_without_starttls_is_refused_at_construction() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("svc.pw"), "x").unwrap();
    let cfg = config(
        "ldap://127.0.0.1:389",
        false,
        "ca.pem",
        "cn=svc",
        "svc.pw",
        "dc=corp,dc=test",
        "openldap",
        "sshPublicKey",
        "1s",
    );
    let e = LdapDirectory::new(cfg, dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("ldap://") && e.contains("in clear") && e.contains("starttls"),
        "{e}"
    );
}

#[tokio::test]
async fn slapd_tls_is_verified() {
    let s = Slapd::start();
    // A CA that did not sign the server's certificate.
    let other = tempfile::tempdir().unwrap();
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=other CA",
        ])
        .arg("-keyout")
        .arg(other.path().join("k.pem"))
        .arg("-out")
        .arg(other.path().join("ca.pem"))
        .output()
        .unwrap();
    assert!(st.status.success());
    let mut cfg = s.config_for(&s.url(), false, "3s");
    cfg.ca_file = other.path().join("ca.pem");
    let d = LdapDirectory::new(cfg, s.dir.path()).unwrap();
    let r = d.lookup("alice").await;
    let msg = err_name(&r);
    assert!(msg.starts_with("Unavailable(") && msg.contains(&s.url()), "{msg}");
    assert!(msg.to_lowercase().contains("certificate"), "{msg}");

    // The right CA, but an address the certificate does not name (127.0.0.2).
    let url2 = format!("ldaps://127.0.0.2:{}", s.ldaps_port);
    let d = LdapDirectory::new(s.config_for(&url2, false, "3s"), s.dir.path()).unwrap();
    let msg = err_name(&d.verify_password("alice", ALICE_PW).await);
    assert!(
        msg.starts_with("Unavailable(") && msg.to_lowercase().contains("certificate"),
        "{msg}"
    );

    // `localhost` is in the certificate: a DNS name verifies as well as the IP.
    let url3 = format!("ldaps://localhost:{}", s.ldaps_port);
    let d = LdapDirectory::new(s.config_for(&url3, false, "3s"), s.dir.path()).unwrap();
    d.lookup("alice").await.expect("localhost is a SAN");
}

#[tokio::test]
async fn slapd_wrong_service_password_is_unavailable() {
    let s = Slapd::start();
    let pw = s.dir.path().join("wrong.pw");
    std::fs::write(&pw, "not the password\n").unwrap();
    let mut cfg = s.config_for(&s.url(), false, "3s");
    cfg.bind_password_file = pw;
    let d = LdapDirectory::new(cfg, s.dir.path()).unwrap();
    let msg = err_name(&d.verify_password("alice", ALICE_PW).await);
    assert!(msg.starts_with("Unavailable(") && msg.contains("service bind"), "{msg}");
    assert!(!msg.contains("not the password"), "the password never shows: {msg}");
}

#[tokio::test]
async fn slapd_stopped_is_unavailable_within_the_timeout() {
    let s = Slapd::start();
    let d = LdapDirectory::new(s.config_for(&s.url(), false, "2s"), s.dir.path()).unwrap();
    d.lookup("alice").await.expect("up");
    s.stop();
    for what in ["lookup", "verify_password"] {
        let t = Instant::now();
        let r = if what == "lookup" {
            d.lookup("alice").await
        } else {
            d.verify_password("alice", ALICE_PW).await
        };
        let took = t.elapsed();
        let msg = err_name(&r);
        eprintln!("{what} with slapd stopped: {took:?}: {msg}");
        assert!(
            msg.starts_with("Unavailable(") && msg.contains(&s.url()),
            "{what}: {msg}"
        );
        assert!(took < Duration::from_secs(5), "{what} took {took:?}");
    }
}

#[tokio::test]
async fn unresponsive_server_times_out() {
    // Accepts TCP (the kernel does) but never answers the TLS handshake.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let s = Slapd::start(); // only for its CA and password files
    let url = format!("ldaps://127.0.0.1:{port}");
    let d = LdapDirectory::new(s.config_for(&url, false, "1s"), s.dir.path()).unwrap();
    let t = Instant::now();
    let msg = err_name(&d.lookup("alice").await);
    let took = t.elapsed();
    assert!(
        msg.starts_with("Unavailable(") && msg.contains("timed out") && msg.contains(&url),
        "{msg}"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "took {took:?}"
    );
    drop(listener);
}

#[tokio::test]
async fn slapd_restart_pool_reconnects() {
    let s = Slapd::start();
    let d = s.directory();
    d.lookup("alice").await.expect("before restart");
    // The pooled connections now point at a process that is gone.
    s.restart();
    let u = d
        .lookup("alice")
        .await
        .expect("after restart, through a new connection");
    assert!(u.in_group("k8s-ops"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slapd_parallel_logins_share_the_pool() {
    let s = Slapd::start();
    let d = std::sync::Arc::new(s.directory()); // pool_size 2
    let t = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..24 {
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                d.verify_password("alice", ALICE_PW).await.map(|u| u.groups.len())
            } else {
                d.lookup("bob").await.map(|u| u.groups.len())
            }
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let n = t.await.unwrap().expect("parallel call");
        assert_eq!(n, if i % 2 == 0 { 2 } else { 0 });
    }
    eprintln!("24 parallel calls took {:?}", t.elapsed());
}

// ---------------------------------------------------------------------------
// Samba AD DC: one per test run, shared
// ---------------------------------------------------------------------------

struct Ad {
    dir: PathBuf,
    info: HashMap<String, String>,
}

static AD: OnceLock<Result<Ad, String>> = OnceLock::new();

fn ad() -> &'static Ad {
    AD.get_or_init(|| {
        let dir = std::env::var_os("BASTION_SAMBA_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("samba-ad"));
        let t = Instant::now();
        let out = Command::new("bash")
            .arg(peers().join("samba-ad.sh"))
            .arg(&dir)
            .args(["--watch", &std::process::id().to_string()])
            .output()
            .map_err(|e| format!("running samba-ad.sh: {e}"))?;
        eprintln!("{}", String::from_utf8_lossy(&out.stderr).trim_end());
        if !out.status.success() {
            return Err(format!("samba-ad.sh failed ({})", out.status));
        }
        eprintln!("Samba AD DC ready in {:?}", t.elapsed());
        Ok(Ad {
            dir,
            info: parse_info(&out.stdout),
        })
    })
    .as_ref()
    .expect("the Samba AD DC (tests/peers/samba-ad.sh) must start")
}

impl Ad {
    fn config_for(&self, url: &str, starttls: bool) -> LdapConfig {
        config(
            url,
            starttls,
            &self.info["ca_file"],
            &self.info["bind_dn"],
            &self.info["bind_password_file"],
            &self.info["base_dn"],
            "active_directory",
            "altSecurityIdentities",
            "10s",
        )
    }

    fn directory(&self) -> LdapDirectory {
        LdapDirectory::new(self.config_for(&self.info["url"], false), &self.dir).expect("LdapDirectory")
    }
}

const AD_ALICE_PW: &str = "Alice-Passw0rd!1";
const AD_BOB_PW: &str = "Bob-Passw0rd!1";

#[tokio::test]
async fn ad_alice_password_nested_groups_and_key() {
    let d = ad().directory();
    let t = Instant::now();
    let u = d
        .verify_password("alice", AD_ALICE_PW)
        .await
        .expect("alice's password verifies");
    eprintln!("AD verify_password(alice) took {:?}", t.elapsed());
    assert_eq!(u.name, "alice");
    assert_eq!(u.dn, "CN=alice,CN=Users,DC=corp,DC=test");
    assert_eq!(u.state, AccountState::Active);
    assert!(u.groups.contains(&"sre".to_string()), "{:?}", u.groups);
    assert!(
        u.groups.contains(&"k8s-ops".to_string()),
        "nested through sre: {:?}",
        u.groups
    );
    assert!(
        u.group_dns.iter().any(|g| g == "CN=k8s-ops,CN=Users,DC=corp,DC=test"),
        "{:?}",
        u.group_dns
    );
    assert!(u.in_group("cn=k8s-ops,cn=users,dc=corp,dc=test"));
    assert_eq!(u.ssh_keys.len(), 1, "SSHKey: value of altSecurityIdentities");
    assert!(has_key(&u, ALICE_AD_KEY));
}

#[tokio::test]
async fn ad_login_by_upn_gives_the_canonical_name() {
    let d = ad().directory();
    let u = d
        .verify_password("alice@corp.test", AD_ALICE_PW)
        .await
        .expect("UPN login");
    assert_eq!(u.name, "alice");
    assert!(u.in_group("k8s-ops"));
    // AD compares names case-insensitively; the directory's spelling comes back.
    assert_eq!(d.lookup("ALICE").await.expect("upper case").name, "alice");
}

#[tokio::test]
async fn ad_bad_password_unknown_user_empty_password() {
    let d = ad().directory();
    assert_err(
        d.verify_password("bob", "Wrong-Passw0rd!1").await,
        "BadPassword",
        "wrong password",
    );
    assert_err(d.verify_password("bob", "").await, "BadPassword", "empty password");
    assert_err(d.verify_password("nobody", AD_BOB_PW).await, "NotFound", "unknown user");
    assert_err(d.lookup("nobody").await, "NotFound", "unknown lookup");
    let u = d.verify_password("bob", AD_BOB_PW).await.expect("bob");
    assert!(!u.in_group("sre") && !u.in_group("k8s-ops"), "{:?}", u.groups);
}

#[tokio::test]
async fn ad_disabled_account() {
    let d = ad().directory();
    assert_eq!(d.lookup("dave").await.expect("dave").state, AccountState::Disabled);
    assert_err(
        d.verify_password("dave", "Dave-Passw0rd!1").await,
        "AccountState(Disabled)",
        "dave",
    );
}

#[tokio::test]
async fn ad_expired_account() {
    let d = ad().directory();
    assert_eq!(d.lookup("erin").await.expect("erin").state, AccountState::Expired);
    assert_err(
        d.verify_password("erin", "Erin-Passw0rd!1").await,
        "AccountState(Expired)",
        "erin",
    );
}

#[tokio::test]
async fn ad_must_change_password() {
    let d = ad().directory();
    assert_eq!(
        d.lookup("frank").await.expect("frank").state,
        AccountState::PasswordExpired
    );
    assert_err(
        d.verify_password("frank", "Frank-Passw0rd!1").await,
        "AccountState(PasswordExpired)",
        "frank",
    );
}

#[tokio::test]
async fn ad_filter_injection_finds_nothing() {
    let d = ad().directory();
    for name in INJECTIONS {
        assert_err(d.lookup(name).await, "NotFound", &format!("lookup {name:?}"));
        assert_err(
            d.verify_password(name, AD_ALICE_PW).await,
            "NotFound",
            &format!("verify_password {name:?}"),
        );
    }
}

#[tokio::test]
async fn ad_starttls_and_dns_name() {
    let a = ad();
    let d = LdapDirectory::new(a.config_for("ldap://127.0.0.1:389", true), &a.dir).expect("starttls");
    let u = d
        .verify_password("alice", AD_ALICE_PW)
        .await
        .expect("alice over StartTLS");
    assert!(u.in_group("k8s-ops"));
    let d = LdapDirectory::new(a.config_for("ldaps://localhost:636", false), &a.dir).expect("localhost");
    d.lookup("alice")
        .await
        .expect("localhost is a SAN of the DC's certificate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ad_parallel_logins() {
    let d = std::sync::Arc::new(ad().directory());
    let t = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            match i % 4 {
                0 => d
                    .verify_password("alice", AD_ALICE_PW)
                    .await
                    .map(|u| u.in_group("k8s-ops")),
                1 => d.lookup("bob").await.map(|u| u.in_group("k8s-ops")),
                2 => d.verify_password("dave", "Dave-Passw0rd!1").await.map(|_| true),
                _ => d.lookup("alice@corp.test").await.map(|u| u.in_group("k8s-ops")),
            }
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let r = t.await.unwrap();
        match i % 4 {
            0 | 3 => assert!(r.expect("alice"), "alice in k8s-ops"),
            1 => assert!(!r.expect("bob")),
            _ => assert!(
                matches!(r, Err(DirError::AccountState(AccountState::Disabled))),
                "{r:?}"
            ),
        }
    }
    eprintln!("16 parallel AD calls took {:?}", t.elapsed());
}
