//! Building an [`LdapDirectory`] from `[directory.ldap]`: every setting is
//! checked, the CA bundle and the service password are read, and nothing
//! connects, so that a server down at start-up fails logins closed instead of
//! stopping the bastion. A setting that is wrong is refused here, by name.

use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use super::filter::{DEFAULT_AD_FILTER, DEFAULT_OPENLDAP_FILTER};
use super::url::parse_url;
use super::{Flavor, LdapConfig, LdapDirectory, Secret};

/// Why an LDAP directory could not be set up from its configuration.
#[derive(Debug, Clone, thiserror::Error)]
#[error("ldap directory: {0}")]
pub struct LdapSetupError(String);

pub(super) fn setup_err(msg: impl Into<String>) -> LdapSetupError {
    LdapSetupError(msg.into())
}

impl LdapDirectory {
    /// Checks the configuration, reads the CA bundle and the service
    /// password. Does not connect: a server that is down at start-up makes
    /// logins fail closed, not the bastion refuse to start.
    pub fn new(cfg: LdapConfig, base_dir: &Path) -> Result<LdapDirectory, LdapSetupError> {
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base_dir.join(p)
            }
        };
        let server = parse_url(&cfg.url, cfg.starttls)?;
        let tls = tls_config(&resolve(&cfg.ca_file))?;
        let password = read_password(&resolve(&cfg.bind_password_file))?;
        if cfg.bind_dn.trim().is_empty() {
            return Err(setup_err("bind_dn is empty"));
        }
        if cfg.base_dn.trim().is_empty() {
            return Err(setup_err("base_dn is empty"));
        }
        let user_filter = user_filter(&cfg)?;
        let login_attribute = attribute_names(&cfg)?;
        check_limits(&cfg)?;
        Ok(LdapDirectory {
            server,
            tls,
            bind_dn: cfg.bind_dn,
            bind_password: Secret(password),
            base_dn: cfg.base_dn,
            user_filter,
            login_attribute,
            flavor: cfg.flavor,
            ssh_key_attribute: cfg.ssh_key_attribute,
            connect_timeout: cfg.connect_timeout,
            operation_timeout: cfg.operation_timeout,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(cfg.pool_size),
            pool_size: cfg.pool_size,
        })
    }
}

/// The service password from its file (line ends trimmed); an empty one is
/// refused, and one that others can read is warned about.
fn read_password(pw_path: &Path) -> Result<String, LdapSetupError> {
    let password = std::fs::read_to_string(pw_path)
        .map_err(|e| setup_err(format!("bind_password_file {}: {e}", pw_path.display())))?;
    let password = password.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        return Err(setup_err(format!("bind_password_file {}: empty", pw_path.display())));
    }
    warn_if_readable_by_others(pw_path);
    Ok(password)
}

/// The user filter (default per flavor), which must hold `{user}` and parse.
fn user_filter(cfg: &LdapConfig) -> Result<String, LdapSetupError> {
    let user_filter = cfg.user_filter.clone().unwrap_or_else(|| {
        match cfg.flavor {
            Flavor::ActiveDirectory => DEFAULT_AD_FILTER,
            Flavor::OpenLdap => DEFAULT_OPENLDAP_FILTER,
        }
        .to_string()
    });
    if !user_filter.contains("{user}") {
        return Err(setup_err(format!(
            "user_filter {user_filter:?} has no {{user}} placeholder"
        )));
    }
    if ldap3::parse_filter(user_filter.replace("{user}", "probe")).is_err() {
        return Err(setup_err(format!(
            "user_filter {user_filter:?} is not a valid LDAP filter"
        )));
    }
    Ok(user_filter)
}

/// The login attribute (default per flavor); it and the SSH key attribute
/// must be attribute names.
fn attribute_names(cfg: &LdapConfig) -> Result<String, LdapSetupError> {
    let login_attribute = cfg.login_attribute.clone().unwrap_or_else(|| {
        match cfg.flavor {
            Flavor::ActiveDirectory => "sAMAccountName",
            Flavor::OpenLdap => "uid",
        }
        .to_string()
    });
    if !is_attribute_name(&login_attribute) {
        return Err(setup_err(format!(
            "login_attribute {login_attribute:?} is not an attribute name"
        )));
    }
    if let Some(a) = &cfg.ssh_key_attribute
        && !is_attribute_name(a)
    {
        return Err(setup_err(format!("ssh_key_attribute {a:?} is not an attribute name")));
    }
    Ok(login_attribute)
}

/// Timeouts above zero, and a pool of 1 to 64 connections.
fn check_limits(cfg: &LdapConfig) -> Result<(), LdapSetupError> {
    if cfg.connect_timeout.is_zero() || cfg.operation_timeout.is_zero() {
        return Err(setup_err("connect_timeout and operation_timeout must be above zero"));
    }
    if cfg.pool_size == 0 || cfg.pool_size > 64 {
        return Err(setup_err(format!(
            "pool_size {} must be between 1 and 64",
            cfg.pool_size
        )));
    }
    Ok(())
}

/// A plausible LDAP attribute name: a letter, then letters, digits and `-`.
fn is_attribute_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// A TLS client configuration trusting exactly the CAs of `ca_file`.
fn tls_config(ca_file: &Path) -> Result<Arc<rustls::ClientConfig>, LdapSetupError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let pem = std::fs::read(ca_file).map_err(|e| setup_err(format!("ca_file {}: {e}", ca_file.display())))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| setup_err(format!("ca_file {}: {e}", ca_file.display())))?;
        roots
            .add(cert)
            .map_err(|e| setup_err(format!("ca_file {}: unusable certificate: {e}", ca_file.display())))?;
    }
    if roots.is_empty() {
        return Err(setup_err(format!(
            "ca_file {}: no PEM certificate in it",
            ca_file.display()
        )));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| setup_err(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Warns (does not refuse) when the password file is open to group or others.
fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path)
            && m.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(file = %path.display(), "bind_password_file is readable by group or others; chmod 600 it");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn config_deserializes_with_defaults() {
        let cfg: LdapConfig = toml::from_str(
            r#"
            url = "ldaps://dc1.corp.test"
            ca_file = "ca.pem"
            bind_dn = "CN=svc,CN=Users,DC=corp,DC=test"
            bind_password_file = "svc.pw"
            base_dn = "DC=corp,DC=test"
            "#,
        )
        .unwrap();
        assert_eq!(cfg.flavor, Flavor::ActiveDirectory);
        assert_eq!(cfg.connect_timeout, Duration::from_secs(5));
        assert_eq!(cfg.operation_timeout, Duration::from_secs(10));
        assert_eq!(cfg.pool_size, 4);
        assert!(!cfg.starttls);
        let cfg: LdapConfig = toml::from_str(
            r#"
            url = "ldap://ldap1:389"
            starttls = true
            ca_file = "ca.pem"
            bind_dn = "cn=svc"
            bind_password_file = "svc.pw"
            base_dn = "dc=corp,dc=test"
            flavor = "openldap"
            ssh_key_attribute = "sshPublicKey"
            connect_timeout = "1s 500ms"
            operation_timeout = "2m"
            pool_size = 2
            "#,
        )
        .unwrap();
        assert_eq!(cfg.flavor, Flavor::OpenLdap);
        assert_eq!(cfg.connect_timeout, Duration::from_millis(1500));
        assert_eq!(cfg.operation_timeout, Duration::from_secs(120));
        let bad = toml::from_str::<LdapConfig>(
            "url = \"ldaps://x\"\nca_file = \"c\"\nbind_dn = \"d\"\nbind_password_file = \"p\"\nbase_dn = \"b\"\nbogus = 1\n",
        );
        assert!(bad.unwrap_err().to_string().contains("bogus"));
        let bad = toml::from_str::<LdapConfig>(
            "url = \"ldaps://x\"\nca_file = \"c\"\nbind_dn = \"d\"\nbind_password_file = \"p\"\nbase_dn = \"b\"\nconnect_timeout = \"soon\"\n",
        );
        assert!(bad.unwrap_err().to_string().contains("invalid duration"));
    }

    #[test]
    fn construction_checks() {
        let dir = std::env::temp_dir().join(format!("bastion-ldap-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A self-signed certificate is not needed to test the file checks:
        // an empty bundle and a missing file must both be refused.
        std::fs::write(dir.join("empty.pem"), "").unwrap();
        std::fs::write(dir.join("svc.pw"), "secret\n").unwrap();
        let cfg = |url: &str, starttls: bool, ca: &str| LdapConfig {
            url: url.into(),
            starttls,
            ca_file: ca.into(),
            bind_dn: "cn=svc".into(),
            bind_password_file: "svc.pw".into(),
            base_dn: "dc=corp,dc=test".into(),
            user_filter: None,
            login_attribute: None,
            flavor: Flavor::OpenLdap,
            ssh_key_attribute: None,
            connect_timeout: Duration::from_secs(1),
            operation_timeout: Duration::from_secs(1),
            pool_size: 1,
        };
        let e = LdapDirectory::new(cfg("ldap://x:389", false, "empty.pem"), &dir)
            .unwrap_err()
            .to_string();
        assert!(e.contains("in clear"), "{e}");
        let e = LdapDirectory::new(cfg("ldaps://x", false, "empty.pem"), &dir)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
        let e = LdapDirectory::new(cfg("ldaps://x", false, "missing.pem"), &dir)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.pem"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
