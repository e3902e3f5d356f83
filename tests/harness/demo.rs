//! `bastion demo` as a newcomer starts it, read back through its demo.json contract.

use crate::*;

/// Parsed `demo.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct DemoInfo {
    pub bastion: String,
    pub user: String,
    #[serde(default)]
    pub password: Option<String>,
    pub identity: PathBuf,
    pub login: String,
    pub nodes: Vec<String>,
    pub node_addresses: BTreeMap<String, String>,
    pub node_logs: BTreeMap<String, PathBuf>,
    pub ssh_config: PathBuf,
    pub known_hosts: PathBuf,
    pub config: PathBuf,
    #[serde(default)]
    pub recordings: Option<PathBuf>,
    #[serde(default)]
    pub pid: Option<u32>,
    /// Base32 TOTP secret of the demo user.
    #[serde(default)]
    pub totp_secret: Option<String>,
    /// The auditor console's URL (`https://127.0.0.1:PORT/`).
    #[serde(default)]
    pub console_url: Option<String>,
    /// SHA-256 of the console's certificate, `AA:BB:…`.
    #[serde(default)]
    pub console_cert_sha256: Option<String>,
    /// The demo auditor's login.
    #[serde(default)]
    pub auditor: Option<DemoAuditor>,
}

/// `auditor` in demo.json.
#[derive(Debug, Clone, Deserialize)]
pub struct DemoAuditor {
    pub user: String,
    pub password: String,
    pub totp_secret: String,
}

/// A running `bastion demo --dir <tmp> --port 0`.
pub struct Demo {
    pub info: DemoInfo,
    /// The raw demo.json, for contract checks.
    pub raw_json: serde_json::Value,
    root: Option<tempfile::TempDir>,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Demo {
    /// Starts the demo in its single-factor mode (key or password alone), so
    /// that scripted tests of the proxy can log in many times, and waits (up
    /// to 60 s) for its demo.json.
    pub fn start() -> Demo {
        Demo::start_with(&["--single-factor"])
    }

    /// Starts the demo as a newcomer gets it: TOTP required.
    pub fn start_mfa() -> Demo {
        Demo::start_with(&[])
    }

    /// Starts the demo with extra flags (e.g. `--directory ad`).
    pub fn start_with(extra: &[&str]) -> Demo {
        let root = new_tempdir("bastion-e2e-demo-");
        let dir = root.path().join("demo");
        fs::create_dir_all(&dir).unwrap();
        let log = root.path().join("bastion.log");
        let logf = fs::File::create(&log).unwrap();
        let mut cmd = Command::new(bastion_bin());
        cmd.arg("demo")
            .arg("--dir")
            .arg(&dir)
            .arg("--port")
            .arg("0")
            .args(extra);
        for k in SCRUBBED_ENV {
            cmd.env_remove(k);
        }
        cmd.stdin(Stdio::null()).stdout(logf.try_clone().unwrap()).stderr(logf);
        detach(&mut cmd);
        let child = cmd.spawn().expect("start `bastion demo`");
        let mut demo = Demo {
            info: DemoInfo {
                bastion: String::new(),
                user: String::new(),
                password: None,
                identity: PathBuf::new(),
                login: String::new(),
                nodes: vec![],
                node_addresses: BTreeMap::new(),
                node_logs: BTreeMap::new(),
                ssh_config: PathBuf::new(),
                known_hosts: PathBuf::new(),
                config: PathBuf::new(),
                recordings: None,
                totp_secret: None,
                pid: None,
                console_url: None,
                console_cert_sha256: None,
                auditor: None,
            },
            raw_json: serde_json::Value::Null,
            root: Some(root),
            dir: dir.clone(),
            log,
            child: Some(child),
        };
        let json_path = dir.join("demo.json");
        let mut exited = None;
        // Provisioning a Samba AD DC (`--directory ad`, first run) takes up
        // to a minute on a busy 2-CPU machine; the plain demo is up in one second.
        let limit = if extra.contains(&"ad") { 240 } else { 60 };
        let ready = wait_until(Duration::from_secs(limit), || {
            if json_path.is_file() {
                return true;
            }
            if let Some(Ok(Some(st))) = demo.child.as_mut().map(|c| c.try_wait()) {
                exited = Some(st);
                return true;
            }
            false
        });
        if let Some(st) = exited {
            panic!(
                "`bastion demo` exited ({st}) before writing demo.json; its log:\n{}",
                demo.bastion_log()
            );
        }
        assert!(
            ready,
            "`bastion demo` wrote no demo.json within 60 s; its log:\n{}",
            demo.bastion_log()
        );
        let text = fs::read_to_string(&json_path).unwrap();
        demo.raw_json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("demo.json is not JSON ({e}):\n{text}"));
        demo.info = serde_json::from_value(demo.raw_json.clone())
            .unwrap_or_else(|e| panic!("demo.json does not match the contract ({e}):\n{text}"));
        let addr = demo.bastion_addr();
        assert!(
            wait_until(Duration::from_secs(30), || port_open(&addr)),
            "the demo bastion does not accept connections at {addr}; log:\n{}",
            demo.bastion_log()
        );
        demo
    }

    /// The demo directory (given as `--dir`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A fresh scratch directory for the test's own files (outside the demo dir).
    pub fn scratch(&self, name: &str) -> PathBuf {
        let p = self.root.as_ref().unwrap().path().join("scratch").join(name);
        fs::create_dir_all(&p).unwrap();
        p
    }

    pub fn bastion_addr(&self) -> SocketAddr {
        self.info
            .bastion
            .parse()
            .unwrap_or_else(|_| panic!("demo.json bastion `{}` is not ip:port", self.info.bastion))
    }

    pub fn port(&self) -> u16 {
        self.bastion_addr().port()
    }

    pub fn user(&self) -> &str {
        &self.info.user
    }

    pub fn login(&self) -> &str {
        &self.info.login
    }

    pub fn identity(&self) -> &Path {
        &self.info.identity
    }

    pub fn known_hosts(&self) -> &Path {
        &self.info.known_hosts
    }

    pub fn config_path(&self) -> &Path {
        &self.info.config
    }

    pub fn node_addr(&self, name: &str) -> SocketAddr {
        let a = self
            .info
            .node_addresses
            .get(name)
            .unwrap_or_else(|| panic!("no node `{name}` in demo.json"));
        a.parse()
            .unwrap_or_else(|_| panic!("node address `{a}` is not ip:port"))
    }

    /// The first node's name.
    pub fn node(&self) -> &str {
        self.info.nodes.first().expect("demo.json lists no nodes")
    }

    /// The bastion's stderr so far.
    pub fn bastion_log(&self) -> String {
        read_lossy(&self.log)
    }

    /// A node's sshd log so far.
    pub fn node_log(&self, name: &str) -> String {
        let p = self
            .info
            .node_logs
            .get(name)
            .unwrap_or_else(|| panic!("no log for node `{name}` in demo.json"));
        read_lossy(p)
    }

    pub fn child_pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().unwrap().try_wait(), Ok(None))
    }

    /// The demo process's exit status, if it has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().unwrap().try_wait().ok().flatten()
    }
}

impl SshSetup for Demo {
    fn ssh_config_path(&self) -> PathBuf {
        self.info.ssh_config.clone()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c, Duration::from_secs(20));
        }
        if std::thread::panicking() {
            eprintln!(
                "--- bastion demo log (last 80 lines) ---\n{}",
                tail(&self.bastion_log(), 80)
            );
            for (name, p) in &self.info.node_logs {
                eprintln!("--- {name} sshd log (last 30 lines) ---\n{}", tail(&read_lossy(p), 30));
            }
        }
        finish_tempdir(self.root.take());
    }
}
