//! The kubeconfig issuer end to end, with stock `kubectl` and stock OpenSSH
//! against a TLS endpoint (`peers/kube-endpoint.py`) that, like
//! kube-apiserver's `--client-ca-file` authentication, accepts only client
//! certificates signed by the cluster's client CA and reports the subject
//! it saw: embedded certificates, the exec plugin through `ssh` (key + TOTP
//! asked once: one ControlMaster connection serves every call; called again
//! once the certificate expired), refusals (no mapped group, TTL above the maximum), issuing while
//! the API server is down, break-glass
//! groups, a certificate from another CA refused by the endpoint, and the
//! operator's issued list.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bastion_e2e::*;

/// A self-signed P-256 certificate made by `openssl req`.
fn self_signed(key: &Path, cert: &Path, subject: &str, extra: &[&str]) {
    Cmd::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert)
        .args(["-days", "1", "-subj", subject])
        .args(extra)
        .timeout(Duration::from_secs(30))
        .run()
        .expect_ok();
}

/// A running stand-in API server and what it logged.
struct Endpoint {
    proc: Bg,
    port: u16,
    log: PathBuf,
    /// Its certificate, which is also its CA bundle (self-signed).
    cert: PathBuf,
}

impl Endpoint {
    fn start(dir: &Path, client_ca: &Path) -> Endpoint {
        let cert = dir.join("apiserver.pem");
        let key = dir.join("apiserver.key");
        self_signed(
            &key,
            &cert,
            "/CN=kube-apiserver-test",
            &["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        );
        let port_file = dir.join("apiserver.port");
        let log = dir.join("apiserver.jsonl");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/kube-endpoint.py");
        let proc = Cmd::new("python3")
            .arg(script)
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key)
            .arg("--client-ca")
            .arg(client_ca)
            .arg("--port-file")
            .arg(&port_file)
            .arg("--log")
            .arg(&log)
            .spawn();
        assert!(
            wait_until(Duration::from_secs(20), || port_file.exists()),
            "the test endpoint did not start:\n{}",
            proc.stderr()
        );
        let port = fs::read_to_string(&port_file).unwrap().trim().parse().unwrap();
        Endpoint { proc, port, log, cert }
    }

    /// Stops it, as an API server that is down.
    fn stop(&mut self) {
        self.proc.signal(libc::SIGTERM);
        let port = self.port;
        assert!(
            wait_until(Duration::from_secs(20), || TcpStream::connect(("127.0.0.1", port))
                .is_err()),
            "the endpoint still answers"
        );
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Every request it served, in order.
    fn requests(&self) -> Vec<serde_json::Value> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn version_requests(&self) -> Vec<serde_json::Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["path"] == "/version")
            .collect()
    }
}

struct KubeLab {
    lab: Lab,
    endpoint: Endpoint,
    /// In k8s-devs and sre.
    alice: LabUser,
    /// In finance: no mapping.
    bob: LabUser,
}

/// Alice's TOTP secret when the lab asks for key + TOTP.
struct Mfa {
    secret: String,
}

fn kube_lab() -> KubeLab {
    kube_lab_with(false).0
}

/// With `mfa`, logins take a key and a TOTP code (alice's seed is set in the
/// state store, as `enroll totp` would).
fn kube_lab_with(mfa: bool) -> (KubeLab, Option<Mfa>) {
    let mut lab = Lab::new();
    if mfa {
        lab.auth_methods(r#"[["publickey", "totp"]]"#);
    }
    let keys = lab.dir().join("keys");
    // The operator's way to make a dedicated client CA.
    let out = Cmd::new(bastion_bin())
        .args(["kube", "ca-init", "--cluster", "prod", "--cert"])
        .arg(keys.join("prod-client-ca.pem"))
        .arg("--key")
        .arg(keys.join("prod-client-ca.key"))
        .timeout(Duration::from_secs(30))
        .run()
        .expect_ok();
    assert!(out.stdout.contains("--client-ca-file"), "{out}");
    let endpoint = Endpoint::start(lab.dir(), &keys.join("prod-client-ca.pem"));
    let alice = lab.add_user_in("alice", &["k8s-devs", "sre"]);
    let bob = lab.add_user_in("bob", &["finance"]);
    let cluster = |name: &str, default_ttl: &str, max_ttl: &str| {
        format!(
            "[[clusters]]\nname = \"{name}\"\nserver = \"{}\"\ncertificate_authority = \"{}\"\n\
             client_ca_cert = \"keys/prod-client-ca.pem\"\nclient_ca_key = \"keys/prod-client-ca.key\"\n\
             default_ttl = \"{default_ttl}\"\nmax_ttl = \"{max_ttl}\"\n\n\
             [[clusters.groups]]\nad = [\"k8s-devs\"]\nkubernetes = [\"dev-team\"]\n\n\
             [[clusters.groups]]\nad = [\"sre\"]\nkubernetes = [\"ops\"]\n\n\
             [[clusters.groups]]\nad = [\"sre\"]\nkubernetes = [\"system:masters\"]\nbreak_glass = true\n",
            endpoint.url(),
            endpoint.cert.display()
        )
    };
    lab.section(&cluster("prod", "1h", "2h"));
    // Short-lived certificates, to see kubectl ask again after expiry.
    lab.section(&cluster("fast", "12s", "15s"));
    lab.section("[break_glass]\nreason_min = 10\n");
    lab.start();
    let mfa = mfa.then(|| {
        // The bastion's own way to the state store, from the lab's config.
        let config = bastion::config::Config::load(&lab.config_path()).unwrap();
        let state = bastion::context::open_state(&config).unwrap();
        let seed = bastion::factors::totp::generate_secret();
        state.set_totp_seed("alice", &seed, unix_now()).unwrap();
        Mfa {
            secret: bastion::factors::totp::base32(&seed),
        }
    });
    (
        KubeLab {
            lab,
            endpoint,
            alice,
            bob,
        },
        mfa,
    )
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn kubectl(kubeconfig: &Path) -> Cmd {
    Cmd::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .timeout(Duration::from_secs(60))
}

fn strip_serial(s: &str) -> String {
    s.trim_start_matches('0').to_ascii_uppercase()
}

fn audit_events(lab: &Lab, event: &str) -> Vec<serde_json::Value> {
    fs::read_to_string(lab.dir().join("audit/audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == event)
        .collect()
}

#[test]
fn an_embedded_certificate_works_with_kubectl_and_carries_the_mapped_groups() {
    let k = kube_lab();
    let config = k.lab.dir().join("alice-prod.yaml");
    let before = unix_now();
    let out = ssh(&k.alice)
        .args(["bastion", "kubeconfig", "prod", "--ttl", "15m"])
        .run()
        .expect_ok();
    let after = unix_now();
    fs::write(&config, &out.stdout).unwrap();
    assert!(out.stdout.contains("client-certificate-data"), "{out}");

    let got = kubectl(&config).args(["get", "--raw", "/version"]).run().expect_ok();
    let v: serde_json::Value = serde_json::from_str(&got.stdout).unwrap();
    assert_eq!(v["seen"]["cn"], "alice");
    // sre's break-glass group is left out without a grant.
    assert_eq!(v["seen"]["groups"], serde_json::json!(["dev-team", "ops"]));
    kubectl(&config).args(["version", "-o", "json"]).run().expect_ok();

    // What the endpoint saw: valid for the 15 minutes asked, no more.
    let seen = k.endpoint.version_requests().pop().unwrap();
    let not_after = seen["not_after_unix"].as_i64().unwrap();
    let not_before = seen["not_before_unix"].as_i64().unwrap();
    assert!(not_after <= after + 900 && not_after >= before + 900 - 1, "{seen}");
    assert!(not_before <= before, "back-dated for skew: {seen}");

    // The operator's list and the audit trail name the same serial.
    let listed = Cmd::new(bastion_bin())
        .args(["kube", "issued", "--user", "alice", "--json", "-c"])
        .arg(k.lab.config_path())
        .run()
        .expect_ok();
    let rows: Vec<serde_json::Value> = serde_json::from_str(&listed.stdout).unwrap();
    let serial = strip_serial(seen["serial"].as_str().unwrap());
    assert!(
        rows.iter()
            .any(|r| strip_serial(r["serial"].as_str().unwrap()) == serial
                && r["groups"] == serde_json::json!(["dev-team", "ops"])
                && r["form"] == "kubeconfig"),
        "{serial} not in {rows:?}"
    );
    let issued = audit_events(&k.lab, "kube.issued");
    assert!(
        issued
            .iter()
            .any(|e| strip_serial(e["serial"].as_str().unwrap_or("")) == serial && e["ttl_secs"] == 900),
        "{issued:?}"
    );
    Cmd::new(bastion_bin())
        .args(["audit", "verify", "-c"])
        .arg(k.lab.config_path())
        .run()
        .expect_ok();

    // Under a break-glass grant for kube:prod, system:masters is added and
    // the certificate ends with the grant.
    ssh(&k.alice)
        .args([
            "bastion",
            "breakglass",
            "kube:prod",
            "--reason",
            "'API server certs expired'",
            "--for",
            "10m",
        ])
        .run()
        .expect_ok();
    let out = ssh(&k.alice).args(["bastion", "kubeconfig", "prod"]).run().expect_ok();
    assert!(out.stderr.contains("the break-glass grant ends then"), "{out}");
    fs::write(&config, &out.stdout).unwrap();
    let got = kubectl(&config).args(["get", "--raw", "/version"]).run().expect_ok();
    let v: serde_json::Value = serde_json::from_str(&got.stdout).unwrap();
    assert_eq!(
        v["seen"]["groups"],
        serde_json::json!(["dev-team", "ops", "system:masters"])
    );
    let seen = k.endpoint.version_requests().pop().unwrap();
    assert!(seen["not_after_unix"].as_i64().unwrap() <= unix_now() + 600, "{seen}");
}

#[test]
fn refusals_say_why_and_other_cas_are_refused_by_the_endpoint() {
    let k = kube_lab();
    let out = ssh(&k.bob).args(["bastion", "kubeconfig", "prod"]).run();
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(
        out.stderr
            .contains("your groups map to no Kubernetes group on cluster prod"),
        "{out}"
    );
    assert!(out.stdout.is_empty(), "{out}");
    let out = ssh(&k.bob).args(["bastion", "kubeconfig", "prod", "--exec"]).run();
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(out.stderr.contains("no Kubernetes group"), "{out}");

    let out = ssh(&k.alice)
        .args(["bastion", "kubeconfig", "prod", "--ttl", "3h"])
        .run();
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(
        out.stderr
            .contains("--ttl 3h is more than cluster prod's maximum of 2h"),
        "{out}"
    );

    // Not in a break-glass mapping: no kube grant either.
    let out = ssh(&k.bob)
        .args([
            "bastion",
            "breakglass",
            "kube:prod",
            "--reason",
            "'I would like to be admin'",
        ])
        .run();
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(out.stderr.contains("not granted"), "{out}");
    let denied = audit_events(&k.lab, "kube.denied");
    assert!(denied.iter().any(|e| e["user"] == "bob"), "{denied:?}");

    // A good kubeconfig with its certificate swapped for one from another
    // CA (same subject, self-signed): the endpoint refuses it, so the
    // successes above are the client CA's doing.
    let good = ssh(&k.alice).args(["bastion", "kubeconfig", "prod"]).run().expect_ok();
    let dir = k.lab.dir();
    self_signed(
        &dir.join("forged.key"),
        &dir.join("forged.pem"),
        "/CN=alice/O=system:masters",
        &[],
    );
    let b64 = |p: &str| Cmd::new("base64").arg("-w0").arg(dir.join(p)).run().expect_ok().stdout;
    let mut forged = String::new();
    for line in good.stdout.lines() {
        let t = line.trim_start();
        if t.starts_with("client-certificate-data:") {
            forged.push_str(&format!("    client-certificate-data: \"{}\"\n", b64("forged.pem")));
        } else if t.starts_with("client-key-data:") {
            forged.push_str(&format!("    client-key-data: \"{}\"\n", b64("forged.key")));
        } else {
            forged.push_str(line);
            forged.push('\n');
        }
    }
    let forged_config = dir.join("forged.yaml");
    fs::write(&forged_config, forged).unwrap();
    let served = k.endpoint.requests().len();
    let out = kubectl(&forged_config).args(["get", "--raw", "/version"]).run();
    assert!(!out.ok(), "a certificate from another CA must be refused: {out}");
    assert_eq!(
        k.endpoint.requests().len(),
        served,
        "the endpoint served a forged certificate"
    );
    let good_config = dir.join("good.yaml");
    fs::write(&good_config, &good.stdout).unwrap();
    kubectl(&good_config)
        .args(["get", "--raw", "/version"])
        .run()
        .expect_ok();

    // The API server down: issuing goes on (signing is offline).
    let mut k = k;
    k.endpoint.stop();
    let out = ssh(&k.alice).args(["bastion", "kubeconfig", "prod"]).run().expect_ok();
    assert!(out.stdout.contains("client-certificate-data"), "{out}");
    ssh(&k.alice)
        .args(["bastion", "kube-credential", "prod"])
        .run()
        .expect_ok();
}

/// Plain HTTP GET through `kubectl proxy`; returns the body.
fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(
        text.starts_with("HTTP/1.1 200") || text.starts_with("HTTP/1.0 200"),
        "{text}"
    );
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

#[test]
fn the_exec_plugin_asks_through_one_ssh_connection_and_again_after_expiry() {
    let (k, mfa) = kube_lab_with(true);
    let secret = mfa.unwrap().secret;
    // Key + TOTP: the code comes from oathtool when ssh asks, and every
    // prompt is logged, so the test sees how often the second factor was asked.
    let askpass_dir = k.lab.dir().join("askpass");
    fs::create_dir_all(&askpass_dir).unwrap();
    let prompts = askpass_dir.join("prompts");
    let script = askpass_dir.join("askpass.sh");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$1\" >> {p}\ncase \"$1\" in\n  *erification*) oathtool --totp -b {s} ;;\n  *) printf '\\n' ;;\nesac\n",
            p = sh_quote(&prompts.display().to_string()),
            s = sh_quote(&secret),
        ),
    )
    .unwrap();
    let mut perm = fs::metadata(&script).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    fs::set_permissions(&script, perm).unwrap();
    let code_prompts = || {
        fs::read_to_string(&prompts)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("erification"))
            .count()
    };

    // The test's ssh keeps its control socket in the lab instead of ~/.ssh
    // (OpenSSH takes ~ from the passwd entry, not $HOME). Fetching the
    // kubeconfig opens the shared connection (key + TOTP) that kubectl's
    // plugin calls then reuse, as on an engineer's laptop.
    let control = k.lab.dir().join("cm-%C");
    let ssh_config = k.alice.ssh_config_path();
    let out = ssh_askpass(&ssh_config, &script)
        .args(["-o", "ControlMaster=auto", "-o"])
        .arg(format!("ControlPath={}", control.display()))
        .args(["-o", "ControlPersist=10m"])
        .args(["bastion", "kubeconfig", "fast", "--exec", "--via", "bastion"])
        .run()
        .expect_ok();
    assert_eq!(code_prompts(), 1, "one TOTP code for the login");
    assert!(
        !out.stdout.contains("client-certificate-data"),
        "no credential on disk: {out}"
    );
    assert!(out.stdout.contains("kube-credential"), "{out}");
    // Everything else is the kubeconfig as issued; the plugin's ssh reads
    // the lab's ssh_config (BatchMode: it could not answer a prompt).
    let patched = out
        .stdout
        .replace(
            "ControlPath=~/.ssh/bastion-kube-%C",
            &format!("ControlPath={}", control.display()),
        )
        .replace(
            "      - \"bastion\"\n",
            &format!(
                "      - \"-F\"\n      - \"{}\"\n      - \"bastion\"\n",
                ssh_config.display()
            ),
        );
    assert_ne!(patched, out.stdout);
    let config = k.lab.dir().join("alice-exec.yaml");
    fs::write(&config, &patched).unwrap();
    let logins_before = audit_events(&k.lab, "auth.success").len();

    // Two kubectl processes: each runs the plugin (kubectl keeps exec
    // credentials in memory only), both over the one master connection.
    for _ in 0..2 {
        let got = kubectl(&config).args(["get", "--raw", "/version"]).run().expect_ok();
        let v: serde_json::Value = serde_json::from_str(&got.stdout).unwrap();
        assert_eq!(v["seen"]["cn"], "alice");
        assert_eq!(v["seen"]["groups"], serde_json::json!(["dev-team", "ops"]));
    }
    let exec_issued = |lab: &Lab| {
        audit_events(lab, "kube.issued")
            .into_iter()
            .filter(|e| e["form"] == "exec")
            .count()
    };
    assert_eq!(exec_issued(&k.lab), 2);
    assert_eq!(
        audit_events(&k.lab, "auth.success").len(),
        logins_before,
        "ControlMaster: the one login serves every kubectl call"
    );

    // One long-running kubectl: after expirationTimestamp it asks again,
    // and the endpoint sees a new certificate.
    let proxy = kubectl(&config)
        .args(["proxy", "--port=0", "--address=127.0.0.1"])
        .timeout(Duration::from_secs(120))
        .spawn();
    let mut port = 0u16;
    assert!(
        wait_until(Duration::from_secs(30), || {
            port = proxy
                .stdout()
                .split("Starting to serve on 127.0.0.1:")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            port != 0
        }),
        "kubectl proxy did not start: {}",
        proxy.stderr()
    );
    let first: serde_json::Value = serde_json::from_str(&http_get(port, "/version")).unwrap();
    let first_serial = first["seen"]["serial"].as_str().unwrap().to_string();
    let first_end = k
        .endpoint
        .version_requests()
        .into_iter()
        .rev()
        .find(|r| r["serial"] == first_serial.as_str())
        .unwrap()["not_after_unix"]
        .as_i64()
        .unwrap();
    assert!(first_end <= unix_now() + 15, "at most the 15 s maximum");
    assert!(
        wait_until(Duration::from_secs(30), || unix_now() > first_end),
        "the certificate did not expire"
    );
    let second: serde_json::Value = serde_json::from_str(&http_get(port, "/version")).unwrap();
    assert_eq!(second["seen"]["cn"], "alice");
    assert_ne!(
        second["seen"]["serial"], first["seen"]["serial"],
        "kubectl did not ask again after expiry"
    );
    assert!(exec_issued(&k.lab) >= 4, "the plugin ran again");
    assert_eq!(code_prompts(), 1, "MFA asked once for every call");
    drop(proxy);
    let _ = Cmd::new("ssh")
        .arg("-F")
        .arg(&ssh_config)
        .arg("-o")
        .arg(format!("ControlPath={}", control.display()))
        .args(["-O", "exit", "bastion"])
        .timeout(Duration::from_secs(10))
        .run();
}
