//! Locating the binaries under test and the peers' scripts.

use crate::*;

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
