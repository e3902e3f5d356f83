//! The demo's auditor console: an auditor account (a reviewer, and on call
//! in k8s-ops, so the demo shows that nobody reviews their own grant), a
//! self-signed certificate for 127.0.0.1, and the `[console]` and `[web]`
//! sections that serve it.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Result;

/// The demo auditor's name.
pub const AUDITOR: &str = "auditor";

/// A password kept in `dir/NAME` (0600), made once.
pub fn kept_password(dir: &Path, name: &str, prefix: &str) -> Result<String> {
    let path = dir.join(name);
    if let Ok(p) = fs::read_to_string(&path) {
        return Ok(p.trim().to_string());
    }
    let password = format!("{prefix}-{:08x}", rand::random::<u32>());
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    writeln!(f, "{password}")?;
    Ok(password)
}

/// The console's certificate and key under `keys/`, made once (self-signed
/// for 127.0.0.1 and localhost); returns their paths.
pub fn certificate(keys: &Path) -> Result<(PathBuf, PathBuf)> {
    let (cert, key) = (keys.join("console.crt"), keys.join("console.key"));
    if !cert.exists() {
        let (cert_pem, key_pem) = crate::web::tls::self_signed(&["127.0.0.1".into(), "localhost".into()])?;
        let mut k = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key)?;
        k.write_all(key_pem.as_bytes())?;
        fs::write(&cert, cert_pem)?;
    }
    Ok((cert, key))
}

/// The config text: who audits and reviews, where the console listens, and
/// the auditor's account in the embedded directory.
pub fn config_text(listen: std::net::SocketAddr, auditor_hash: &str) -> String {
    format!(
        "\n# The auditor console (https://{listen}/): secops audit every session,\n\
         # secops-leads also review break-glass grants (never their own) and may\n\
         # end a running session; alerts link to the console at `url`.\n\
         [console]\n\
         auditors = [\"secops\"]\n\
         reviewers = [\"secops-leads\"]\n\
         terminators = [\"secops-leads\"]\n\
         url = \"https://{listen}\"\n\n\
         [web]\n\
         listen = \"{listen}\"\n\
         cert = \"keys/console.crt\"\n\
         key = \"keys/console.key\"\n\
         idle_timeout = \"15m\"\n\n\
         [[users]]\n\
         name = \"{AUDITOR}\"\n\
         password_hash = \"{auditor_hash}\"\n\
         groups = [\"secops\", \"secops-leads\", \"k8s-ops\"]\n"
    )
}
