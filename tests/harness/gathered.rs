//! A long-running client (an engineer's `ssh -tt` session, an auditor's
//! `sessions watch`) whose stdout and stderr are gathered in the background,
//! to wait on what it shows and type into it; killed when dropped.

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::wait_until;

pub struct Gathered {
    pub child: Child,
    out: Arc<Mutex<String>>,
}

impl Gathered {
    pub fn spawn(mut cmd: Command) -> Gathered {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start the client");
        let out = Arc::new(Mutex::new(String::new()));
        let pipes: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("piped")),
            Box::new(child.stderr.take().expect("piped")),
        ];
        for mut pipe in pipes {
            let sink = out.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        Gathered { child, out }
    }

    /// Everything printed so far, stdout and stderr as they came.
    pub fn text(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    /// Waits (up to 30 s) until `what` was printed.
    pub fn shows(&self, what: &str) -> bool {
        wait_until(Duration::from_secs(30), || self.text().contains(what))
    }

    pub fn type_text(&mut self, text: &str) {
        let stdin = self.child.stdin.as_mut().expect("piped");
        stdin.write_all(text.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// Waits (up to 30 s) for the client to exit.
    pub fn ended(&mut self) -> Option<ExitStatus> {
        let mut status = None;
        wait_until(Duration::from_secs(30), || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        status
    }
}

impl Drop for Gathered {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
