//! Running commands with timeouts: `Cmd` and its output `Out`, background `Bg`;
//! each child in its own session, its whole group killed at the deadline.

use crate::*;

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

pub(crate) fn pump(mut r: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
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

pub(crate) fn clip(s: &str) -> String {
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
