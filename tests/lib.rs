//! Harness for the end-to-end tests: runs the real `bastion` binary against
//! real OpenSSH clients (`ssh`, `scp`, `sftp`, `rsync`) and real `sshd` nodes,
//! all on 127.0.0.1.
//!
//! Every child process is started in its own session (so it has no
//! controlling terminal and cannot prompt), with a timeout after which its
//! whole process group is killed. Temporary directories are removed when the
//! owning value is dropped, unless the test panicked and `KEEP_TEST_DIRS` is
//! set in the environment.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Default limit for one client command (ssh, scp, ...).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Locating binaries
// ---------------------------------------------------------------------------

/// The bastion binary: `$BASTION_BIN`, else `target/<profile>/bastion` next to
/// the test executable (`target/<profile>/deps/xxx`).
pub fn bastion_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("BASTION_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "BASTION_BIN={} is not a file", p.display());
        return p;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut tried = Vec::new();
    for dir in exe.ancestors().skip(1).take(3) {
        let candidate = dir.join("bastion");
        if candidate.is_file() {
            return candidate;
        }
        tried.push(candidate.display().to_string());
    }
    panic!(
        "the bastion binary was not found (looked at {}); run `cargo build --release -p bastion` first \
         (and run the tests with --release), or set BASTION_BIN=/path/to/bastion",
        tried.join(", ")
    );
}

/// The sshd binary (sshd refuses to re-exec itself unless started by absolute path).
pub fn sshd_bin() -> PathBuf {
    for p in ["/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"] {
        if Path::new(p).is_file() {
            return PathBuf::from(p);
        }
    }
    panic!("sshd not found: apt-get install -y openssh-server");
}

/// The name of the user running the tests (the login on private sshd nodes).
pub fn current_login() -> String {
    let out = Cmd::new("id")
        .arg("-un")
        .timeout(Duration::from_secs(10))
        .run()
        .expect_ok();
    out.stdout.trim().to_string()
}

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

/// A free TCP port on 127.0.0.1 (bound and released; a small race is accepted).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// Polls `cond` every 50 ms until it returns true (→ true) or `deadline` passes (→ false).
pub fn wait_until(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether something accepts TCP connections at `addr`.
pub fn port_open(addr: &SocketAddr) -> bool {
    TcpStream::connect_timeout(addr, Duration::from_millis(500)).is_ok()
}

/// Lowercase hex SHA-256 of a file's contents.
pub fn sha256_file(path: &Path) -> String {
    let mut f = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

/// Lowercase hex SHA-256 of bytes.
pub fn sha256_bytes(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Random bytes from /dev/urandom.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    fs::File::open("/dev/urandom").unwrap().read_exact(&mut v).unwrap();
    v
}

/// Writes `size` random bytes to `path`.
pub fn write_random_file(path: &Path, size: u64) {
    let mut src = fs::File::open("/dev/urandom").unwrap();
    let mut dst = fs::File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut left = size;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        src.read_exact(&mut buf[..n]).unwrap();
        dst.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    dst.sync_all().ok();
}

/// Single-quotes a string for a POSIX shell.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Reads a file, or returns "" if it does not exist.
pub fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn tail(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

fn unique_suffix() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    format!(
        "{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        nanos % 100_000
    )
}

fn new_tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create a temp dir")
}

/// Drops a temp dir: removes it, unless the thread is panicking and KEEP_TEST_DIRS is set.
fn finish_tempdir(dir: Option<tempfile::TempDir>) {
    if let Some(d) = dir
        && std::thread::panicking()
        && std::env::var_os("KEEP_TEST_DIRS").is_some()
    {
        let p = d.keep();
        eprintln!("KEEP_TEST_DIRS: kept {}", p.display());
    }
}

fn kill_group(pgid: i32, sig: i32) {
    if pgid > 1 {
        // SAFETY: kill(2) takes plain integers; a stale group only fails.
        unsafe {
            libc::kill(-pgid, sig);
        }
    }
}

/// SIGTERM to the process group, wait up to `grace`, then SIGKILL the group.
fn stop_child(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    let pgid = child.id() as i32;
    if let Ok(Some(st)) = child.try_wait() {
        kill_group(pgid, libc::SIGKILL);
        return Some(st);
    }
    kill_group(pgid, libc::SIGTERM);
    let end = Instant::now() + grace;
    while Instant::now() < end {
        if let Ok(Some(st)) = child.try_wait() {
            // Anything left behind in the group (e.g. sshd nodes) goes too.
            kill_group(pgid, libc::SIGKILL);
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    kill_group(pgid, libc::SIGKILL);
    child.wait().ok()
}

/// Makes the child a session leader: no controlling terminal, own process group.
fn detach(cmd: &mut Command) {
    // SAFETY: the hook only calls setsid(2), which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Environment variables that would let a client reach the developer's agent,
/// prompt on a display, or otherwise behave differently from CI.
const SCRUBBED_ENV: &[&str] = &[
    "SSH_AUTH_SOCK",
    "SSH_AGENT_PID",
    "SSH_ASKPASS",
    "SSH_ASKPASS_REQUIRE",
    "DISPLAY",
    "TMUX",
    "TMUX_PANE",
];

// ---------------------------------------------------------------------------
// Running commands with timeouts
// ---------------------------------------------------------------------------

/// A command with a timeout. Runs in its own session; on timeout its process group is killed.
pub struct Cmd {
    cmd: Command,
    timeout: Duration,
    stdin: Option<Vec<u8>>,
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Cmd {
        let mut cmd = Command::new(program);
        for k in SCRUBBED_ENV {
            cmd.env_remove(k);
        }
        Cmd {
            cmd,
            timeout: DEFAULT_TIMEOUT,
            stdin: None,
        }
    }

    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Cmd {
        self.cmd.arg(a);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Cmd {
        self.cmd.env(k, v);
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Cmd {
        self.cmd.current_dir(dir);
        self
    }

    /// Bytes fed to the child's stdin (then closed). Without this, stdin is /dev/null.
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Cmd {
        self.stdin = Some(data.into());
        self
    }

    pub fn timeout(mut self, d: Duration) -> Cmd {
        self.timeout = d;
        self
    }

    /// The command line, for messages.
    pub fn describe(&self) -> String {
        let mut s = self.cmd.get_program().to_string_lossy().into_owned();
        for a in self.cmd.get_args() {
            s.push(' ');
            let a = a.to_string_lossy();
            if a.contains(char::is_whitespace) || a.is_empty() {
                s.push_str(&sh_quote(&a));
            } else {
                s.push_str(&a);
            }
        }
        s
    }

    /// The command line quoted for a POSIX shell (environment changes are not included).
    pub fn shell_line(&self) -> String {
        let mut v = vec![sh_quote(&self.cmd.get_program().to_string_lossy())];
        v.extend(self.cmd.get_args().map(|a| sh_quote(&a.to_string_lossy())));
        v.join(" ")
    }

    /// Runs to completion (or timeout). Never panics on a non-zero exit.
    pub fn run(self) -> Out {
        let timeout = self.timeout;
        self.spawn().wait_timeout(timeout)
    }

    /// Starts in the background; the process group is killed when the returned value is dropped.
    pub fn spawn(mut self) -> Bg {
        let desc = self.describe();
        self.cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        self.cmd.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        detach(&mut self.cmd);
        let mut child = self
            .cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{desc}`: {e}"));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        threads.push(pump(child.stdout.take().unwrap(), stdout.clone()));
        threads.push(pump(child.stderr.take().unwrap(), stderr.clone()));
        if let Some(data) = self.stdin.take() {
            let mut w = child.stdin.take().unwrap();
            threads.push(std::thread::spawn(move || {
                let _ = w.write_all(&data);
                drop(w);
            }));
        }
        Bg {
            pgid: child.id() as i32,
            child,
            stdout,
            stderr,
            threads,
            desc,
            started: Instant::now(),
            timeout: self.timeout,
        }
    }
}

fn pump(mut r: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => into.lock().unwrap().extend_from_slice(&buf[..n]),
            }
        }
    })
}

/// A background child process. Dropping it kills its process group.
pub struct Bg {
    child: Child,
    pgid: i32,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    threads: Vec<JoinHandle<()>>,
    desc: String,
    started: Instant,
    timeout: Duration,
}

impl Bg {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Output so far.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends a signal to the child only (not its group).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) takes plain integers; our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Waits for the child; kills the process group if it is still running after `d`.
    pub fn wait_timeout(mut self, d: Duration) -> Out {
        let end = Instant::now() + d;
        let mut timed_out = false;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(st)) => break Some(st),
                Ok(None) => {}
                Err(_) => break None,
            }
            if Instant::now() >= end {
                timed_out = true;
                kill_group(self.pgid, libc::SIGKILL);
                break self.child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // Helpers left in the group (e.g. the ProxyJump ssh) would hold the pipes open.
        kill_group(self.pgid, libc::SIGKILL);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        Out {
            desc: self.desc.clone(),
            status,
            stdout: self.stdout(),
            stderr: self.stderr(),
            timed_out,
            elapsed: self.started.elapsed(),
        }
    }

    /// Waits with the timeout given to the [`Cmd`].
    pub fn wait(self) -> Out {
        let t = self.timeout;
        self.wait_timeout(t)
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            kill_group(self.pgid, libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// The result of a finished command.
#[derive(Debug, Clone)]
pub struct Out {
    pub desc: String,
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
    pub elapsed: Duration,
}

impl Out {
    /// The exit code, if the process exited normally.
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    /// The signal that killed the process, if any.
    pub fn signal(&self) -> Option<i32> {
        self.status.and_then(|s| s.signal())
    }

    pub fn ok(&self) -> bool {
        !self.timed_out && self.code() == Some(0)
    }

    /// Panics with the whole story unless the command exited 0.
    #[track_caller]
    pub fn expect_ok(self) -> Out {
        assert!(self.ok(), "command failed:\n{self}");
        self
    }

    /// Panics unless the command exited with `code`.
    #[track_caller]
    pub fn expect_code(self, code: i32) -> Out {
        assert!(
            !self.timed_out && self.code() == Some(code),
            "expected exit code {code}:\n{self}"
        );
        self
    }

    /// stdout and stderr together.
    pub fn all_output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl fmt::Display for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  command: {}", self.desc)?;
        let status = match (self.timed_out, self.code(), self.signal()) {
            (true, _, _) => format!("TIMED OUT after {:?} (killed)", self.elapsed),
            (false, Some(c), _) => format!("exit code {c}"),
            (false, None, Some(s)) => format!("killed by signal {s}"),
            _ => "unknown".into(),
        };
        writeln!(f, "  status: {status} ({:?})", self.elapsed)?;
        writeln!(f, "  stdout: {}", clip(&self.stdout))?;
        write!(f, "  stderr: {}", clip(&self.stderr))
    }
}

fn clip(s: &str) -> String {
    const MAX: usize = 4000;
    if s.len() <= MAX {
        s.to_string()
    } else {
        let mut cut = s.len() - MAX;
        while !s.is_char_boundary(cut) {
            cut += 1;
        }
        format!("…{}", &s[cut..])
    }
}

// ---------------------------------------------------------------------------
// OpenSSH clients
// ---------------------------------------------------------------------------

/// Anything that has an ssh_config file usable with `ssh -F`.
pub trait SshSetup {
    fn ssh_config_path(&self) -> PathBuf;
}

fn client_opts(cfg: &Path) -> Vec<String> {
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

// ---------------------------------------------------------------------------
// The demo
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Private sshd nodes
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// A bastion with a custom config (`bastion serve`)
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Loopback echo server
// ---------------------------------------------------------------------------

/// A TCP echo server on 127.0.0.1 (one thread per connection). Stops when dropped.
pub struct EchoServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    pub fn start() -> EchoServer {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind echo server");
        let port = l.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (s, a) = (stop.clone(), accepted.clone());
        let thread = std::thread::spawn(move || {
            for conn in l.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut c) = conn else { continue };
                a.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    let _ = c.set_read_timeout(Some(Duration::from_secs(120)));
                    let mut buf = [0u8; 65536];
                    loop {
                        match c.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if c.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = c.shutdown(Shutdown::Both);
                });
            }
        });
        EchoServer {
            port,
            stop,
            accepted,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        format!("127.0.0.1:{}", self.port).parse().unwrap()
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr(), Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends `data` over `stream` (from a second thread) and reads the same number of bytes back.
pub fn echo_roundtrip(stream: TcpStream, data: &[u8], timeout: Duration) -> std::io::Result<Vec<u8>> {
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut w = stream.try_clone()?;
    let payload = data.to_vec();
    let writer = std::thread::spawn(move || w.write_all(&payload));
    let mut r = stream;
    let mut got = vec![0u8; data.len()];
    let res = r.read_exact(&mut got);
    let wres = writer.join().expect("writer thread");
    wres?;
    res?;
    Ok(got)
}

// ---------------------------------------------------------------------------
// Terminals: tmux
// ---------------------------------------------------------------------------

/// A private tmux server (own `-L` socket) running one command in a window.
pub struct Tmux {
    socket: String,
    conf: tempfile::NamedTempFile,
}

impl Tmux {
    /// Starts `command` (a shell command line) in a `width`×`height` window with no status bar.
    /// When the command ends, `[exited N]` is printed and the pane stays.
    pub fn start(command: &str, width: u16, height: u16) -> Tmux {
        let mut conf = tempfile::Builder::new()
            .prefix("bastion-e2e-tmux-")
            .suffix(".conf")
            .tempfile()
            .unwrap();
        writeln!(
            conf,
            "set -g status off\nset -g history-limit 10000\nset -g remain-on-exit on\nset -g escape-time 0"
        )
        .unwrap();
        let t = Tmux {
            socket: format!("bastion-e2e-{}", unique_suffix()),
            conf,
        };
        let wrapped = format!("{command}; echo \"[exited $?]\"; sleep 600");
        t.tmux()
            .arg("-f")
            .arg(t.conf.path())
            .args([
                "new-session",
                "-d",
                "-s",
                "e2e",
                "-x",
                &width.to_string(),
                "-y",
                &height.to_string(),
            ])
            .arg(wrapped)
            .run()
            .expect_ok();
        t
    }

    fn tmux(&self) -> Cmd {
        Cmd::new("tmux")
            .args(["-L", &self.socket])
            .timeout(Duration::from_secs(15))
    }

    /// Types literal text.
    pub fn type_text(&self, text: &str) {
        self.tmux()
            .args(["send-keys", "-t", "e2e", "-l", "--", text])
            .run()
            .expect_ok();
    }

    /// Sends named keys (e.g. "Enter", "C-c").
    pub fn keys(&self, keys: &[&str]) {
        self.tmux()
            .args(["send-keys", "-t", "e2e"])
            .args(keys)
            .run()
            .expect_ok();
    }

    /// Types a line and presses Enter.
    pub fn type_line(&self, text: &str) {
        self.type_text(text);
        self.keys(&["Enter"]);
    }

    /// The screen plus scrollback, wrapped lines joined.
    pub fn capture(&self) -> String {
        self.tmux()
            .args(["capture-pane", "-p", "-J", "-t", "e2e", "-S", "-5000"])
            .run()
            .expect_ok()
            .stdout
    }

    /// Whether some screen line, trimmed, equals `line`.
    pub fn has_line(&self, line: &str) -> bool {
        self.capture().lines().any(|l| l.trim() == line)
    }

    /// Resizes the window.
    pub fn resize(&self, width: u16, height: u16) {
        self.tmux()
            .args([
                "resize-window",
                "-t",
                "e2e",
                "-x",
                &width.to_string(),
                "-y",
                &height.to_string(),
            ])
            .run()
            .expect_ok();
    }

    /// (rows, columns) of the pane as tmux sees it.
    pub fn pane_size(&self) -> (u16, u16) {
        let out = self
            .tmux()
            .args(["display-message", "-p", "-t", "e2e", "#{pane_height} #{pane_width}"])
            .run()
            .expect_ok();
        let v: Vec<u16> = out.stdout.split_whitespace().map(|x| x.parse().unwrap()).collect();
        (v[0], v[1])
    }

    /// Types `line` every `every` until `expect` appears as a screen line, or `deadline` passes.
    pub fn retype_until(&self, line: &str, expect: &str, every: Duration, deadline: Duration) -> bool {
        let end = Instant::now() + deadline;
        while Instant::now() < end {
            self.type_line(line);
            let until = (Instant::now() + every).min(end);
            while Instant::now() < until {
                if self.has_line(expect) {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        self.has_line(expect)
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Must not panic again here: no expect_ok().
            let out = self
                .tmux()
                .args(["capture-pane", "-p", "-J", "-t", "e2e", "-S", "-5000"])
                .run();
            eprintln!("--- tmux screen ---\n{}", tail(&out.stdout, 60));
        }
        let _ = self.tmux().arg("kill-server").run();
    }
}

// ---------------------------------------------------------------------------
// SOCKS5 (client side, for -D tests)
// ---------------------------------------------------------------------------

/// Where a SOCKS5 CONNECT should go.
pub enum SocksTarget<'a> {
    Ipv4([u8; 4], u16),
    Domain(&'a str, u16),
}

/// Opens a SOCKS5 CONNECT through a proxy at `proxy` (no authentication).
pub fn socks5_connect(proxy: &SocketAddr, target: SocksTarget<'_>, timeout: Duration) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect_timeout(proxy, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(&[5, 1, 0])?;
    let mut r = [0u8; 2];
    s.read_exact(&mut r)?;
    if r != [5, 0] {
        return Err(std::io::Error::other(format!("SOCKS5 method reply {r:?}")));
    }
    let mut req = vec![5, 1, 0];
    match target {
        SocksTarget::Ipv4(ip, port) => {
            req.push(1);
            req.extend_from_slice(&ip);
            req.extend_from_slice(&port.to_be_bytes());
        }
        SocksTarget::Domain(name, port) => {
            req.push(3);
            req.push(name.len() as u8);
            req.extend_from_slice(name.as_bytes());
            req.extend_from_slice(&port.to_be_bytes());
        }
    }
    s.write_all(&req)?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head)?;
    if head[0] != 5 || head[1] != 0 {
        return Err(std::io::Error::other(format!("SOCKS5 connect reply {head:?}")));
    }
    let rest = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut l = [0u8; 1];
            s.read_exact(&mut l)?;
            l[0] as usize + 2
        }
        t => return Err(std::io::Error::other(format!("SOCKS5 address type {t}"))),
    };
    let mut skip = vec![0u8; rest];
    s.read_exact(&mut skip)?;
    Ok(s)
}

// ---------------------------------------------------------------------------
// Misc
// ---------------------------------------------------------------------------

/// Sets a file's permission bits.
pub fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Counts the occurrences of `needle` in `hay`.
pub fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

/// Starts a private ssh-agent on a socket in `dir`; returns the process and the socket path.
pub fn start_agent(dir: &Path) -> (Bg, PathBuf) {
    let sock = dir.join(format!("agent.{}", unique_suffix()));
    let bg = Cmd::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .timeout(Duration::from_secs(600))
        .spawn();
    assert!(
        wait_until(Duration::from_secs(10), || sock.exists()),
        "ssh-agent made no socket at {}",
        sock.display()
    );
    (bg, sock)
}
