//! `bastion demo`: a working bastion in one command.
//!
//! It makes the key material, a demo user (password and key), starts real
//! OpenSSH `sshd` nodes on loopback that trust the bastion's user CA, writes
//! a config, an `ssh_config` and a `known_hosts` a newcomer can use at once,
//! and runs the bastion until SIGTERM or Ctrl-C, then stops the nodes.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

mod console;

use crate::ca;
use crate::config::Config;

/// The demo's nodes: name and labels.
/// The demo nodes and their `role` label: a worker anyone in `k8s-ops`
/// reaches, and a control-plane node that is break-glass only.
const NODES: &[(&str, &str)] = &[("node-1", "worker"), ("cp-1", "control-plane")];
const DEMO_USER: &str = "demo";

/// A node sshd the demo started; killed on drop.
struct Node {
    name: String,
    address: String,
    log: PathBuf,
    host_key_line: String,
    child: Child,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the demo's users come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoDirectory {
    /// Users in the config file (the demo user `demo`).
    Embedded,
    /// A throwaway Samba Active Directory DC on loopback (user `alice`).
    Ad,
}

/// The Samba AD peer's user for the demo, and her password (test only).
const AD_USER: &str = "alice";
const AD_PASSWORD: &str = "Alice-Passw0rd!1";

pub async fn run(dir: &Path, port: u16, web_port: u16, single_factor: bool, directory: DemoDirectory) -> Result<()> {
    // Before any node starts: a SIGTERM from here on stops the nodes too.
    let stop = crate::run::shutdown_signal();
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = fs::canonicalize(dir)?;
    let sshd = find_sshd()?;
    let keys = dir.join("keys");
    ca::init(&keys)?;
    demo_cluster_keys(&keys)?;
    let identity = dir.join("demo_ed25519");
    if !identity.exists() {
        ca::write_private_key(&identity, &ca::generate_key("demo user")?)?;
    }
    let user_key_line = fs::read_to_string(identity.with_extension("pub"))?.trim().to_string();
    let embedded_password = console::kept_password(&dir, "demo_password", "demo")?;
    let auditor_password = console::kept_password(&dir, "auditor_password", "audit")?;
    let (console_cert, _) = console::certificate(&keys)?;
    let ad = match directory {
        DemoDirectory::Embedded => None,
        DemoDirectory::Ad => Some(start_samba_ad(&dir)?),
    };
    let (demo_user, password) = match &ad {
        None => (DEMO_USER.to_string(), embedded_password.clone()),
        Some(_) => (AD_USER.to_string(), AD_PASSWORD.to_string()),
    };
    let login = current_login();
    let user_ca_line = ca::public_key_line(&keys.join(ca::USER_CA))?;

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("listening on 127.0.0.1:{port} (try --port 0 for any free port)"))?;
    let bastion_addr = listener.local_addr()?;
    let web_port = if port == 0 { 0 } else { web_port };
    let web_listener = tokio::net::TcpListener::bind(("127.0.0.1", web_port))
        .await
        .with_context(|| format!("listening on 127.0.0.1:{web_port} (try --web-port 0 for any free port)"))?;
    let web_addr = web_listener.local_addr()?;

    let mut nodes = Vec::new();
    for (name, _) in NODES {
        nodes.push(start_node(&sshd, &dir, name, &user_ca_line)?);
    }

    let config_path = dir.join("bastion.toml");
    let mut config_text = config_toml(
        bastion_addr,
        &nodes,
        &login,
        &user_key_line,
        &embedded_password,
        single_factor,
    )?;
    if let Some(ad) = &ad {
        config_text.push_str(&format!(
            "\n[directory]\nkind = \"ldap\"\n\n[directory.ldap]\nurl = \"{}\"\nca_file = \"{}\"\nbind_dn = \"{}\"\n\
             bind_password_file = \"{}\"\nbase_dn = \"{}\"\nflavor = \"active_directory\"\n\
             ssh_key_attribute = \"altSecurityIdentities\"\n",
            ad["url"], ad["ca_file"], ad["bind_dn"], ad["bind_password_file"], ad["base_dn"]
        ));
    }
    config_text.push_str(&console::config_text(
        web_addr,
        &crate::directory::hash_password(&auditor_password)?,
    ));
    fs::write(&config_path, config_text)?;
    let config = Config::load(&config_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let totp_secret = enroll_demo_totp(&config, &demo_user)?;
    let auditor_totp = enroll_demo_totp(&config, console::AUDITOR)?;
    let console_url = format!("https://{web_addr}/");
    let fingerprint = crate::web::tls::fingerprint(&console_cert)?;

    let host_key_line = ca::public_key_line(&keys.join(ca::HOST_KEY))?;
    let known_hosts = dir.join("known_hosts");
    fs::write(
        &known_hosts,
        format!(
            "[127.0.0.1]:{} {host_key_line}\n{}\n",
            bastion_addr.port(),
            ca::known_hosts_line("*", &keys.join(ca::HOST_CA))?
        ),
    )?;
    let ssh_config = dir.join("ssh_config");
    fs::write(
        &ssh_config,
        ssh_config_text(
            bastion_addr.port(),
            &dir,
            &identity,
            &known_hosts,
            &nodes,
            &login,
            &demo_user,
        ),
    )?;

    let demo = serde_json::json!({
        "bastion": bastion_addr.to_string(),
        "user": demo_user,
        "directory": if ad.is_some() { "ad" } else { "embedded" },
        "password": password,
        "identity": identity,
        "login": login,
        "nodes": nodes.iter().map(|n| n.name.clone()).collect::<Vec<_>>(),
        "node_addresses": nodes.iter().map(|n| (n.name.clone(), n.address.clone())).collect::<BTreeMap<_, _>>(),
        "node_logs": nodes.iter().map(|n| (n.name.clone(), n.log.clone())).collect::<BTreeMap<_, _>>(),
        "ssh_config": ssh_config,
        "known_hosts": known_hosts,
        "config": config_path,
        "recordings": config.recording.worm_dir(),
        "pid": std::process::id(),
        "totp_secret": totp_secret,
        "single_factor": single_factor,
        "console_url": console_url,
        "console_cert": console_cert,
        "console_cert_sha256": fingerprint,
        "auditor": {"user": console::AUDITOR, "password": auditor_password, "totp_secret": auditor_totp},
    });
    let tmp = dir.join("demo.json.tmp");
    fs::write(&tmp, serde_json::to_string_pretty(&demo)?)?;
    fs::rename(&tmp, dir.join("demo.json"))?;

    let mfa = if single_factor {
        "Single-factor demo: the key or the password alone lets the demo user in.".to_string()
    } else {
        format!(
            "Second factor: TOTP, secret {totp_secret} (`oathtool --totp -b {totp_secret}` prints the code;\n\
             or add it to an authenticator app). Tip: ControlMaster in your ssh_config asks once per hour."
        )
    };
    let cfg = ssh_config.display();
    let first = &nodes[0].name;
    println!(
        "\nbastion demo is running on {bastion_addr}  (Ctrl-C stops it and its nodes)\n\n\
         Try:\n  \
         ssh -F {cfg} {first}                      # a shell on {first}, through the bastion\n  \
         ssh -F {cfg} -J bastion {login}@{first} uname -a\n  \
         scp -F {cfg} /etc/hostname {first}:/tmp/\n  \
         ssh -F {cfg} bastion targets\n  \
         ssh -F {cfg} bastion whoami\n  \
         ssh -F {cfg} -l '{demo_user}:{login}@{first}' bastion    # direct mode, no ProxyJump\n\n\
         Break-glass (cp-1 is a control-plane node: a reason and a ticket, time-boxed, alerted):\n  \
         ssh -F {cfg} cp-1                          # asks \"Break-glass access to cp-1. Reason:\" and \"Ticket:\"\n  \
         ssh -F {cfg} bastion breakglass cp-1 --reason 'etcd quorum lost, API down' --ticket INC-4711 --for 30m\n  \
         bastion breakglass list --unreviewed -c {config}\n  \
         bastion policy explain {demo_user} {login}@cp-1 -c {config}\n\n\
         Kubernetes (cluster `demo`; signing is offline, so no API server runs here):\n  \
         ssh -F {cfg} bastion kubeconfig                 # the clusters you may get credentials for\n  \
         ssh -F {cfg} bastion kubeconfig demo --ttl 15m > demo.kubeconfig\n  \
         ssh -F {cfg} bastion kubeconfig demo --exec --via bastion   # no stored credential: kubectl asks via ssh\n  \
         ssh -F {cfg} bastion breakglass kube:demo --reason 'API down, need system:masters' --ticket INC-4711\n  \
         bastion kube issued -c {config}\n\n\
         Auditor console: {console_url}  (self-signed; SHA-256 {fingerprint})\n  \
         log in as `{auditor}`, password {auditor_password}, TOTP secret {auditor_totp}\n  \
         (`oathtool --totp -b {auditor_totp}`); over SSH: ssh -F {cfg} -l {auditor} bastion sessions list\n\n\
         Demo user `{demo_user}`: key {}, password {password}\n\
         {mfa}\n\
         Config: {}   Recordings: {}\n",
        identity.display(),
        config_path.display(),
        config
            .recording
            .worm_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
        config = config_path.display(),
        auditor = console::AUDITOR,
    );
    let _ = std::io::stdout().flush();

    let result = crate::run::serve_on(config, listener, Some(web_listener), stop).await;
    let _ = fs::remove_file(dir.join("demo.json"));
    drop(nodes);
    result
}

/// The demo cluster's client-signing CA and a stand-in for its API server's
/// CA, made once and kept across restarts.
fn demo_cluster_keys(keys: &Path) -> Result<()> {
    let make = |stem: &str, name: &str| -> Result<()> {
        let (cert, key) = (keys.join(format!("{stem}.pem")), keys.join(format!("{stem}.key")));
        if cert.exists() {
            return Ok(());
        }
        let _ = fs::remove_file(&key);
        crate::kube::admin::write_ca(name, &cert, &key, std::time::Duration::from_secs(5 * 365 * 86400))
    };
    make("kube-demo-client-ca", "bastion Kubernetes client CA demo")?;
    make(
        "kube-demo-apiserver-ca",
        "demo API server CA (no API server runs in the demo)",
    )
}

/// Enrolls the demo user's TOTP once (kept across restarts) and returns the
/// base32 secret for demo.json.
fn enroll_demo_totp(config: &Config, user: &str) -> Result<String> {
    let state = crate::context::open_state(config)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let seed = match state.totp_seed(user)? {
        Some(seed) => seed,
        None => {
            let seed = crate::factors::totp::generate_secret();
            state.set_totp_seed(user, &seed, now)?;
            seed
        }
    };
    Ok(crate::factors::totp::base32(&seed))
}

/// Starts (or reuses) the Samba AD DC of `tests/peers/samba-ad.sh` for the
/// demo, stopped when the demo exits; returns its `[directory.ldap]` settings.
fn start_samba_ad(dir: &Path) -> Result<std::collections::HashMap<String, String>> {
    let exe = std::env::current_exe().unwrap_or_default();
    let candidates = [
        std::env::current_dir().unwrap_or_default(),
        exe.ancestors().nth(3).map(Path::to_path_buf).unwrap_or_default(),
    ];
    let Some(script) = candidates
        .iter()
        .map(|root| root.join("tests/peers/samba-ad.sh"))
        .find(|p| p.exists())
    else {
        bail!("--directory ad needs tests/peers/samba-ad.sh from the source tree: run the demo from the repository");
    };
    println!("starting a throwaway Samba AD DC (the first time takes 30-60 s to provision)…");
    // BASTION_SAMBA_DIR reuses an AD provisioned before (the tests share one).
    let samba_dir = std::env::var_os("BASTION_SAMBA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("samba-ad"));
    let out = Command::new("bash")
        .arg(&script)
        .arg(&samba_dir)
        .args(["--watch", &std::process::id().to_string()])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "the Samba AD DC did not start (apt-get install -y samba-ad-dc samba-ad-provision ldap-utils):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

fn find_sshd() -> Result<PathBuf> {
    for p in ["/usr/sbin/sshd", "/usr/local/sbin/sshd"] {
        if Path::new(p).exists() {
            return Ok(PathBuf::from(p));
        }
    }
    bail!("the demo runs real OpenSSH nodes, and sshd is not installed: apt-get install -y openssh-server")
}

/// The account the demo's nodes let the bastion log in as: the user running
/// the demo (an unprivileged sshd can only log in its own user).
fn current_login() -> String {
    // SAFETY: getpwuid returns a pointer into static storage or null; we copy
    // the name out before any other call could overwrite it.
    unsafe {
        let pw = libc::getpwuid(libc::geteuid());
        if !pw.is_null()
            && let Ok(name) = std::ffi::CStr::from_ptr((*pw).pw_name).to_str()
        {
            return name.to_string();
        }
    }
    std::env::var("USER").unwrap_or_else(|_| "root".into())
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start_node(sshd: &Path, dir: &Path, name: &str, user_ca_line: &str) -> Result<Node> {
    let node_dir = dir.join("nodes").join(name);
    fs::create_dir_all(&node_dir)?;
    let host_key = node_dir.join("ssh_host_ed25519_key");
    if !host_key.exists() {
        ca::write_private_key(&host_key, &ca::generate_key(&format!("{name} host key"))?)?;
    }
    let host_key_line = fs::read_to_string(host_key.with_extension("pub"))?.trim().to_string();
    fs::write(node_dir.join("user_ca.pub"), format!("{user_ca_line}\n"))?;
    // sshd's privilege separation directory, which Debian creates only at boot.
    let _ = fs::create_dir_all("/run/sshd");
    let log = node_dir.join("sshd.log");
    let mut last_error = String::new();
    for _attempt in 0..5 {
        let port = free_port()?;
        let config = node_dir.join("sshd_config");
        fs::write(&config, sshd_config_text(&node_dir, port))?;
        let log_file = fs::OpenOptions::new().create(true).append(true).open(&log)?;
        let child = Command::new(sshd)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", sshd.display()))?;
        let mut node = Node {
            name: name.to_string(),
            address: format!("127.0.0.1:{port}"),
            log: log.clone(),
            host_key_line: host_key_line.clone(),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = node.child.try_wait() {
                last_error = format!("sshd for {name} exited ({status}); see {}", log.display());
                break;
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(node);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    bail!("could not start the demo node {name}: {last_error}")
}

fn sshd_config_text(node_dir: &Path, port: u16) -> String {
    let d = node_dir.display();
    format!(
        "# Demo node: trusts only certificates from the bastion's user CA.\n\
         Port {port}\n\
         ListenAddress 127.0.0.1\n\
         HostKey {d}/ssh_host_ed25519_key\n\
         PidFile {d}/sshd.pid\n\
         UsePAM no\n\
         StrictModes no\n\
         PermitRootLogin prohibit-password\n\
         AuthenticationMethods publickey\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         AuthorizedKeysFile none\n\
         TrustedUserCAKeys {d}/user_ca.pub\n\
         AllowTcpForwarding yes\n\
         AllowAgentForwarding no\n\
         X11Forwarding no\n\
         AcceptEnv LANG LC_*\n\
         Subsystem sftp internal-sftp\n\
         LogLevel VERBOSE\n"
    )
}

fn config_toml(
    listen: std::net::SocketAddr,
    nodes: &[Node],
    login: &str,
    user_key_line: &str,
    password: &str,
    single_factor: bool,
) -> Result<String> {
    let hash = crate::directory::hash_password(password)?;
    let mut s = format!(
        "# Written by `bastion demo`; rewritten at each start (node ports change).\n\
         [server]\n\
         listen = \"{listen}\"\n\
         host_key = \"keys/{}\"\n\
         host_ca = \"keys/{}\"\n\
         user_ca = \"keys/{}\"\n\
         recording_key = \"keys/{}\"\n\
         idle_timeout = \"30m\"\n\
         max_session = \"8h\"\n\
         shutdown_grace = \"10s\"\n\
         node_cert_validity = \"5m\"\n\n\
         [recording]\n\
         dir = \"recordings\"\n\n\
         [state]\n\
         db = \"state/bastion.db\"\n\
         key_file = \"keys/state.key\"\n\n\
         [auth]\n\
         methods = {}\n",
        ca::HOST_KEY,
        ca::HOST_CA,
        ca::USER_CA,
        ca::RECORDING_KEY,
        if single_factor {
            r#"[["publickey"], ["password"]]"#
        } else {
            r#"[["password", "totp"], ["publickey", "totp"], ["password", "sk"]]"#
        }
    );
    for n in nodes {
        let role = NODES
            .iter()
            .find(|(name, _)| *name == n.name)
            .map(|(_, r)| *r)
            .unwrap_or("worker");
        s.push_str(&format!(
            "\n[[targets]]\n\
             name = \"{}\"\n\
             address = \"{}\"\n\
             labels = {{ role = \"{role}\" }}\n\
             logins = [\"{login}\"]\n\
             host_keys = [\"{}\"]\n\
             allow_local_forwarding = true\n\
             allow_remote_forwarding = true\n",
            n.name, n.address, n.host_key_line
        ));
    }
    s.push_str(&format!(
        "\n# Engineers in k8s-ops reach every node; control-plane nodes are\n\
         # break-glass only (the [break_glass] selector), whatever this rule says.\n\
         [[rules]]\n\
         name = \"ops\"\n\
         groups = [\"k8s-ops\"]\n\
         targets = [\"role=worker\", \"role=control-plane\"]\n\
         logins = [\"{login}\"]\n\
         local_forward = [\"*\"]\n\
         remote_forward = [\"*\"]\n\n\
         [break_glass]\n\
         selector = [\"role=control-plane\"]\n\
         reason_min = 10\n\
         ticket_pattern = \"(INC|CHG)-[0-9]+\"\n\
         default_duration = \"60m\"\n\
         max_duration = \"4h\"\n\
         warn_before = \"5m\"\n\
         # A second pair of eyes: a break-glass session waits (up to watch_wait)\n\
         # until an auditor who is not its user watches it.\n\
         watch = \"required\"\n\
         watch_wait = \"10m\"\n"
    ));
    s.push_str(
        "\n# Kubernetes credentials for cluster `demo`: k8s-ops get the group `ops`;\n\
         # system:masters only under a break-glass grant for kube:demo.\n\
         [[clusters]]\n\
         name = \"demo\"\n\
         server = \"https://127.0.0.1:6443\"\n\
         certificate_authority = \"keys/kube-demo-apiserver-ca.pem\"\n\
         client_ca_cert = \"keys/kube-demo-client-ca.pem\"\n\
         client_ca_key = \"keys/kube-demo-client-ca.key\"\n\
         default_ttl = \"1h\"\n\
         max_ttl = \"8h\"\n\n\
         [[clusters.groups]]\n\
         ad = [\"k8s-ops\"]\n\
         kubernetes = [\"ops\"]\n\n\
         [[clusters.groups]]\n\
         ad = [\"k8s-ops\"]\n\
         kubernetes = [\"system:masters\"]\n\
         break_glass = true\n",
    );
    s.push_str(&format!(
        "\n[[users]]\n\
         name = \"{DEMO_USER}\"\n\
         password_hash = \"{hash}\"\n\
         keys = [\"{user_key_line}\"]\n\
         groups = [\"k8s-ops\"]\n"
    ));
    Ok(s)
}

fn ssh_config_text(
    port: u16,
    dir: &Path,
    identity: &Path,
    known_hosts: &Path,
    nodes: &[Node],
    login: &str,
    user: &str,
) -> String {
    let (id, kh) = (identity.display(), known_hosts.display());
    let mut s = format!(
        "# Written by `bastion demo`. Use: ssh -F {}/ssh_config HOST\n\
         Host bastion\n    \
         HostName 127.0.0.1\n    \
         Port {port}\n    \
         User {user}\n    \
         IdentityFile {id}\n    \
         IdentitiesOnly yes\n    \
         UserKnownHostsFile {kh}\n    \
         StrictHostKeyChecking yes\n    \
         ForwardAgent no\n",
        dir.display()
    );
    for n in nodes {
        s.push_str(&format!(
            "\nHost {}\n    \
             User {login}\n    \
             ProxyJump bastion\n    \
             IdentityFile {id}\n    \
             IdentitiesOnly yes\n    \
             UserKnownHostsFile {kh}\n    \
             StrictHostKeyChecking yes\n",
            n.name
        ));
    }
    s
}
