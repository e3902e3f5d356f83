//! `Lab`: a bastion with a config the test writes (`bastion serve`), its keys, users and targets.

use crate::*;

/// A user of a [`Lab`] with an ed25519 key and a ready ssh_config.
#[derive(Clone, Debug)]
pub struct LabUser {
    pub name: String,
    pub key: PathBuf,
    pub pubkey: String,
    ssh_config: PathBuf,
}

impl SshSetup for LabUser {
    fn ssh_config_path(&self) -> PathBuf {
        self.ssh_config.clone()
    }
}

/// A bastion run with `bastion serve --config FILE`, with keys from `bastion ca init`.
///
/// Use: `Lab::new()`, start nodes with `lab.user_ca()`, `add_user`/`add_target`, then `start()`.
pub struct Lab {
    root: Option<tempfile::TempDir>,
    dir: PathBuf,
    pub port: u16,
    user_ca: String,
    server_extra: Vec<String>,
    /// Raw lines added to `[auth]`.
    auth_extra: Vec<String>,
    /// `auth.methods` as TOML (default: key or password alone).
    auth_methods: String,
    /// Raw TOML sections appended at the end (e.g. `[directory]`).
    sections: Vec<String>,
    targets: Vec<String>,
    users: Vec<(String, String)>,
    clients: Vec<LabUser>,
    log: PathBuf,
    child: Option<Child>,
    /// A whole config text used instead of the generated one.
    config_override: Option<String>,
}

impl Lab {
    pub fn new() -> Lab {
        let root = new_tempdir("bastion-e2e-lab-");
        let dir = root.path().to_path_buf();
        let keys = dir.join("keys");
        Cmd::new(bastion_bin())
            .args(["ca", "init"])
            .arg(&keys)
            .timeout(Duration::from_secs(30))
            .run()
            .expect_ok();
        fs::create_dir_all(dir.join("users")).unwrap();
        let mut lab = Lab {
            root: Some(root),
            dir,
            port: free_port(),
            user_ca: String::new(),
            server_extra: vec![],
            auth_extra: vec![],
            auth_methods: r#"[["publickey"], ["password"]]"#.to_string(),
            sections: vec![],
            targets: vec![],
            users: vec![],
            clients: vec![],
            log: PathBuf::new(),
            child: None,
            config_override: None,
        };
        lab.log = lab.dir.join("bastion.log");
        lab.write_config();
        let out = Cmd::new(bastion_bin())
            .args(["ca", "user-ca", "--config"])
            .arg(lab.config_path())
            .timeout(Duration::from_secs(30))
            .run()
            .expect_ok();
        lab.user_ca = out
            .stdout
            .lines()
            .find(|l| l.starts_with("ssh-"))
            .unwrap_or_else(|| panic!("`bastion ca user-ca` printed no key line:\n{out}"))
            .trim()
            .to_string();
        lab
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The user CA public key line, for nodes' `TrustedUserCAKeys`.
    pub fn user_ca(&self) -> &str {
        &self.user_ca
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("bastion.toml")
    }

    pub fn addr(&self) -> SocketAddr {
        format!("127.0.0.1:{}", self.port).parse().unwrap()
    }

    /// A raw line added to `[server]`, e.g. `shutdown_grace = "20s"`.
    /// Sets `auth.methods` (TOML), e.g. `[["password", "sk"]]`.
    pub fn auth_methods(&mut self, toml: &str) {
        self.auth_methods = toml.to_string();
    }

    /// A raw line for `[auth]`, e.g. `recheck_interval = "2s"`.
    pub fn auth_option(&mut self, line: &str) {
        self.auth_extra.push(line.to_string());
    }

    /// A raw TOML section appended to the config (e.g. `[directory]`).
    pub fn section(&mut self, text: &str) {
        self.sections.push(text.to_string());
    }

    /// A raw `[[targets]]` entry.
    pub fn add_raw_target(&mut self, text: &str) {
        self.targets.push(text.to_string());
    }

    pub fn server_option(&mut self, line: &str) {
        self.server_extra.push(line.to_string());
    }

    /// Adds a `[[targets]]` entry pinned to `host_keys`, reachable by every
    /// proven user (`groups = ["*"]`) as `logins`.
    pub fn add_target(&mut self, name: &str, address: &str, logins: &[&str], host_keys: &[String]) {
        let q = |v: &[String]| v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ");
        let logins: Vec<String> = logins.iter().map(|s| s.to_string()).collect();
        self.targets.push(format!(
            "[[targets]]\nname = {name:?}\naddress = {address:?}\nlabels = {{ role = \"e2e\" }}\nlogins = [{}]\nhost_keys = [{}]\ngroups = [\"*\"]\n",
            q(&logins),
            q(host_keys)
        ));
    }

    /// Adds a raw `[[targets]]` block.
    pub fn add_target_toml(&mut self, toml: &str) {
        self.targets.push(toml.to_string());
    }

    /// Makes a key pair and an ssh_config for `name` without declaring the user in the config.
    pub fn client(&mut self, name: &str) -> LabUser {
        let key = self.dir.join("users").join(format!("{name}_ed25519"));
        let pubkey = keygen(&key, &format!("{name}@e2e"));
        let u = LabUser {
            name: name.to_string(),
            key,
            pubkey,
            ssh_config: self.dir.join(format!("ssh_config.{name}")),
        };
        self.clients.push(u.clone());
        u
    }

    /// Makes a key pair for `name` and declares the user (key login) in the config.
    pub fn add_user(&mut self, name: &str) -> LabUser {
        let u = self.client(name);
        self.users.push((
            name.to_string(),
            format!("[[users]]\nname = {name:?}\nkeys = [{:?}]\n", u.pubkey),
        ));
        u
    }

    /// Adds a `[[users]]` entry in `groups`, with a key.
    pub fn add_user_in(&mut self, name: &str, groups: &[&str]) -> LabUser {
        let u = self.client(name);
        let groups = groups.iter().map(|g| format!("{g:?}")).collect::<Vec<_>>().join(", ");
        self.users.push((
            name.to_string(),
            format!(
                "[[users]]\nname = {name:?}\nkeys = [{:?}]\ngroups = [{groups}]\n",
                u.pubkey
            ),
        ));
        u
    }

    /// The config text as it will be written.
    pub fn config_text(&self) -> String {
        let mut s = format!(
            "[server]\nlisten = \"127.0.0.1:{}\"\nhost_key = \"keys/host_ed25519\"\nhost_ca = \"keys/host_ca_ed25519\"\n\
             user_ca = \"keys/user_ca_ed25519\"\nrecording_key = \"keys/recording_ed25519\"\n",
            self.port
        );
        for l in &self.server_extra {
            s.push_str(l);
            s.push('\n');
        }
        s.push_str("\n[recording]\ndir = \"recordings\"\n\n");
        // Keys or passwords alone: these labs test the proxy, not the factors.
        s.push_str(&format!("[auth]\nmethods = {}\n", self.auth_methods));
        for l in &self.auth_extra {
            s.push_str(l);
            s.push('\n');
        }
        s.push('\n');
        for t in &self.targets {
            s.push_str(t);
            s.push('\n');
        }
        for (_, u) in &self.users {
            s.push_str(u);
            s.push('\n');
        }
        for sec in &self.sections {
            s.push_str(sec);
            s.push('\n');
        }
        s
    }

    pub fn write_config(&self) -> PathBuf {
        let p = self.config_path();
        let text = self.config_override.clone().unwrap_or_else(|| self.config_text());
        fs::write(&p, text).unwrap();
        p
    }

    /// Writes `text` as the whole config without starting (for `serve` runs
    /// a test drives itself).
    pub fn start_with_config_text_only(&mut self, text: &str) {
        self.config_override = Some(text.to_string());
        self.write_config();
    }

    /// Starts with `text` as the whole config (e.g. `config_text()` edited).
    pub fn start_with_config(&mut self, text: &str) {
        self.config_override = Some(text.to_string());
        self.start();
    }

    fn write_client_files(&self) {
        let host_pub = fs::read_to_string(self.dir.join("keys/host_ed25519.pub"))
            .unwrap_or_else(|e| panic!("`bastion ca init` made no keys/host_ed25519.pub: {e}"));
        let ca = Cmd::new(bastion_bin())
            .args(["ca", "known-hosts", "--config"])
            .arg(self.config_path())
            .timeout(Duration::from_secs(30))
            .run()
            .expect_ok();
        let kh = self.dir.join("known_hosts");
        fs::write(
            &kh,
            format!(
                "[127.0.0.1]:{} {}\n{}\n",
                self.port,
                key_without_comment(&host_pub),
                ca.stdout.trim()
            ),
        )
        .unwrap();
        let login = current_login();
        for u in &self.clients {
            let text = format!(
                "Host bastion\n    HostName 127.0.0.1\n    Port {port}\n    User {user}\n    IdentityFile {key}\n    IdentitiesOnly yes\n    \
                 UserKnownHostsFile {kh}\n    StrictHostKeyChecking yes\n    ForwardAgent no\n    BatchMode yes\n    ConnectTimeout 10\n\
                 Host * !bastion\n    User {login}\n    ProxyJump bastion\n    UserKnownHostsFile {kh}\n    StrictHostKeyChecking yes\n    \
                 IdentityFile {key}\n    IdentitiesOnly yes\n    BatchMode yes\n    ConnectTimeout 10\n",
                port = self.port,
                user = u.name,
                key = u.key.display(),
                kh = kh.display(),
            );
            fs::write(&u.ssh_config, text).unwrap();
        }
    }

    /// Writes the config and client files, runs `bastion serve`, waits for the port.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already started");
        self.write_config();
        self.write_client_files();
        let logf = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(bastion_bin());
        cmd.args(["serve", "--config"]).arg(self.config_path());
        for k in SCRUBBED_ENV {
            cmd.env_remove(k);
        }
        cmd.stdin(Stdio::null()).stdout(logf.try_clone().unwrap()).stderr(logf);
        detach(&mut cmd);
        self.child = Some(cmd.spawn().expect("start `bastion serve`"));
        let addr = self.addr();
        let mut exited = None;
        let up = wait_until(Duration::from_secs(30), || {
            if let Ok(Some(st)) = self.child.as_mut().unwrap().try_wait() {
                exited = Some(st);
                return true;
            }
            port_open(&addr)
        });
        if let Some(st) = exited {
            panic!(
                "`bastion serve` exited ({st}) at start; log:\n{}\nconfig:\n{}",
                self.log(),
                self.config_text()
            );
        }
        assert!(
            up,
            "`bastion serve` does not accept connections at {addr} after 30 s; log:\n{}",
            self.log()
        );
    }

    /// `ssh` as a lab user.
    pub fn ssh(&self, user: &LabUser) -> Cmd {
        ssh(user)
    }

    pub fn log(&self) -> String {
        read_lossy(&self.log)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("not started").id()
    }

    /// SIGTERM to the bastion process only.
    pub fn sigterm(&self) {
        // SAFETY: kill(2) takes plain integers; our own child's pid.
        unsafe {
            libc::kill(self.pid() as i32, libc::SIGTERM);
        }
    }

    /// Waits for the bastion process to exit.
    pub fn wait_exit(&mut self, d: Duration) -> Option<ExitStatus> {
        let c = self.child.as_mut().expect("not started");
        let mut st = None;
        wait_until(d, || {
            if let Ok(Some(s)) = c.try_wait() {
                st = Some(s);
                true
            } else {
                false
            }
        });
        st
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Stops the bastion (if it runs) and starts it again on the same
    /// config and state: what an operator's restart does.
    pub fn restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c, Duration::from_secs(10));
        }
        self.start();
    }
}

impl Default for Lab {
    fn default() -> Self {
        Lab::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c, Duration::from_secs(10));
        }
        if std::thread::panicking() {
            eprintln!("--- bastion serve log (last 80 lines) ---\n{}", tail(&self.log(), 80));
        }
        finish_tempdir(self.root.take());
    }
}
