//! The `[server]` section: the listener, the bastion's own keys and CAs,
//! timeouts and connection limits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Lines, SshAddress, Startups};

/// `server.max_startups` unless set: it takes more than 50 source addresses
/// (or IPv6 /64s), each at the default `max_startups_per_source` of 8, before
/// early drop refuses anyone else; `full` stays well under `max_connections`.
pub const DEFAULT_MAX_STARTUPS: Startups = Startups {
    start: 400,
    rate: 30,
    full: 800,
};

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
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

pub(super) fn parse_server(
    lines: &Lines<'_>,
    raw: &Spanned<RawServer>,
    path: &dyn Fn(&Spanned<String>) -> PathBuf,
) -> Result<ServerConfig, ConfigError> {
    let rs = raw.get_ref();
    let duration = |key: &str, v: &Option<Spanned<String>>, default: Duration| {
        lines.duration_or(format!("server.{key}"), v, default)
    };
    let server = ServerConfig {
        listen: parse_listen(lines, &rs.listen)?,
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
        public_address: parse_public_address(lines, rs.public_address.as_ref())?,
    };
    if server.node_cert_validity < Duration::from_secs(30) || server.node_cert_validity > Duration::from_secs(3600) {
        return Err(lines.error(
            "server.node_cert_validity",
            rs.node_cert_validity.as_ref().expect("default is in range"),
            "must be between 30s and 1h: node certificates are meant to be short-lived",
        ));
    }
    Ok(server)
}

fn parse_listen(lines: &Lines<'_>, listen: &Spanned<String>) -> Result<SocketAddr, ConfigError> {
    listen.get_ref().parse::<SocketAddr>().map_err(|_| {
        lines.error(
            "server.listen",
            listen,
            format!("`{}` is not an address:port such as \"0.0.0.0:22\"", listen.get_ref()),
        )
    })
}

fn parse_public_address(lines: &Lines<'_>, raw: Option<&Spanned<String>>) -> Result<Option<String>, ConfigError> {
    let Some(a) = raw else { return Ok(None) };
    let text = a.get_ref().trim();
    if text.contains(|c: char| c.is_whitespace() || c == '@') || SshAddress::parse(text).is_none() {
        return Err(lines.error(
            "server.public_address",
            a,
            format!("`{text}` is not a HOST or HOST:PORT such as \"bastion.example.com:22\""),
        ));
    }
    Ok(Some(text.to_string()))
}
