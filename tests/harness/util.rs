//! Small helpers: waiting for a condition, free ports, temporary directories, files.

use crate::*;

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

pub(crate) fn tail(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

pub(crate) fn unique_suffix() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    format!(
        "{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        nanos % 100_000
    )
}

pub(crate) fn new_tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create a temp dir")
}

/// Drops a temp dir: removes it, unless the thread is panicking and KEEP_TEST_DIRS is set.
pub(crate) fn finish_tempdir(dir: Option<tempfile::TempDir>) {
    if let Some(d) = dir
        && std::thread::panicking()
        && std::env::var_os("KEEP_TEST_DIRS").is_some()
    {
        let p = d.keep();
        eprintln!("KEEP_TEST_DIRS: kept {}", p.display());
    }
}

pub(crate) fn kill_group(pgid: i32, sig: i32) {
    if pgid > 1 {
        // SAFETY: kill(2) takes plain integers; a stale group only fails.
        unsafe {
            libc::kill(-pgid, sig);
        }
    }
}

/// SIGTERM to the process group, wait up to `grace`, then SIGKILL the group.
pub(crate) fn stop_child(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
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
pub(crate) fn detach(cmd: &mut Command) {
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
pub(crate) const SCRUBBED_ENV: &[&str] = &[
    "SSH_AUTH_SOCK",
    "SSH_AGENT_PID",
    "SSH_ASKPASS",
    "SSH_ASKPASS_REQUIRE",
    "DISPLAY",
    "TMUX",
    "TMUX_PANE",
];
