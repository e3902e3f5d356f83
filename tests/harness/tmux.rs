//! Interactive terminals through tmux: what a user types and sees.

use crate::*;

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
