//! The bastion's configuration file: TOML parsed into typed settings.
//!
//! Parsing is pure (text in, [`Config`] or [`ConfigError`] out) so that
//! `bastion config check` and `bastion serve` report the same errors, and so
//! that every error names the key and the line it sits on.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

mod access;
mod kube;
mod ldap;
mod recording;
mod ssh_address;
mod startups;
pub use access::{AlertsConfig, AuditConfig, WebhookConfig};
pub use kube::{Cluster, KeyType};
pub use ldap::{Flavor, LdapConfig};
pub use recording::{RecordingConfig, S3StoreConfig, StoreConfig, parse_size};
pub use ssh_address::SshAddress;
pub use startups::Startups;

/// `server.max_startups` unless set: it takes more than 50 source addresses
/// (or IPv6 /64s), each at the default `max_startups_per_source` of 8, before
/// early drop refuses anyone else; `full` stays well under `max_connections`.
pub const DEFAULT_MAX_STARTUPS: Startups = Startups {
    start: 400,
    rate: 30,
    full: 800,
};

/// A configuration error that points at the offending key and line.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: `{key}`: {message}")]
pub struct ConfigError {
    /// The file the error is in, as given by the operator.
    pub file: String,
    /// 1-based line of the offending value (0 when the file could not be read).
    pub line: usize,
    /// Dotted path of the key, e.g. `targets[1].address`.
    pub key: String,
    /// What is wrong and, where it helps, what would be right.
    pub message: String,
}

/// The whole configuration, with paths resolved against the config file's directory.
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory of the config file; relative paths in the file are resolved against it.
    pub base_dir: PathBuf,
    pub server: ServerConfig,
    pub recording: RecordingConfig,
    pub targets: Vec<Target>,
    pub users: Vec<User>,
    pub directory: DirectoryConfig,
    pub auth: AuthConfig,
    pub state: StateConfig,
    pub emergency: Vec<EmergencyAccount>,
    /// Who may reach what (`[[rules]]`, target `groups`, `[break_glass]`).
    pub policy: policy::Policy,
    /// The line each of `policy.rules` starts on, for `config check`.
    pub rule_lines: Vec<usize>,
    pub alerts: AlertsConfig,
    pub audit: AuditConfig,
    /// Kubernetes clusters `kubeconfig` issues credentials for.
    pub clusters: Vec<Cluster>,
}

/// Which directory proves users.
#[derive(Debug, Clone)]
pub enum DirectoryConfig {
    /// The `[[users]]` of this file.
    Embedded,
    /// LDAP / Active Directory; `line` points at the table for errors found
    /// when the directory opens (files it names).
    Ldap { config: Box<LdapConfig>, line: usize },
}

/// A second factor or first factor, as named in `auth.methods`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Factor {
    /// The directory password (keyboard-interactive `Password:`).
    Password,
    /// A registered plain SSH key.
    PublicKey,
    /// A registered FIDO key (`sk-ssh-ed25519@openssh.com`, `sk-ecdsa-sha2-nistp256@openssh.com`).
    SecurityKey,
    /// A TOTP code (keyboard-interactive `Verification code:`).
    Totp,
}

impl Factor {
    pub fn parse(s: &str) -> Option<Factor> {
        Some(match s {
            "password" => Factor::Password,
            "publickey" => Factor::PublicKey,
            "sk" => Factor::SecurityKey,
            "totp" => Factor::Totp,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Factor::Password => "password",
            Factor::PublicKey => "publickey",
            Factor::SecurityKey => "sk",
            Factor::Totp => "totp",
        }
    }
}

/// How users prove who they are.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Combinations of factors that suffice; any one combination is enough.
    pub methods: Vec<Vec<Factor>>,
    /// Failures before an account (or source) is locked.
    pub max_failures: u32,
    /// How long a lock lasts.
    pub lockout: Duration,
    /// How often live sessions are re-validated against the directory.
    pub recheck_interval: Duration,
    /// Name shown in authenticator apps.
    pub totp_issuer: String,
    /// How long an enrollment token from `bastion users enroll-token` is valid.
    pub enroll_token_ttl: Duration,
    /// If set, a user without TOTP may enroll without a token until this
    /// moment (unix seconds): the first-login window.
    pub enrollment_open_until: Option<i64>,
}

/// Where shared state lives (TOTP seeds, used codes, failure counters, tokens).
#[derive(Debug, Clone)]
pub struct StateConfig {
    pub db: PathBuf,
    /// 32-byte key that encrypts TOTP seeds at rest.
    pub key_file: PathBuf,
}

/// An account that works while the directory is down: FIDO key only,
/// always break-glass.
#[derive(Debug, Clone)]
pub struct EmergencyAccount {
    pub name: String,
    pub keys: Vec<russh::keys::PublicKey>,
}

/// Listener, keys and connection hygiene.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// The bastion's own host key (outer connections).
    pub host_key: PathBuf,
    /// Signs the host certificates the inner connections present for targets.
    pub host_ca: PathBuf,
    /// Signs the short-lived user certificates the bastion logs in to nodes with.
    pub user_ca: PathBuf,
    /// Signs recording manifests (used by the recorder).
    pub recording_key: PathBuf,
    /// A session with no traffic in either direction for this long is closed.
    pub idle_timeout: Duration,
    /// Hard cap on the length of any session.
    pub max_session: Duration,
    /// Keepalive interval: TCP keepalive probes towards clients (3 missed and
    /// the connection is dropped), SSH keepalives towards nodes.
    pub keepalive_interval: Duration,
    /// Concurrent connections from one source address.
    pub max_connections_per_source: usize,
    /// Concurrent connections in total.
    pub max_connections: usize,
    /// How long a client may take from connecting to authenticated.
    pub login_grace_time: Duration,
    /// Unauthenticated connections in total (`start:rate:full`, early drop).
    pub max_startups: Startups,
    /// Unauthenticated connections from one source address (IPv6: its /64).
    pub max_startups_per_source: usize,
    /// How long SIGTERM waits for running sessions before closing them.
    pub shutdown_grace: Duration,
    /// Lifetime of the certificate used to log in to a node.
    pub node_cert_validity: Duration,
    /// Timeout for the TCP connect and SSH handshake to a node.
    pub node_connect_timeout: Duration,
    /// Environment variables passed on to nodes (exact names or `PREFIX*`).
    pub accept_env: Vec<String>,
    /// `HOST` or `HOST:PORT` engineers reach the bastion at, written into
    /// exec-plugin kubeconfigs; unset, derived from `listen` and the host name.
    pub public_address: Option<String>,
}

/// A node the bastion can reach.
#[derive(Debug, Clone)]
pub struct Target {
    /// Name users type (`root@node-1`); also the principal of its host certificate.
    pub name: String,
    /// Where the node's sshd listens.
    pub address: String,
    pub labels: BTreeMap<String, String>,
    /// Logins the bastion will sign certificates for on this node.
    pub logins: Vec<String>,
    /// Pinned host keys (OpenSSH public key lines); any one matching is enough.
    pub host_keys: Vec<russh::keys::PublicKey>,
    /// A host CA whose certificates for `name` are accepted.
    pub host_ca: Option<russh::keys::PublicKey>,
    /// Whether `-L`/`-D` forwards through this node are allowed.
    pub allow_local_forwarding: bool,
    /// Whether `-R` forwards on this node are allowed.
    pub allow_remote_forwarding: bool,
    /// Shorthand for a rule: members of these directory groups (CN or DN)
    /// may use any of the target's logins. Empty: only `[[rules]]` grant it.
    pub groups: Vec<String>,
}

impl Target {
    /// The target as the policy crate sees it.
    pub fn as_policy(&self) -> policy::Target<'_> {
        policy::Target {
            name: &self.name,
            labels: &self.labels,
            logins: &self.logins,
            allow_local_forwarding: self.allow_local_forwarding,
            allow_remote_forwarding: self.allow_remote_forwarding,
        }
    }
}

/// A user of the embedded directory.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    /// Argon2 PHC string; absent means password login is impossible.
    pub password_hash: Option<String>,
    pub keys: Vec<russh::keys::PublicKey>,
    pub groups: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: Spanned<RawServer>,
    #[serde(default)]
    recording: Option<Spanned<recording::RawRecording>>,
    #[serde(default)]
    targets: Vec<Spanned<RawTarget>>,
    #[serde(default)]
    users: Vec<Spanned<RawUser>>,
    #[serde(default)]
    directory: Option<Spanned<RawDirectory>>,
    #[serde(default)]
    auth: Option<Spanned<RawAuth>>,
    #[serde(default)]
    state: Option<Spanned<RawState>>,
    #[serde(default)]
    emergency: Vec<Spanned<RawEmergency>>,
    #[serde(default)]
    rules: Vec<Spanned<access::RawRule>>,
    #[serde(default)]
    break_glass: Option<Spanned<access::RawBreakGlass>>,
    #[serde(default)]
    alerts: Option<Spanned<access::RawAlerts>>,
    #[serde(default)]
    audit: Option<Spanned<access::RawAudit>>,
    #[serde(default)]
    clusters: Vec<Spanned<kube::RawCluster>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDirectory {
    kind: Spanned<String>,
    #[serde(default)]
    ldap: Option<Spanned<toml::Table>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    methods: Option<Spanned<Vec<Vec<String>>>>,
    max_failures: Option<u32>,
    lockout: Option<Spanned<String>>,
    recheck_interval: Option<Spanned<String>>,
    totp_issuer: Option<String>,
    enroll_token_ttl: Option<Spanned<String>>,
    enrollment_open_until: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    db: Spanned<String>,
    key_file: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmergency {
    name: Spanned<String>,
    keys: Spanned<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Spanned<String>,
    host_key: Spanned<String>,
    host_ca: Spanned<String>,
    user_ca: Spanned<String>,
    recording_key: Spanned<String>,
    idle_timeout: Option<Spanned<String>>,
    max_session: Option<Spanned<String>>,
    keepalive_interval: Option<Spanned<String>>,
    max_connections_per_source: Option<usize>,
    max_connections: Option<usize>,
    login_grace_time: Option<Spanned<String>>,
    max_startups: Option<Spanned<String>>,
    max_startups_per_source: Option<usize>,
    shutdown_grace: Option<Spanned<String>>,
    node_cert_validity: Option<Spanned<String>>,
    node_connect_timeout: Option<Spanned<String>>,
    accept_env: Option<Vec<String>>,
    public_address: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: Spanned<String>,
    address: Spanned<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    logins: Spanned<Vec<String>>,
    #[serde(default)]
    host_keys: Vec<Spanned<String>>,
    host_ca: Option<Spanned<String>>,
    #[serde(default = "default_true")]
    allow_local_forwarding: bool,
    #[serde(default)]
    allow_remote_forwarding: bool,
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: Spanned<String>,
    password_hash: Option<Spanned<String>>,
    #[serde(default)]
    keys: Vec<Spanned<String>>,
    #[serde(default)]
    groups: Vec<String>,
}

fn default_true() -> bool {
    true
}

/// Maps byte offsets of the source to 1-based line numbers.
struct Lines<'a> {
    text: &'a str,
    file: &'a str,
}

impl Lines<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text[..end].bytes().filter(|b| *b == b'\n').count() + 1
    }

    fn error<T>(&self, key: impl Into<String>, at: &Spanned<T>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            line: self.line_of(at.span().start),
            key: key.into(),
            message: message.into(),
        }
    }
}

impl Config {
    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: 0,
            key: "-".into(),
            message: format!("cannot read the file: {e}"),
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base = if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        };
        Config::parse(&text, &path.display().to_string(), &base)
    }

    /// Parses config text; `file` is used in errors and `base_dir` resolves relative paths.
    pub fn parse(text: &str, file: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let lines = Lines { text, file };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| lines.line_of(s.start)).unwrap_or(0);
            ConfigError {
                file: file.to_string(),
                line,
                key: key_of_toml_error(&e),
                message: e.message().trim().to_string(),
            }
        })?;
        let path = |s: &Spanned<String>| -> PathBuf {
            let p = PathBuf::from(s.get_ref());
            if p.is_absolute() { p } else { base_dir.join(p) }
        };
        let duration = |key: &str, v: &Option<Spanned<String>>, default: Duration| match v {
            None => Ok(default),
            Some(s) => humantime::parse_duration(s.get_ref()).map_err(|e| {
                lines.error(
                    format!("server.{key}"),
                    s,
                    format!(
                        "`{}` is not a duration ({e}); write e.g. \"30s\", \"15m\", \"8h\"",
                        s.get_ref()
                    ),
                )
            }),
        };
        let rs = raw.server.get_ref();
        let listen = rs.listen.get_ref().parse::<SocketAddr>().map_err(|_| {
            lines.error(
                "server.listen",
                &rs.listen,
                format!(
                    "`{}` is not an address:port such as \"0.0.0.0:22\"",
                    rs.listen.get_ref()
                ),
            )
        })?;
        let server = ServerConfig {
            listen,
            host_key: path(&rs.host_key),
            host_ca: path(&rs.host_ca),
            user_ca: path(&rs.user_ca),
            recording_key: path(&rs.recording_key),
            idle_timeout: duration("idle_timeout", &rs.idle_timeout, Duration::from_secs(15 * 60))?,
            max_session: duration("max_session", &rs.max_session, Duration::from_secs(8 * 3600))?,
            keepalive_interval: duration("keepalive_interval", &rs.keepalive_interval, Duration::from_secs(30))?,
            max_connections_per_source: rs.max_connections_per_source.unwrap_or(50),
            max_connections: rs.max_connections.unwrap_or(2000),
            login_grace_time: duration("login_grace_time", &rs.login_grace_time, Duration::from_secs(90))?,
            max_startups: match &rs.max_startups {
                None => DEFAULT_MAX_STARTUPS,
                Some(v) => Startups::parse(v.get_ref()).map_err(|e| lines.error("server.max_startups", v, e))?,
            },
            max_startups_per_source: rs.max_startups_per_source.unwrap_or(8),
            shutdown_grace: duration("shutdown_grace", &rs.shutdown_grace, Duration::from_secs(30))?,
            node_cert_validity: duration("node_cert_validity", &rs.node_cert_validity, Duration::from_secs(300))?,
            node_connect_timeout: duration(
                "node_connect_timeout",
                &rs.node_connect_timeout,
                Duration::from_secs(10),
            )?,
            accept_env: rs
                .accept_env
                .clone()
                .unwrap_or_else(|| vec!["LANG".into(), "LC_*".into()]),
            public_address: match &rs.public_address {
                None => None,
                Some(a) => {
                    let text = a.get_ref().trim();
                    if text.contains(|c: char| c.is_whitespace() || c == '@') || SshAddress::parse(text).is_none() {
                        return Err(lines.error(
                            "server.public_address",
                            a,
                            format!("`{text}` is not a HOST or HOST:PORT such as \"bastion.example.com:22\""),
                        ));
                    }
                    Some(text.to_string())
                }
            },
        };
        if server.node_cert_validity < Duration::from_secs(30) || server.node_cert_validity > Duration::from_secs(3600)
        {
            return Err(lines.error(
                "server.node_cert_validity",
                rs.node_cert_validity.as_ref().expect("default is in range"),
                "must be between 30s and 1h: node certificates are meant to be short-lived",
            ));
        }
        let recording = recording::parse_recording(&lines, raw.recording.as_ref(), base_dir, &path)?;

        let mut targets: Vec<Target> = Vec::new();
        let mut target_lines = Vec::new();
        for (i, t) in raw.targets.iter().enumerate() {
            target_lines.push(lines.line_of(t.span().start));
            let t = t.get_ref();
            let key = |k: &str| format!("targets[{i}].{k}");
            let name = t.name.get_ref().clone();
            if !valid_name(&name) {
                return Err(lines.error(
                    key("name"),
                    &t.name,
                    "a target name is letters, digits, '-', '_' and '.' only",
                ));
            }
            if targets.iter().any(|o| o.name == name) {
                return Err(lines.error(key("name"), &t.name, format!("target `{name}` is declared twice")));
            }
            if t.address
                .get_ref()
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
            {
                return Err(lines.error(
                    key("address"),
                    &t.address,
                    format!("`{}` is not host:port", t.address.get_ref()),
                ));
            }
            if t.logins.get_ref().is_empty() {
                return Err(lines.error(key("logins"), &t.logins, "list at least one login"));
            }
            let mut host_keys = Vec::new();
            for (j, k) in t.host_keys.iter().enumerate() {
                host_keys.push(
                    parse_public_key(k.get_ref())
                        .map_err(|e| lines.error(format!("targets[{i}].host_keys[{j}]"), k, e))?,
                );
            }
            let host_ca = match &t.host_ca {
                None => None,
                Some(k) => Some(parse_public_key(k.get_ref()).map_err(|e| lines.error(key("host_ca"), k, e))?),
            };
            if host_keys.is_empty() && host_ca.is_none() {
                return Err(lines.error(
                    key("name"),
                    &t.name,
                    format!(
                        "target `{name}` has neither `host_keys` nor `host_ca`: the bastion never accepts an unknown host key \
                         (pin the key from `ssh-keyscan`, or name the CA that signs its host certificate)"
                    ),
                ));
            }
            targets.push(Target {
                name,
                address: t.address.get_ref().clone(),
                labels: t.labels.clone(),
                logins: t.logins.get_ref().clone(),
                host_keys,
                host_ca,
                allow_local_forwarding: t.allow_local_forwarding,
                allow_remote_forwarding: t.allow_remote_forwarding,
                groups: t.groups.clone(),
            });
        }

        let mut users: Vec<User> = Vec::new();
        for (i, u) in raw.users.iter().enumerate() {
            let u = u.get_ref();
            let key = |k: &str| format!("users[{i}].{k}");
            let name = u.name.get_ref().clone();
            if !valid_name(&name) {
                return Err(lines.error(
                    key("name"),
                    &u.name,
                    "a user name is letters, digits, '-', '_' and '.' only",
                ));
            }
            if users.iter().any(|o| o.name == name) {
                return Err(lines.error(key("name"), &u.name, format!("user `{name}` is declared twice")));
            }
            if let Some(h) = &u.password_hash
                && argon2::PasswordHash::new(h.get_ref()).is_err()
            {
                return Err(lines.error(
                    key("password_hash"),
                    h,
                    "not an argon2 PHC string; make one with `bastion users hash-password`",
                ));
            }
            let mut keys = Vec::new();
            for (j, k) in u.keys.iter().enumerate() {
                keys.push(
                    parse_public_key(k.get_ref()).map_err(|e| lines.error(format!("users[{i}].keys[{j}]"), k, e))?,
                );
            }
            users.push(User {
                name,
                password_hash: u.password_hash.as_ref().map(|h| h.get_ref().clone()),
                keys,
                groups: u.groups.clone(),
            });
        }

        let directory = match &raw.directory {
            None => DirectoryConfig::Embedded,
            Some(d) => {
                let d = d.get_ref();
                match d.kind.get_ref().as_str() {
                    "embedded" => DirectoryConfig::Embedded,
                    "ldap" => match &d.ldap {
                        Some(t) => DirectoryConfig::Ldap {
                            config: Box::new(
                                toml::Value::Table(t.get_ref().clone())
                                    .try_into()
                                    .map_err(|e: toml::de::Error| lines.error("directory.ldap", t, e.message()))?,
                            ),
                            line: lines.line_of(t.span().start),
                        },
                        None => {
                            return Err(lines.error(
                                "directory.kind",
                                &d.kind,
                                "kind = \"ldap\" needs a [directory.ldap] table",
                            ));
                        }
                    },
                    other => {
                        return Err(lines.error(
                            "directory.kind",
                            &d.kind,
                            format!("`{other}` is not a directory kind; use \"embedded\" or \"ldap\""),
                        ));
                    }
                }
            }
        };

        let auth_duration = |key: &str, v: &Option<Spanned<String>>, default: Duration| match v {
            None => Ok(default),
            Some(s) => humantime::parse_duration(s.get_ref()).map_err(|e| {
                lines.error(
                    format!("auth.{key}"),
                    s,
                    format!("`{}` is not a duration ({e})", s.get_ref()),
                )
            }),
        };
        let auth = match &raw.auth {
            None => AuthConfig::default(),
            Some(a) => {
                let a = a.get_ref();
                let methods = match &a.methods {
                    None => AuthConfig::default().methods,
                    Some(m) => {
                        let mut combos = Vec::new();
                        for combo in m.get_ref() {
                            let mut factors = Vec::new();
                            for f in combo {
                                let Some(factor) = Factor::parse(f) else {
                                    return Err(lines.error(
                                        "auth.methods",
                                        m,
                                        format!("`{f}` is not a factor; use password, publickey, sk or totp"),
                                    ));
                                };
                                factors.push(factor);
                            }
                            factors.sort();
                            factors.dedup();
                            if factors.is_empty() {
                                return Err(lines.error("auth.methods", m, "an empty combination would let anyone in"));
                            }
                            combos.push(factors);
                        }
                        if combos.is_empty() {
                            return Err(lines.error("auth.methods", m, "list at least one combination"));
                        }
                        combos
                    }
                };
                let enrollment_open_until = match &a.enrollment_open_until {
                    None => None,
                    Some(s) => Some(
                        humantime::parse_rfc3339_weak(s.get_ref())
                            .map_err(|e| {
                                lines.error(
                                    "auth.enrollment_open_until",
                                    s,
                                    format!("`{}` is not a UTC time like \"2026-12-01 18:00:00\" ({e})", s.get_ref()),
                                )
                            })?
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_secs() as i64)
                            .unwrap_or(0),
                    ),
                };
                let d = AuthConfig::default();
                AuthConfig {
                    methods,
                    max_failures: a.max_failures.unwrap_or(d.max_failures),
                    lockout: auth_duration("lockout", &a.lockout, d.lockout)?,
                    recheck_interval: auth_duration("recheck_interval", &a.recheck_interval, d.recheck_interval)?,
                    totp_issuer: a.totp_issuer.clone().unwrap_or(d.totp_issuer),
                    enroll_token_ttl: auth_duration("enroll_token_ttl", &a.enroll_token_ttl, d.enroll_token_ttl)?,
                    enrollment_open_until,
                }
            }
        };
        let state = match &raw.state {
            None => StateConfig {
                db: base_dir.join("state/bastion.db"),
                key_file: base_dir.join("keys/state.key"),
            },
            Some(st) => StateConfig {
                db: path(&st.get_ref().db),
                key_file: path(&st.get_ref().key_file),
            },
        };
        let mut emergency = Vec::new();
        for (i, e) in raw.emergency.iter().enumerate() {
            let e = e.get_ref();
            let name = e.name.get_ref().clone();
            if !valid_name(&name) {
                return Err(lines.error(
                    format!("emergency[{i}].name"),
                    &e.name,
                    "letters, digits, '-', '_' and '.' only",
                ));
            }
            if users.iter().any(|u| u.name == name) {
                return Err(lines.error(
                    format!("emergency[{i}].name"),
                    &e.name,
                    format!("`{name}` is also a [[users]] entry; an emergency account must stand alone"),
                ));
            }
            let mut keys = Vec::new();
            for (j, k) in e.keys.get_ref().iter().enumerate() {
                let key = parse_public_key(k.get_ref())
                    .map_err(|m| lines.error(format!("emergency[{i}].keys[{j}]"), k, m))?;
                if !is_security_key(&key) {
                    return Err(lines.error(
                        format!("emergency[{i}].keys[{j}]"),
                        k,
                        "emergency accounts take FIDO keys only (sk-ssh-ed25519@openssh.com or sk-ecdsa-sha2-nistp256@openssh.com)",
                    ));
                }
                keys.push(key);
            }
            if keys.is_empty() {
                return Err(lines.error(format!("emergency[{i}].keys"), &e.keys, "list at least one FIDO key"));
            }
            emergency.push(EmergencyAccount { name, keys });
        }

        let with_lines: Vec<(usize, &Target)> = target_lines.iter().copied().zip(targets.iter()).collect();
        let parsed = access::parse_policy(&lines, &raw.rules, &with_lines, raw.break_glass.as_ref(), &server)?;
        let alerts = access::parse_alerts(&lines, raw.alerts.as_ref(), &path)?;
        let clusters = kube::parse_clusters(&lines, &raw.clusters, &path)?;

        Ok(Config {
            policy: parsed.policy,
            rule_lines: parsed.rule_lines,
            alerts,
            audit: access::parse_audit(raw.audit.as_ref(), base_dir, &path),
            base_dir: base_dir.to_path_buf(),
            server,
            recording,
            targets,
            users,
            directory,
            auth,
            state,
            emergency,
            clusters,
        })
    }

    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.name == name)
    }

    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.name == name)
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            methods: vec![
                vec![Factor::Password, Factor::Totp],
                vec![Factor::PublicKey, Factor::Totp],
                vec![Factor::Password, Factor::SecurityKey],
            ],
            max_failures: 10,
            lockout: Duration::from_secs(30 * 60),
            recheck_interval: Duration::from_secs(5 * 60),
            totp_issuer: "bastion".into(),
            enroll_token_ttl: Duration::from_secs(24 * 3600),
            enrollment_open_until: None,
        }
    }
}

/// Whether a key is a FIDO security key (`sk-…@openssh.com`).
pub fn is_security_key(key: &russh::keys::PublicKey) -> bool {
    matches!(
        key.algorithm(),
        russh::keys::Algorithm::SkEd25519 | russh::keys::Algorithm::SkEcdsaSha2NistP256
    )
}

/// Names of users and targets appear in certificates, logs and file names:
/// keep them to a safe alphabet.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.')
}

fn parse_public_key(line: &str) -> Result<russh::keys::PublicKey, String> {
    russh::keys::PublicKey::from_openssh(line.trim())
        .map_err(|e| format!("not an OpenSSH public key line such as \"ssh-ed25519 AAAA…\" ({e})"))
}

fn key_of_toml_error(e: &toml::de::Error) -> String {
    // The toml crate names unknown or missing fields in its message; keep the
    // operator's attention on the line, and name the field when we can.
    let m = e.message();
    for marker in ["unknown field `", "missing field `"] {
        if let Some(rest) = m.split(marker).nth(1)
            && let Some(name) = rest.split('`').next()
        {
            return name.to_string();
        }
    }
    "-".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

    fn base() -> String {
        format!(
            r#"
[server]
listen = "127.0.0.1:2222"
host_key = "keys/host"
host_ca = "keys/host_ca"
user_ca = "keys/user_ca"
recording_key = "keys/rec"

[[targets]]
name = "node-1"
address = "127.0.0.1:2201"
logins = ["root"]
host_keys = ["{KEY}"]
labels = {{ role = "worker" }}

[[users]]
name = "alice"
keys = ["{KEY}"]
groups = ["k8s-ops"]
"#
        )
    }

    #[test]
    fn parses_a_good_config_and_resolves_paths() {
        let c = Config::parse(&base(), "b.toml", Path::new("/etc/bastion")).unwrap();
        assert_eq!(c.server.host_key, PathBuf::from("/etc/bastion/keys/host"));
        assert_eq!(c.targets[0].labels["role"], "worker");
        assert_eq!(c.server.idle_timeout, Duration::from_secs(900));
        assert_eq!(c.users[0].groups, vec!["k8s-ops"]);
    }

    #[test]
    fn ldap_settings_are_checked_with_the_file() {
        let ldap = "\n[directory]\nkind = \"ldap\"\n\n[directory.ldap]\nurl = \"ldaps://dc1.corp.test\"\nca_file = \"ca.pem\"\nbind_dn = \"CN=svc\"\nbind_password_file = \"svc.pw\"\nbase_dn = \"DC=corp\"\n";
        let good = format!("{}{ldap}", base());
        let c = Config::parse(&good, "b.toml", Path::new("/etc/bastion")).unwrap();
        assert!(matches!(&c.directory, DirectoryConfig::Ldap { config, .. } if config.url == "ldaps://dc1.corp.test"));
        let table_line = good.lines().position(|l| l == "[directory.ldap]").unwrap() + 1;
        for (bad, says) in [
            ("operation_timeout = \"soon\"\n", "invalid duration"),
            ("user_filtre = \"(uid={user})\"\n", "user_filtre"),
        ] {
            let e = Config::parse(&format!("{good}{bad}"), "b.toml", Path::new("/etc/bastion")).unwrap_err();
            assert_eq!((e.key.as_str(), e.line), ("directory.ldap", table_line), "{e:?}");
            assert!(e.message.contains(says), "{e:?}");
        }
    }

    #[test]
    fn recording_sizes_have_defaults_and_bad_ones_name_key_and_line() {
        let c = Config::parse(&base(), "b.toml", Path::new("/etc/bastion")).unwrap();
        assert_eq!((c.recording.chunk_bytes, c.recording.flush_bytes), (4 << 20, 256 << 10));
        let text = format!(
            "{}\n[recording]\nchunk_bytes = \"1MiB\"\nflush_bytes = \"64KiB\"\n",
            base()
        );
        let c = Config::parse(&text, "b.toml", Path::new("/etc/bastion")).unwrap();
        assert_eq!((c.recording.chunk_bytes, c.recording.flush_bytes), (1 << 20, 64 << 10));
        let text = format!("{}\n[recording]\nflush_bytes = \"1KiB\"\n", base());
        let e = Config::parse(&text, "b.toml", Path::new(".")).unwrap_err();
        assert_eq!(e.key, "recording.flush_bytes");
        assert_eq!(
            e.line,
            text.lines().position(|l| l.starts_with("flush_bytes")).unwrap() + 1
        );
        assert!(e.to_string().contains("between 4KiB and 64MiB"), "{e}");
        let text = format!(
            "{}\n[recording]\nchunk_bytes = \"64KiB\"\nflush_bytes = \"1MiB\"\n",
            base()
        );
        let e = Config::parse(&text, "b.toml", Path::new(".")).unwrap_err();
        assert_eq!(e.key, "recording.flush_bytes");
        assert!(e.to_string().contains("larger than chunk_bytes (64KiB)"), "{e}");
        let text = format!("{}\n[recording]\nchunk_bytes = \"64KiB\"\n", base());
        let c = Config::parse(&text, "b.toml", Path::new(".")).unwrap();
        assert_eq!(c.recording.flush_bytes, 64 << 10, "the default follows a smaller chunk");
    }

    #[test]
    fn bad_listen_names_key_and_line() {
        let text = base().replace("127.0.0.1:2222", "nowhere");
        let e = Config::parse(&text, "b.toml", Path::new(".")).unwrap_err();
        assert_eq!(e.key, "server.listen");
        assert_eq!(e.line, 3);
        assert!(e.to_string().starts_with("b.toml:3: `server.listen`"), "{e}");
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let text = base().replace("logins = [\"root\"]", "logins = [\"root\"]\nlogin_as = \"x\"");
        let e = Config::parse(&text, "b.toml", Path::new(".")).unwrap_err();
        assert_eq!(e.key, "login_as");
        assert_eq!(e.line, 13, "{e}");
    }

    #[test]
    fn bad_host_key_names_index_and_line() {
        let text = base().replace(
            &format!("host_keys = [\"{KEY}\"]"),
            "host_keys = [\"ssh-ed25519 garbage\"]",
        );
        let e = Config::parse(&text, "b.toml", Path::new(".")).unwrap_err();
        assert_eq!(e.key, "targets[0].host_keys[0]");
        assert_eq!(e.line, 13);
    }

    #[test]
    fn target_without_host_key_is_refused() {
        let text = base().replace(&format!("host_keys = [\"{KEY}\"]"), "");
        let e = Config::parse(&text, "b.toml", Path::new(".")).unwrap_err();
        assert!(e.message.contains("never accepts an unknown host key"), "{e}");
    }

    #[test]
    fn bad_duration_is_explained() {
        let text = base().replace(
            "recording_key = \"keys/rec\"",
            "recording_key = \"keys/rec\"\nidle_timeout = \"soon\"",
        );
        let e = Config::parse(&text, "b.toml", Path::new(".")).unwrap_err();
        assert_eq!(e.key, "server.idle_timeout");
        assert_eq!(e.line, 8);
    }

    #[test]
    fn duplicate_target_is_refused() {
        let t = "[[targets]]\nname = \"node-1\"\naddress = \"127.0.0.1:1\"\nlogins = [\"root\"]\nhost_keys = [\"K\"]\n"
            .replace('K', KEY);
        let text = format!("{}\n{t}", base());
        let e = Config::parse(&text, "b.toml", Path::new(".")).unwrap_err();
        assert_eq!(e.key, "targets[1].name");
    }

    #[test]
    fn names_are_a_safe_alphabet() {
        assert!(valid_name("node-1.prod_a"));
        assert!(!valid_name(""));
        assert!(!valid_name("a b"));
        assert!(!valid_name("../x"));
        assert!(!valid_name("a:b"));
        assert!(!valid_name("a@b"));
    }
}
