//! Private OpenSSH sshd nodes on loopback, each with its own host key.

use crate::*;

/// What a private sshd node accepts.
#[derive(Default, Clone)]
pub struct SshdOptions {
    /// A user CA public key line for `TrustedUserCAKeys` (e.g. from `bastion ca user-ca`).
    pub user_ca: Option<String>,
    /// Public key lines put in the login's authorized_keys.
    pub authorized_keys: Vec<String>,
    /// Extra sshd_config lines.
    pub extra_config: String,
}

/// A private OpenSSH sshd on 127.0.0.1 with its own host key.
pub struct SshdNode {
    root: Option<tempfile::TempDir>,
    pub port: u16,
    pub login: String,
    host_pub: String,
    log: PathBuf,
    child: Option<Child>,
}

impl SshdNode {
    pub fn start(opts: SshdOptions) -> SshdNode {
        let _ = fs::create_dir_all("/run/sshd");
        let root = new_tempdir("bastion-e2e-node-");
        let d = root.path().to_path_buf();
        let login = current_login();
        let host_pub = keygen(&d.join("host_ed25519"), "e2e-node-host");
        fs::create_dir_all(d.join("authorized_keys")).unwrap();
        let mut ak = opts.authorized_keys.join("\n");
        ak.push('\n');
        fs::write(d.join("authorized_keys").join(&login), ak).unwrap();
        let ca_line = match &opts.user_ca {
            Some(ca) => {
                fs::write(d.join("user_ca.pub"), format!("{}\n", ca.trim())).unwrap();
                format!("TrustedUserCAKeys {}\n", d.join("user_ca.pub").display())
            }
            None => String::new(),
        };
        let log = d.join("sshd.log");
        let mut last_err = String::new();
        for _attempt in 0..3 {
            let port = free_port();
            let config = format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {hk}\nPidFile {pid}\nUsePAM no\nStrictModes no\n\
                 AuthenticationMethods publickey\nPubkeyAuthentication yes\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nAuthorizedKeysFile {ak}/%u\n{ca_line}\
                 Subsystem sftp internal-sftp\nLogLevel VERBOSE\n{extra}\n",
                hk = d.join("host_ed25519").display(),
                pid = d.join("sshd.pid").display(),
                ak = d.join("authorized_keys").display(),
                extra = opts.extra_config,
            );
            fs::write(d.join("sshd_config"), config).unwrap();
            let logf = fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
            let mut cmd = Command::new(sshd_bin());
            cmd.arg("-D").arg("-e").arg("-f").arg(d.join("sshd_config"));
            cmd.stdin(Stdio::null()).stdout(logf.try_clone().unwrap()).stderr(logf);
            detach(&mut cmd);
            let mut child = cmd.spawn().expect("start sshd");
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let mut dead = false;
            let up = wait_until(Duration::from_secs(20), || {
                if let Ok(Some(_)) = child.try_wait() {
                    dead = true;
                    return true;
                }
                port_open(&addr)
            });
            if up && !dead {
                return SshdNode {
                    root: Some(root),
                    port,
                    login,
                    host_pub,
                    log,
                    child: Some(child),
                };
            }
            let _ = stop_child(&mut child, Duration::from_secs(2));
            last_err = read_lossy(&log);
        }
        panic!("private sshd did not start; log:\n{last_err}");
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The node's host public key, "ssh-ed25519 AAAA…" (no comment).
    pub fn host_key_line(&self) -> String {
        key_without_comment(&self.host_pub)
    }

    pub fn dir(&self) -> &Path {
        self.root.as_ref().unwrap().path()
    }

    pub fn log(&self) -> String {
        read_lossy(&self.log)
    }

    /// Writes a known_hosts file for direct connections to this node.
    pub fn known_hosts_file(&self) -> PathBuf {
        let p = self.dir().join("client_known_hosts");
        fs::write(&p, format!("[127.0.0.1]:{} {}\n", self.port, self.host_key_line())).unwrap();
        p
    }

    /// `ssh` straight to this node (no bastion) with `identity`.
    pub fn direct_ssh(&self, identity: &Path) -> Cmd {
        Cmd::new("ssh")
            .args([
                "-F",
                "/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "IdentitiesOnly=yes",
            ])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts_file().display()))
            .args(["-o", "StrictHostKeyChecking=yes", "-i"])
            .arg(identity)
            .arg("-p")
            .arg(self.port.to_string())
            .arg(format!("{}@127.0.0.1", self.login))
    }
}

impl Drop for SshdNode {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c, Duration::from_secs(5));
        }
        if std::thread::panicking() {
            eprintln!("--- private sshd log (last 30 lines) ---\n{}", tail(&self.log(), 30));
        }
        finish_tempdir(self.root.take());
    }
}
