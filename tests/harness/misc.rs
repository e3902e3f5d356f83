//! Everything else the tests share.

use crate::*;

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
