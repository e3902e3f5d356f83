//! Key material: the bastion's host key, its host CA and user CA, the
//! recording key, and the certificates signed with them.
//!
//! * The **host CA** signs a host certificate per target name, presented on the
//!   inner connection of `ssh -J`, so that clients trust every target through
//!   one `@cert-authority` line.
//! * The **user CA** signs a fresh, minutes-long user certificate for each node
//!   login; nodes trust it through `TrustedUserCAKeys`.
//! * [`kube`]: each cluster's client-signing CA, for Kubernetes credentials.

pub mod kube;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use russh::keys::ssh_key::{self, LineEnding, certificate};
use russh::keys::{Algorithm, Certificate, PrivateKey, PublicKey};

/// File names inside a key directory made by `bastion ca init`.
pub const HOST_KEY: &str = "host_ed25519";
pub const HOST_CA: &str = "host_ca_ed25519";
pub const USER_CA: &str = "user_ca_ed25519";
pub const RECORDING_KEY: &str = "recording_ed25519";

/// Certificates are back-dated this much to tolerate clock skew between the
/// bastion and nodes.
const SKEW: Duration = Duration::from_secs(60);

/// Creates a fresh Ed25519 private key.
pub fn generate_key(comment: &str) -> Result<PrivateKey> {
    let mut rng = rand::rng();
    let mut key = PrivateKey::random(&mut rng, Algorithm::Ed25519).context("generating an Ed25519 key")?;
    key.set_comment(comment);
    Ok(key)
}

/// Writes a private key with mode 0600, refusing to overwrite an existing file.
pub fn write_private_key(path: &Path, key: &PrivateKey) -> Result<()> {
    let pem = key.to_openssh(LineEnding::LF).context("encoding private key")?;
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(pem.as_bytes())?;
    f.sync_all()?;
    let pub_path = path.with_extension("pub");
    let line = key.public_key().to_openssh().context("encoding public key")?;
    fs::write(&pub_path, format!("{line}\n")).with_context(|| format!("writing {}", pub_path.display()))?;
    Ok(())
}

/// Reads a private key, refusing one that others can read.
pub fn read_private_key(path: &Path) -> Result<PrivateKey> {
    let meta = fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        bail!(
            "{} is readable by group or others (mode {:o}); run `chmod 600 {}`",
            path.display(),
            meta.permissions().mode() & 0o777,
            path.display()
        );
    }
    let key = PrivateKey::read_openssh_file(path).with_context(|| format!("parsing {}", path.display()))?;
    if key.is_encrypted() {
        bail!(
            "{} is passphrase-protected; the bastion needs it unencrypted",
            path.display()
        );
    }
    Ok(key)
}

/// `bastion ca init DIR`: creates all key material, never overwriting.
pub fn init(dir: &Path) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    let mut made = Vec::new();
    for (name, comment) in [
        (HOST_KEY, "bastion host key"),
        (HOST_CA, "bastion host CA"),
        (USER_CA, "bastion user CA"),
        (RECORDING_KEY, "bastion recording key"),
    ] {
        let path = dir.join(name);
        if path.exists() {
            continue;
        }
        write_private_key(&path, &generate_key(comment)?)?;
        made.push(path);
    }
    Ok(made)
}

fn random_serial() -> u64 {
    rand::random()
}

/// The key material a running bastion holds.
pub struct Authority {
    pub host_key: PrivateKey,
    pub host_ca: PrivateKey,
    pub user_ca: PrivateKey,
}

impl Authority {
    pub fn load(host_key: &Path, host_ca: &Path, user_ca: &Path) -> Result<Self> {
        Ok(Authority {
            host_key: read_private_key(host_key)?,
            host_ca: read_private_key(host_ca)?,
            user_ca: read_private_key(user_ca)?,
        })
    }

    /// A host certificate for the bastion's host key naming `principals`
    /// (target names, or the bastion's own names), valid for `validity`.
    pub fn host_certificate(&self, principals: &[&str], key_id: &str, validity: Duration) -> Result<Certificate> {
        let now = crate::time::now().max(0) as u64;
        let mut b = certificate::Builder::new_with_random_nonce(
            &mut rand::rng(),
            self.host_key.public_key().key_data().clone(),
            now.saturating_sub(SKEW.as_secs()),
            now + validity.as_secs(),
        )?;
        b.serial(random_serial())?;
        b.cert_type(certificate::CertType::Host)?;
        b.key_id(key_id)?;
        for p in principals {
            b.valid_principal(*p)?;
        }
        Ok(b.sign(&self.host_ca)?)
    }

    /// A fresh key pair and a user certificate for it, valid for `validity`
    /// (back-dated by a minute), for logging in to a node as `login`.
    /// `key_id` names the user and session so node logs say who it was.
    pub fn node_login_certificate(
        &self,
        login: &str,
        key_id: &str,
        validity: Duration,
        allow_port_forwarding: bool,
    ) -> Result<(PrivateKey, Certificate)> {
        let key = generate_key(key_id)?;
        let now = crate::time::now().max(0) as u64;
        let mut b = certificate::Builder::new_with_random_nonce(
            &mut rand::rng(),
            key.public_key().key_data().clone(),
            now.saturating_sub(SKEW.as_secs()),
            now + validity.as_secs(),
        )?;
        b.serial(random_serial())?;
        b.cert_type(certificate::CertType::User)?;
        b.key_id(key_id)?;
        b.valid_principal(login)?;
        // Only what a relayed session needs: a terminal, and forwarding where
        // the target allows it. No agent or X11 forwarding, no user rc.
        b.extension("permit-pty", "")?;
        if allow_port_forwarding {
            b.extension("permit-port-forwarding", "")?;
        }
        let cert = b.sign(&self.user_ca)?;
        Ok((key, cert))
    }
}

/// The OpenSSH public line of the key in `path`, as nodes put the user CA
/// in `TrustedUserCAKeys` and clients pin the bastion's host key.
pub fn public_key_line(path: &Path) -> Result<String> {
    Ok(read_private_key(path)?.public_key().to_openssh()?)
}

/// The line clients put in `known_hosts` to trust, for hosts matching
/// `pattern`, every host certificate the host CA in `host_ca` signs.
pub fn known_hosts_line(pattern: &str, host_ca: &Path) -> Result<String> {
    Ok(format!("@cert-authority {pattern} {}", public_key_line(host_ca)?))
}

/// Checks a node's host key against pins and an optional host CA.
/// `name` is the target name the certificate must name.
pub fn verify_node_host_key(
    presented: &russh::keys::PublicKeyOrCertificate,
    pins: &[PublicKey],
    host_ca: Option<&PublicKey>,
    name: &str,
) -> std::result::Result<(), String> {
    match presented {
        russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => {
            if pins.iter().any(|p| p.key_data() == key.key_data()) {
                Ok(())
            } else {
                Err(format!(
                    "host key {} of target {name} is not the pinned one",
                    key.fingerprint(ssh_key::HashAlg::Sha256)
                ))
            }
        }
        russh::keys::PublicKeyOrCertificate::Certificate(cert) => {
            let Some(ca) = host_ca else {
                // A pinned key inside a certificate still counts as pinned.
                let inner = cert.public_key();
                return if pins.iter().any(|p| p.key_data() == inner) {
                    Ok(())
                } else {
                    Err(format!(
                        "target {name} presented a host certificate but no host CA is configured for it"
                    ))
                };
            };
            if cert.cert_type() != certificate::CertType::Host {
                return Err(format!("target {name} presented a user certificate as host key"));
            }
            cert.validate_at(
                crate::time::now().max(0) as u64,
                [ca.fingerprint(ssh_key::HashAlg::Sha256)].iter(),
            )
            .map_err(|e| format!("host certificate of target {name} is not valid: {e}"))?;
            if !cert.valid_principals().iter().any(|p| p == name) {
                return Err(format!("host certificate of target {name} does not name it"));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authority() -> Authority {
        Authority {
            host_key: generate_key("h").unwrap(),
            host_ca: generate_key("hc").unwrap(),
            user_ca: generate_key("uc").unwrap(),
        }
    }

    #[test]
    fn node_certificate_is_short_lived_and_names_the_login() {
        let a = authority();
        let (_, cert) = a
            .node_login_certificate("root", "alice session=1", Duration::from_secs(300), false)
            .unwrap();
        assert_eq!(cert.valid_principals(), ["root"]);
        assert_eq!(cert.key_id(), "alice session=1");
        let span = cert.valid_before() - cert.valid_after();
        assert_eq!(span, 360);
        assert!(cert.extensions().contains_key("permit-pty"));
        assert!(!cert.extensions().contains_key("permit-agent-forwarding"));
        assert!(!cert.extensions().contains_key("permit-port-forwarding"));
        let fp = a.user_ca.public_key().fingerprint(ssh_key::HashAlg::Sha256);
        cert.validate([fp].iter()).unwrap();
    }

    #[test]
    fn host_certificate_verifies_against_its_ca_and_name() {
        let a = authority();
        let cert = a
            .host_certificate(&["node-1"], "node-1", Duration::from_secs(3600))
            .unwrap();
        let presented = russh::keys::PublicKeyOrCertificate::Certificate(cert);
        let ca = a.host_ca.public_key().clone();
        assert!(verify_node_host_key(&presented, &[], Some(&ca), "node-1").is_ok());
        assert!(verify_node_host_key(&presented, &[], Some(&ca), "node-2").is_err());
        let other = generate_key("x").unwrap().public_key().clone();
        assert!(verify_node_host_key(&presented, &[], Some(&other), "node-1").is_err());
    }

    #[test]
    fn pinned_key_must_match() {
        let k = generate_key("n").unwrap().public_key().clone();
        let presented = russh::keys::PublicKeyOrCertificate::PublicKey {
            key: k.clone(),
            hash_alg: None,
        };
        assert!(verify_node_host_key(&presented, std::slice::from_ref(&k), None, "n").is_ok());
        let other = generate_key("o").unwrap().public_key().clone();
        let e = verify_node_host_key(&presented, &[other], None, "n").unwrap_err();
        assert!(e.contains("not the pinned one"));
    }

    #[test]
    fn init_makes_private_files_and_never_overwrites() {
        let dir = std::env::temp_dir().join(format!("bastion-ca-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let made = init(&dir).unwrap();
        assert_eq!(made.len(), 4);
        for p in &made {
            assert_eq!(fs::metadata(p).unwrap().permissions().mode() & 0o777, 0o600);
            read_private_key(p).unwrap();
        }
        assert!(init(&dir).unwrap().is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }
}
