//! Operator commands for the kubeconfig issuer: `bastion kube issued` (the
//! list incident response reads, since Kubernetes cannot revoke a client
//! certificate) and `bastion kube ca-init` (a dedicated client-signing CA).

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use recorder::display::{escape as e, escape_json};

use super::ClientCa;
use crate::config::Config;
use crate::time::{now, rfc3339};

/// What `kube issued` shows.
pub struct IssuedFilter<'a> {
    pub user: Option<&'a str>,
    pub cluster: Option<&'a str>,
    /// Issued within this long; unset, everything.
    pub since: Option<Duration>,
    /// Only certificates not expired yet.
    pub valid: bool,
}

pub fn list_issued(config: &Config, filter: &IssuedFilter<'_>, as_json: bool) -> Result<ExitCode> {
    let state = crate::context::open_state(config)?;
    let now = now();
    let since = filter.since.map(|d| now - d.as_secs() as i64).unwrap_or(0);
    let rows: Vec<_> = state
        .kube_issued_since(since)?
        .into_iter()
        .filter(|k| filter.user.is_none_or(|u| k.user == u))
        .filter(|k| filter.cluster.is_none_or(|c| k.cluster == c))
        .filter(|k| !filter.valid || k.not_after > now)
        .collect();
    if as_json {
        println!("{}", escape_json(&serde_json::to_string_pretty(&rows)?));
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("No Kubernetes certificates issued that match.");
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = format!(
        "{:<34} {:<10} {:<12} {:<21} {:<21} {:<7} {:<10} {}\n",
        "SERIAL", "CLUSTER", "USER", "ISSUED", "EXPIRES", "STATE", "FORM", "GROUPS"
    );
    for k in &rows {
        let _ = writeln!(
            text,
            "{:<34} {:<10} {:<12} {:<21} {:<21} {:<7} {:<10} {}{}",
            e(&k.serial),
            e(&k.cluster),
            e(&k.user),
            rfc3339(k.issued_at),
            rfc3339(k.not_after),
            if k.not_after > now { "valid" } else { "expired" },
            e(&k.form),
            e(&k.groups.join(",")),
            k.grant_id
                .as_deref()
                .map(|g| format!("  (break-glass {})", e(g)))
                .unwrap_or_default(),
        );
    }
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// Writes a new client-signing CA: the certificate (0644) and its key
/// (0600). Refuses to overwrite either.
pub fn ca_init(cluster: &str, cert_out: &Path, key_out: &Path, validity: Duration) -> Result<ExitCode> {
    write_ca(
        &format!("bastion Kubernetes client CA {cluster}"),
        cert_out,
        key_out,
        validity,
    )?;
    println!(
        "Wrote {} and {} (valid {} days).\nAdd the certificate to the API server's --client-ca-file bundle; keep the key on the bastion only.",
        cert_out.display(),
        key_out.display(),
        validity.as_secs() / 86400
    );
    Ok(ExitCode::SUCCESS)
}

/// Creates a CA named `common_name` at `cert_out` / `key_out`.
pub fn write_ca(common_name: &str, cert_out: &Path, key_out: &Path, validity: Duration) -> Result<()> {
    let (cert, key) = ClientCa::generate(common_name, validity)?;
    let write = |path: &Path, data: &[u8], mode: u32| -> Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .with_context(|| format!("creating {} (an existing file is never overwritten)", path.display()))?;
        f.write_all(data)?;
        f.sync_all()?;
        Ok(())
    };
    write(key_out, key.as_bytes(), 0o600)?;
    write(cert_out, cert.as_bytes(), 0o644)
}
