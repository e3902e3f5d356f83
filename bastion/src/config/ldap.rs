//! `[directory.ldap]`: how to reach and read Active Directory or OpenLDAP.
//! Parsed with the rest of the file, so `config check` names the key and the
//! line of a mistake here; files it names are read when the directory opens.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Which kind of server answers: decides the account-state attributes and
/// how nested groups are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Flavor {
    #[serde(rename = "active_directory")]
    ActiveDirectory,
    #[serde(rename = "openldap")]
    OpenLdap,
}

/// `[directory.ldap]`-style settings. Relative paths are resolved against the
/// config file's directory (`base_dir` of `LdapDirectory::new`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldaps://host:636`, or `ldap://host:389` together with `starttls = true`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS before anything else.
    #[serde(default)]
    pub starttls: bool,
    /// PEM bundle of the CAs trusted for the server certificate (required;
    /// the system store is not used).
    pub ca_file: PathBuf,
    /// The service account that searches users and groups.
    pub bind_dn: String,
    /// File holding the service account's password (trailing newline ignored).
    pub bind_password_file: PathBuf,
    /// Where users and groups are searched (subtree).
    pub base_dn: String,
    /// User search filter; `{user}` is replaced by the escaped login name.
    /// Default: by `sAMAccountName` or `userPrincipalName` on AD, by `uid` on OpenLDAP.
    #[serde(default)]
    pub user_filter: Option<String>,
    /// Attribute holding the canonical login name (default `sAMAccountName`
    /// on AD, `uid` on OpenLDAP).
    #[serde(default)]
    pub login_attribute: Option<String>,
    /// `active_directory` (default) or `openldap`.
    #[serde(default = "default_flavor")]
    pub flavor: Flavor,
    /// Attribute with the user's SSH public keys (`sshPublicKey`, or
    /// `altSecurityIdentities` with values `SSHKey:ssh-ed25519 AAAA…`).
    #[serde(default)]
    pub ssh_key_attribute: Option<String>,
    /// TCP connect plus TLS handshake (humantime, default `5s`).
    #[serde(default = "default_connect_timeout", deserialize_with = "de_duration")]
    pub connect_timeout: Duration,
    /// Each bind or search (humantime, default `10s`).
    #[serde(default = "default_operation_timeout", deserialize_with = "de_duration")]
    pub operation_timeout: Duration,
    /// Service connections kept open (and the most used at once).
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
}

fn default_flavor() -> Flavor {
    Flavor::ActiveDirectory
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_operation_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_pool_size() -> usize {
    4
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(s.trim()).map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}")))
}
