//! The LDAP directory: Active Directory or OpenLDAP, always over TLS.
//!
//! * Lookups run on a small pool of connections bound as a service account.
//! * Passwords are checked by a simple bind **as the user's own DN** on a
//!   fresh connection (never on a pooled one), over LDAPS or StartTLS; a plain
//!   `ldap://` URL without StartTLS is refused when the directory is built.
//! * Account state comes from the directory's own attributes
//!   ([`account_state`], pure) and, at bind time, from AD's diagnostic
//!   sub-codes ([`bind_failure`], pure).
//! * Groups are resolved with nesting: on AD with the in-chain matching rule,
//!   on OpenLDAP by walking `member`/`memberOf` upwards with cycle protection.
//! * User names reach filters only through RFC 4515 escaping.
//!
//! Every network step has a timeout, and every failure to reach or use the
//! server becomes [`DirError::Unavailable`] naming the server and the step,
//! so that logins fail closed and the audit log says why.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, ResultEntry, Scope, SearchEntry, ldap_escape};
use russh::keys::PublicKey;
use tokio::sync::Semaphore;

use super::{AccountState, DirError, DirUser, Directory};
pub use crate::config::{Flavor, LdapConfig};

/// The OID of AD's `LDAP_MATCHING_RULE_IN_CHAIN` (transitive membership).
const IN_CHAIN_RULE: &str = "1.2.840.113556.1.4.1941";
/// How deep the OpenLDAP group walk goes before it stops (cycles stop earlier).
const MAX_GROUP_DEPTH: usize = 32;
/// How many DNs one OpenLDAP group search asks about at once.
const GROUP_BATCH: usize = 50;
/// User names longer than this are not looked up (no directory allows them).
const MAX_USER_LEN: usize = 256;
/// A pooled connection idle for longer is dropped rather than reused: a
/// firewall or the server (AD's MaxConnIdleTime) may have forgotten it
/// without telling us, and a silent loss would cost a whole operation timeout.
const MAX_IDLE: Duration = Duration::from_secs(120);

const DEFAULT_AD_FILTER: &str = "(&(objectClass=user)(|(sAMAccountName={user})(userPrincipalName={user})))";
const DEFAULT_OPENLDAP_FILTER: &str = "(&(objectClass=inetOrgPerson)(uid={user}))";

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

/// Why an LDAP directory could not be set up from its configuration.
#[derive(Debug, Clone, thiserror::Error)]
#[error("ldap directory: {0}")]
pub struct LdapSetupError(String);

fn setup_err(msg: impl Into<String>) -> LdapSetupError {
    LdapSetupError(msg.into())
}

/// A checked server address: what ldap3 connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ServerUrl {
    /// `ldaps://host:port` or `ldap://host:port`.
    url: String,
    starttls: bool,
}

/// Checks the URL and the StartTLS setting: TLS is mandatory.
fn parse_url(url: &str, starttls: bool) -> Result<ServerUrl, LdapSetupError> {
    let url = url.trim();
    let lower = url.to_ascii_lowercase();
    let (scheme, rest, default_port) = if lower.starts_with("ldaps://") {
        ("ldaps", &url["ldaps://".len()..], 636u16)
    } else if lower.starts_with("ldap://") {
        ("ldap", &url["ldap://".len()..], 389u16)
    } else {
        return Err(setup_err(format!(
            "url {url:?}: the scheme must be ldaps:// (or ldap:// with starttls = true)"
        )));
    };
    match (scheme, starttls) {
        ("ldap", false) => {
            return Err(setup_err(format!(
                "url {url:?}: plain ldap:// without StartTLS would send passwords in clear; \
                 use ldaps://HOST:636, or set starttls = true"
            )));
        }
        ("ldaps", true) => {
            return Err(setup_err(format!(
                "url {url:?}: starttls = true is for ldap:// URLs; ldaps:// is TLS already"
            )));
        }
        _ => {}
    }
    let hostport = rest.strip_suffix('/').unwrap_or(rest);
    if hostport.is_empty() {
        return Err(setup_err(format!("url {url:?}: no host")));
    }
    if hostport.contains(['/', '?', '#', '@', ' ']) {
        return Err(setup_err(format!(
            "url {url:?}: only scheme://host[:port] is accepted (no DN, filter, user or spaces)"
        )));
    }
    if hostport.starts_with('[') {
        return Err(setup_err(format!(
            "url {url:?}: IPv6 address literals are not supported; use a host name"
        )));
    }
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => {
            let port: u16 = p
                .parse()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| setup_err(format!("url {url:?}: bad port {p:?}")))?;
            (h, port)
        }
        None => (hostport, default_port),
    };
    if host.is_empty() {
        return Err(setup_err(format!("url {url:?}: no host")));
    }
    // The name the certificate must carry (checked by rustls at connect).
    rustls::pki_types::ServerName::try_from(host).map_err(|e| {
        setup_err(format!(
            "url {url:?}: host {host:?} is not a valid TLS server name: {e}"
        ))
    })?;
    Ok(ServerUrl {
        url: format!("{scheme}://{host}:{port}"),
        starttls: scheme == "ldap",
    })
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

/// The service account's password: never printed.
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

// ---------------------------------------------------------------------------
// The directory
// ---------------------------------------------------------------------------

/// Users, groups and account state from an LDAP server (AD or OpenLDAP).
pub struct LdapDirectory {
    server: ServerUrl,
    tls: Arc<rustls::ClientConfig>,
    bind_dn: String,
    bind_password: Secret,
    base_dn: String,
    user_filter: String,
    login_attribute: String,
    flavor: Flavor,
    ssh_key_attribute: Option<String>,
    connect_timeout: Duration,
    operation_timeout: Duration,
    /// Idle service connections, already bound as `bind_dn`, with when they were put back.
    idle: Mutex<Vec<(Ldap, Instant)>>,
    /// At most `pool_size` service connections in use at once.
    permits: Semaphore,
    pool_size: usize,
}

impl fmt::Debug for LdapDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LdapDirectory")
            .field("url", &self.server.url)
            .field("starttls", &self.server.starttls)
            .field("bind_dn", &self.bind_dn)
            .field("bind_password", &self.bind_password)
            .field("base_dn", &self.base_dn)
            .field("flavor", &self.flavor)
            .finish_non_exhaustive()
    }
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

        let pw_path = resolve(&cfg.bind_password_file);
        let password = std::fs::read_to_string(&pw_path)
            .map_err(|e| setup_err(format!("bind_password_file {}: {e}", pw_path.display())))?;
        let password = password.trim_end_matches(['\n', '\r']).to_string();
        if password.is_empty() {
            return Err(setup_err(format!("bind_password_file {}: empty", pw_path.display())));
        }
        warn_if_readable_by_others(&pw_path);

        if cfg.bind_dn.trim().is_empty() {
            return Err(setup_err("bind_dn is empty"));
        }
        if cfg.base_dn.trim().is_empty() {
            return Err(setup_err("base_dn is empty"));
        }
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
        if cfg.connect_timeout.is_zero() || cfg.operation_timeout.is_zero() {
            return Err(setup_err("connect_timeout and operation_timeout must be above zero"));
        }
        if cfg.pool_size == 0 || cfg.pool_size > 64 {
            return Err(setup_err(format!(
                "pool_size {} must be between 1 and 64",
                cfg.pool_size
            )));
        }
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

    /// The server URL as connected to (for logs and `/readyz`).
    pub fn url(&self) -> &str {
        &self.server.url
    }

    /// Service bind and a read of the base entry: for `/readyz`.
    pub async fn check(&self) -> Result<(), DirError> {
        let base = self.base_dn.clone();
        self.with_service("read of base_dn", move |mut ldap| {
            let base = base.clone();
            async move {
                ldap.search(&base, Scope::Base, "(objectClass=*)", vec!["1.1"])
                    .await?
                    .success()?;
                Ok(())
            }
        })
        .await
    }

    fn unavailable(&self, what: &str, detail: impl fmt::Display) -> DirError {
        DirError::Unavailable(format!("LDAP server {}: {what}: {detail}", self.server.url))
    }

    /// A new TLS connection (LDAPS, or StartTLS before anything else).
    async fn connect(&self) -> Result<Ldap, DirError> {
        let settings = LdapConnSettings::new()
            .set_conn_timeout(self.connect_timeout)
            .set_config(self.tls.clone())
            .set_starttls(self.server.starttls);
        // ldap3 bounds TCP + StartTLS + TLS with conn_timeout; the outer
        // timeout is a second fence with a little slack.
        let fence = self.connect_timeout + Duration::from_millis(500);
        let (conn, ldap) =
            match tokio::time::timeout(fence, LdapConnAsync::with_settings(settings, &self.server.url)).await {
                Err(_) | Ok(Err(LdapError::Timeout { .. })) => {
                    return Err(self.unavailable("connect", format!("timed out after {:?}", self.connect_timeout)));
                }
                Ok(Err(e)) => return Err(self.unavailable("connect", e)),
                Ok(Ok(pair)) => pair,
            };
        let url = self.server.url.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(server = %url, error = %e, "LDAP connection ended");
            }
        });
        Ok(ldap)
    }

    /// A service connection: an idle pooled one, or a new one bound as `bind_dn`.
    async fn service_conn(&self) -> Result<(Ldap, bool), DirError> {
        loop {
            let popped = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            match popped {
                Some((mut l, since)) => {
                    if !l.is_closed() && since.elapsed() < MAX_IDLE {
                        return Ok((l, true));
                    }
                }
                None => break,
            }
        }
        let mut ldap = self.connect().await?;
        let bound = tokio::time::timeout(
            self.operation_timeout,
            ldap.simple_bind(&self.bind_dn, &self.bind_password.0),
        )
        .await
        .map_err(|_| self.unavailable("service bind", format!("timed out after {:?}", self.operation_timeout)))?
        .map_err(|e| self.unavailable("service bind", e))?;
        if bound.rc != 0 {
            return Err(self.unavailable(
                &format!("service bind as {:?} refused", self.bind_dn),
                format_args!("rc={} {}", bound.rc, bound.text.trim()),
            ));
        }
        Ok((ldap, false))
    }

    fn put_back(&self, ldap: Ldap) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.pool_size {
            idle.push((ldap, Instant::now()));
        }
    }

    /// Runs one operation on a service connection, with the operation
    /// timeout. A pooled connection that turns out dead (the server closed
    /// it, or restarted) is replaced once by a new one.
    async fn with_service<T, F, Fut>(&self, what: &str, op: F) -> Result<T, DirError>
    where
        F: Fn(Ldap) -> Fut,
        Fut: Future<Output = Result<T, LdapError>>,
    {
        let _permit = tokio::time::timeout(self.operation_timeout, self.permits.acquire())
            .await
            .map_err(|_| self.unavailable(what, "all pooled connections stayed busy"))?
            .map_err(|_| self.unavailable(what, "pool closed"))?;
        let mut retried = false;
        loop {
            let (ldap, reused) = self.service_conn().await?;
            match tokio::time::timeout(self.operation_timeout, op(ldap.clone())).await {
                Ok(Ok(v)) => {
                    self.put_back(ldap);
                    return Ok(v);
                }
                Ok(Err(e)) if reused && !retried && is_transport_error(&e) => {
                    tracing::debug!(server = %self.server.url, error = %e, "pooled LDAP connection is dead; reconnecting");
                    retried = true;
                }
                Ok(Err(e)) => return Err(self.unavailable(what, e)),
                Err(_) => {
                    return Err(self.unavailable(what, format!("timed out after {:?}", self.operation_timeout)));
                }
            }
        }
    }

    /// A subtree search under `base_dn`; continuation references (which AD
    /// returns at the domain root) are skipped.
    async fn search(&self, what: &str, filter: String, attrs: Vec<String>) -> Result<Vec<SearchEntry>, DirError> {
        let base = self.base_dn.clone();
        self.with_service(what, move |mut ldap| {
            let (base, filter, attrs) = (base.clone(), filter.clone(), attrs.clone());
            async move {
                let (entries, _) = ldap.search(&base, Scope::Subtree, &filter, attrs).await?.success()?;
                Ok(entries.into_iter().filter_map(construct_entry).collect())
            }
        })
        .await
    }

    /// Attributes read for a user.
    fn user_attributes(&self) -> Vec<String> {
        let mut attrs: Vec<String> = vec![self.login_attribute.clone()];
        attrs.extend(state_attributes(self.flavor).iter().map(|s| s.to_string()));
        if self.flavor == Flavor::OpenLdap {
            attrs.push("memberOf".into());
        }
        if let Some(a) = &self.ssh_key_attribute {
            attrs.push(a.clone());
        }
        attrs
    }

    /// The user entry, or `NotFound` (none, or more than one: ambiguous).
    async fn find_user(&self, user: &str) -> Result<(String, Attrs), DirError> {
        if !plausible_login_name(user) {
            return Err(DirError::NotFound);
        }
        let filter = user_search_filter(&self.user_filter, user);
        let mut entries = self.search("user search", filter, self.user_attributes()).await?;
        match entries.len() {
            0 => Err(DirError::NotFound),
            1 => {
                let e = entries.pop().expect("one entry");
                let attrs = lowercase_attrs(&e);
                Ok((e.dn, attrs))
            }
            n => {
                tracing::warn!(
                    server = %self.server.url, user = %user, matches = n,
                    "user_filter matches more than one entry; refusing the ambiguous login"
                );
                Err(DirError::NotFound)
            }
        }
    }

    /// Group names and DNs, nesting resolved.
    async fn groups_of(&self, user_dn: &str, user_attrs: &Attrs) -> Result<Vec<(String, String)>, DirError> {
        match self.flavor {
            Flavor::ActiveDirectory => {
                let filter = format!(
                    "(&(objectClass=group)(member:{IN_CHAIN_RULE}:={}))",
                    ldap_escape(user_dn)
                );
                let entries = self
                    .search("group search (in-chain)", filter, vec!["cn".into()])
                    .await?;
                let mut groups: Vec<(String, String)> = entries
                    .iter()
                    .map(|e| {
                        let cn = lowercase_attrs(e)
                            .get("cn")
                            .and_then(|v| v.first().cloned())
                            .unwrap_or_else(|| first_rdn_value(&e.dn));
                        (cn, e.dn.clone())
                    })
                    .collect();
                sort_dedup_groups(&mut groups);
                Ok(groups)
            }
            Flavor::OpenLdap => self.walk_groups(user_dn, user_attrs).await,
        }
    }

    /// OpenLDAP: breadth-first upwards from the user, by `member`/`uniqueMember`
    /// searches and `memberOf` values, with a visited set and a depth limit.
    async fn walk_groups(&self, user_dn: &str, user_attrs: &Attrs) -> Result<Vec<(String, String)>, DirError> {
        let mut visited: HashSet<String> = HashSet::new();
        visited.insert(normalize_dn(user_dn));
        let mut found: Vec<(String, String)> = Vec::new();
        let mut frontier: Vec<String> = vec![user_dn.to_string()];
        // memberOf (from the memberof overlay) names direct groups at once.
        for dn in user_attrs.get("memberof").into_iter().flatten() {
            if visited.insert(normalize_dn(dn)) {
                found.push((first_rdn_value(dn), dn.clone()));
                frontier.push(dn.clone());
            }
        }
        let mut depth = 0;
        while !frontier.is_empty() {
            if depth == MAX_GROUP_DEPTH {
                tracing::warn!(
                    server = %self.server.url, user = %user_dn,
                    "group nesting deeper than {MAX_GROUP_DEPTH}; ignoring the rest"
                );
                break;
            }
            depth += 1;
            let mut next = Vec::new();
            for chunk in frontier.chunks(GROUP_BATCH) {
                let filter = group_member_filter(chunk);
                let entries = self
                    .search("group search (member)", filter, vec!["cn".into(), "memberOf".into()])
                    .await?;
                for e in entries {
                    let attrs = lowercase_attrs(&e);
                    let cn = attrs
                        .get("cn")
                        .and_then(|v| v.first().cloned())
                        .unwrap_or_else(|| first_rdn_value(&e.dn));
                    if visited.insert(normalize_dn(&e.dn)) {
                        found.push((cn, e.dn.clone()));
                        next.push(e.dn.clone());
                    } else if let Some(f) = found.iter_mut().find(|(_, dn)| dn.eq_ignore_ascii_case(&e.dn)) {
                        // Known from a memberOf value: prefer the entry's own cn.
                        f.0 = cn;
                    }
                    for parent in attrs.get("memberof").into_iter().flatten() {
                        if visited.insert(normalize_dn(parent)) {
                            found.push((first_rdn_value(parent), parent.clone()));
                            next.push(parent.clone());
                        }
                    }
                }
            }
            frontier = next;
        }
        sort_dedup_groups(&mut found);
        Ok(found)
    }

    /// The whole answer for an entry found by [`Self::find_user`].
    async fn dir_user(&self, requested: &str, dn: String, attrs: Attrs) -> Result<DirUser, DirError> {
        let state = account_state(self.flavor, &attrs, SystemTime::now());
        let groups = self.groups_of(&dn, &attrs).await?;
        let name = attrs
            .get(&self.login_attribute.to_ascii_lowercase())
            .and_then(|v| v.first().cloned())
            .unwrap_or_else(|| requested.to_string());
        let ssh_keys = match &self.ssh_key_attribute {
            Some(a) => parse_ssh_keys(attrs.get(&a.to_ascii_lowercase()).map(Vec::as_slice).unwrap_or(&[])),
            None => Vec::new(),
        };
        let (groups, group_dns) = groups.into_iter().unzip();
        Ok(DirUser {
            name,
            dn,
            groups,
            group_dns,
            ssh_keys,
            state,
        })
    }

    /// A simple bind on a fresh connection; `Ok(None)` when it succeeded.
    async fn user_bind(&self, dn: &str, password: &str) -> Result<Option<(u32, String)>, DirError> {
        let mut ldap = self.connect().await?;
        let res = tokio::time::timeout(self.operation_timeout, ldap.simple_bind(dn, password))
            .await
            .map_err(|_| self.unavailable("user bind", format!("timed out after {:?}", self.operation_timeout)))?
            .map_err(|e| self.unavailable("user bind", e))?;
        // Best effort: the connection closes when the handle is dropped anyway.
        let _ = tokio::time::timeout(Duration::from_millis(200), ldap.unbind()).await;
        Ok(if res.rc == 0 { None } else { Some((res.rc, res.text)) })
    }
}

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

#[async_trait::async_trait]
impl Directory for LdapDirectory {
    async fn lookup(&self, user: &str) -> Result<DirUser, DirError> {
        let (dn, attrs) = self.find_user(user).await?;
        self.dir_user(user, dn, attrs).await
    }

    async fn verify_password(&self, user: &str, password: &str) -> Result<DirUser, DirError> {
        // An empty password would make a simple bind "unauthenticated"
        // (RFC 4513 5.1.2), which some servers answer with success.
        if password.is_empty() {
            return Err(DirError::BadPassword);
        }
        let found = match self.lookup(user).await {
            Err(DirError::NotFound) => {
                // Cost an unknown name about what a wrong password costs,
                // so that timing does not tell which names exist.
                let decoy = format!("cn=bastion-no-such-user,{}", self.base_dn);
                let _ = self.user_bind(&decoy, password).await;
                return Err(DirError::NotFound);
            }
            other => other?,
        };
        if let Some((rc, text)) = self.user_bind(&found.dn, password).await? {
            let err = bind_failure(rc, &text, found.state);
            if let DirError::Unavailable(detail) = err {
                return Err(self.unavailable("user bind", detail));
            }
            return Err(err);
        }
        if found.state != AccountState::Active {
            return Err(DirError::AccountState(found.state));
        }
        Ok(found)
    }

    fn kind(&self) -> &'static str {
        "ldap"
    }
}

// ---------------------------------------------------------------------------
// Pure helpers
// ---------------------------------------------------------------------------

/// Attribute values by lower-case attribute name.
pub type Attrs = HashMap<String, Vec<String>>;

/// Names worth asking the directory about: not empty, not too long, no
/// control characters. Escaping alone is not enough for NUL: Samba cuts a
/// filter value at an escaped NUL (`alice\00` matches `alice`).
pub fn plausible_login_name(user: &str) -> bool {
    !user.is_empty() && user.len() <= MAX_USER_LEN && !user.chars().any(char::is_control)
}

/// The filter for one login name: `{user}` replaced by its RFC 4515 escape.
pub fn user_search_filter(template: &str, user: &str) -> String {
    template.replace("{user}", &ldap_escape(user))
}

/// `(&(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))(|(member=DN)(uniqueMember=DN)…))`
fn group_member_filter(dns: &[String]) -> String {
    let mut f = String::from("(&(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))(|");
    for dn in dns {
        let v = ldap_escape(dn.as_str());
        f.push_str(&format!("(member={v})(uniqueMember={v})"));
    }
    f.push_str("))");
    f
}

fn construct_entry(re: ResultEntry) -> Option<SearchEntry> {
    if re.is_ref() || re.is_intermediate() {
        return None;
    }
    // ldap3 panics on a malformed entry: a bad answer must not take the task down.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| SearchEntry::construct(re))).ok()
}

fn lowercase_attrs(e: &SearchEntry) -> Attrs {
    let mut out: Attrs = HashMap::new();
    for (k, v) in &e.attrs {
        out.entry(k.to_ascii_lowercase()).or_default().extend(v.iter().cloned());
    }
    for (k, v) in &e.bin_attrs {
        let texts = v.iter().filter_map(|b| String::from_utf8(b.clone()).ok());
        out.entry(k.to_ascii_lowercase()).or_default().extend(texts);
    }
    out
}

fn is_attribute_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// DNs compared as LDAP mostly compares them: case-insensitively, ignoring
/// blanks around the `=`, `,` and `+` separators.
fn normalize_dn(dn: &str) -> String {
    let mut parts: Vec<(String, char)> = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in dn.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' => {
                cur.push(c);
                escaped = true;
            }
            ',' | '+' => parts.push((std::mem::take(&mut cur), c)),
            _ => cur.push(c),
        }
    }
    parts.push((cur, ','));
    let mut out = String::with_capacity(dn.len());
    let last = parts.len() - 1;
    for (i, (part, sep)) in parts.iter().enumerate() {
        let (ty, value) = part.split_once('=').unwrap_or((part.as_str(), ""));
        out.push_str(&ty.trim().to_ascii_lowercase());
        out.push('=');
        let mut v = value.trim().to_lowercase();
        if v.ends_with('\\') {
            // An escaped trailing blank is part of the value.
            v.push(' ');
        }
        out.push_str(&v);
        if i < last {
            out.push(*sep);
        }
    }
    out
}

/// The value of a DN's first RDN, unescaped: `CN=Doe\, John,OU=x` → `Doe, John`.
pub fn first_rdn_value(dn: &str) -> String {
    let mut raw = String::new();
    let mut chars = dn.chars().peekable();
    // Skip the attribute type.
    for c in chars.by_ref() {
        if c == '=' {
            break;
        }
    }
    let mut escaped = false;
    for c in chars {
        if escaped {
            raw.push('\\');
            raw.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' || c == '+' {
            break;
        } else {
            raw.push(c);
        }
    }
    unescape_dn_value(raw.trim())
}

fn unescape_dn_value(s: &str) -> String {
    let b = s.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(v) => {
                    out.push(v);
                    i += 3;
                }
                None => {
                    out.push(b[i + 1]);
                    i += 2;
                }
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn sort_dedup_groups(groups: &mut Vec<(String, String)>) {
    groups.sort_by(|a, b| {
        a.0.to_ascii_lowercase()
            .cmp(&b.0.to_ascii_lowercase())
            .then_with(|| a.1.cmp(&b.1))
    });
    let mut seen = HashSet::new();
    groups.retain(|(_, dn)| seen.insert(normalize_dn(dn)));
}

/// Errors that mean the connection is gone (not an answer from the server).
fn is_transport_error(e: &LdapError) -> bool {
    !matches!(
        e,
        LdapError::LdapResult { .. } | LdapError::FilterParsing | LdapError::DecodingUTF8
    )
}

/// Keys from a key attribute's values: OpenSSH lines, optionally prefixed
/// with `SSHKey:` (the `altSecurityIdentities` convention). Other values
/// (`X509:…` mappings, garbage) are skipped.
pub fn parse_ssh_keys(values: &[String]) -> Vec<PublicKey> {
    let mut keys = Vec::new();
    for v in values {
        let v = v.trim();
        let line = match v.get(..7) {
            Some(p) if p.eq_ignore_ascii_case("sshkey:") => v[7..].trim(),
            _ => v,
        };
        match PublicKey::from_openssh(line) {
            Ok(k) => keys.push(k),
            Err(e) => tracing::debug!(error = %e, "skipping a directory value that is not an SSH public key"),
        }
    }
    keys
}

/// The attributes [`account_state`] reads, per flavor.
pub fn state_attributes(flavor: Flavor) -> &'static [&'static str] {
    match flavor {
        Flavor::ActiveDirectory => &[
            "userAccountControl",
            "msDS-User-Account-Control-Computed",
            "lockoutTime",
            "accountExpires",
            "pwdLastSet",
        ],
        Flavor::OpenLdap => &["pwdAccountLockedTime", "pwdEndTime", "shadowExpire", "pwdReset"],
    }
}

/// `userAccountControl` bits.
pub const UF_ACCOUNTDISABLE: u32 = 0x2;
pub const UF_LOCKOUT: u32 = 0x10;
pub const UF_PASSWORD_EXPIRED: u32 = 0x80_0000;

/// Seconds between 1601-01-01 (Windows FILETIME epoch) and 1970-01-01.
const FILETIME_UNIX_OFFSET_SECS: i64 = 11_644_473_600;

/// Decides the account state from a user entry's attributes (lower-case
/// names, as [`Attrs`]). When several apply, the first of Disabled,
/// Expired, Locked, PasswordExpired wins. Values that cannot be read fail
/// closed (the account is refused).
///
/// * AD: `userAccountControl` (with `msDS-User-Account-Control-Computed`
///   ORed in, which carries the lockout and password-expired bits that AD
///   computes): 0x2 disabled, 0x10 locked, 0x800000 password expired; a
///   missing `userAccountControl` counts as disabled; `accountExpires`
///   (FILETIME, 0 and 0x7FFFFFFFFFFFFFFF = never) at or before `now` →
///   expired; `lockoutTime` non-zero → locked; `pwdLastSet` = 0 → must
///   change the password.
/// * OpenLDAP: `pwdAccountLockedTime` present → locked (ppolicy);
///   `pwdEndTime` (GeneralizedTime) or `shadowExpire` (days since 1970)
///   reached → expired; `pwdReset: TRUE` → must change the password.
pub fn account_state(flavor: Flavor, attrs: &Attrs, now: SystemTime) -> AccountState {
    let now_secs = match now.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    let first = |name: &str| attrs.get(name).and_then(|v| v.first()).map(|s| s.trim());
    match flavor {
        Flavor::ActiveDirectory => {
            let uac = match first("useraccountcontrol").map(parse_ad_u32) {
                Some(Some(v)) => v,
                // Missing or unreadable: the service cannot tell, so refuse.
                _ => return AccountState::Disabled,
            };
            let computed = match first("msds-user-account-control-computed").map(parse_ad_u32) {
                None => 0,
                Some(Some(v)) => v,
                Some(None) => return AccountState::Disabled,
            };
            let bits = uac | computed;
            if bits & UF_ACCOUNTDISABLE != 0 {
                return AccountState::Disabled;
            }
            if let Some(v) = first("accountexpires") {
                match v.parse::<i64>() {
                    Ok(0) | Ok(i64::MAX) => {}
                    Ok(ft) if ft < 0 => {}
                    Ok(ft) => {
                        if ft / 10_000_000 - FILETIME_UNIX_OFFSET_SECS <= now_secs {
                            return AccountState::Expired;
                        }
                    }
                    Err(_) => return AccountState::Expired,
                }
            }
            if bits & UF_LOCKOUT != 0 {
                return AccountState::Locked;
            }
            if let Some(v) = first("lockouttime") {
                match v.parse::<i64>() {
                    Ok(0) => {}
                    _ => return AccountState::Locked,
                }
            }
            if bits & UF_PASSWORD_EXPIRED != 0 {
                return AccountState::PasswordExpired;
            }
            if let Some(v) = first("pwdlastset") {
                match v.parse::<i64>() {
                    Ok(0) | Err(_) => return AccountState::PasswordExpired,
                    Ok(_) => {}
                }
            }
            AccountState::Active
        }
        Flavor::OpenLdap => {
            if let Some(v) = first("pwdendtime") {
                match parse_generalized_time(v) {
                    Some(t) if t > now_secs => {}
                    _ => return AccountState::Expired,
                }
            }
            if let Some(v) = first("shadowexpire") {
                match v.parse::<i64>() {
                    Ok(d) if d < 0 => {}
                    Ok(d) => {
                        if d.saturating_mul(86_400) <= now_secs {
                            return AccountState::Expired;
                        }
                    }
                    Err(_) => return AccountState::Expired,
                }
            }
            if attrs.get("pwdaccountlockedtime").is_some_and(|v| !v.is_empty()) {
                return AccountState::Locked;
            }
            if first("pwdreset").is_some_and(|v| v.eq_ignore_ascii_case("TRUE")) {
                return AccountState::PasswordExpired;
            }
            AccountState::Active
        }
    }
}

/// AD writes `userAccountControl` as a (signed) 32-bit decimal.
fn parse_ad_u32(v: &str) -> Option<u32> {
    v.parse::<i64>()
        .ok()
        .filter(|n| (i32::MIN as i64..=u32::MAX as i64).contains(n))
        .map(|n| n as u32)
}

/// `YYYYMMDDHH[MM[SS]][.fff](Z|±HH[MM])` → seconds since 1970.
pub fn parse_generalized_time(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let year = num(0..4)?;
    let month = num(4..6)?;
    let day = num(6..8)?;
    let hour = num(8..10)?;
    let mut i = 10;
    let mut minute = 0;
    let mut second = 0;
    if b.get(i).is_some_and(u8::is_ascii_digit) {
        minute = num(i..i + 2)?;
        i += 2;
        if b.get(i).is_some_and(u8::is_ascii_digit) {
            second = num(i..i + 2)?;
            i += 2;
        }
    }
    if matches!(b.get(i), Some(b'.') | Some(b',')) {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset = match b.get(i) {
        Some(b'Z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) => {
            let oh = num(i + 1..i + 3)?;
            let om = if b.len() == i + 5 {
                num(i + 3..i + 5)?
            } else if b.len() == i + 3 {
                0
            } else {
                return None;
            };
            if oh > 23 || om > 59 {
                return None;
            }
            let off = oh * 3600 + om * 60;
            if sign == b'+' { off } else { -off }
        }
        _ => return None,
    };
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The AD diagnostic sub-code in a bind error text: `…, data 52e, v1db1` → 0x52e.
pub fn ad_bind_subcode(text: &str) -> Option<u32> {
    let lower = text.to_ascii_lowercase();
    let at = lower.find("data ")?;
    let hex: String = lower[at + 5..].chars().take_while(|c| c.is_ascii_hexdigit()).collect();
    u32::from_str_radix(&hex, 16).ok()
}

/// Maps a failed user bind (result code and diagnostic text) to the reason,
/// knowing the state read from the entry before the bind. AD's sub-codes
/// win; a plain "invalid credentials" on an account whose attributes say it
/// may not log in (OpenLDAP ppolicy answers a locked account that way)
/// reports that state.
pub fn bind_failure(rc: u32, text: &str, state: AccountState) -> DirError {
    let by_state = || match state {
        AccountState::Active => DirError::BadPassword,
        s => DirError::AccountState(s),
    };
    match rc {
        // invalidCredentials
        49 => match ad_bind_subcode(text) {
            Some(0x52e) | None => by_state(),
            Some(0x525) => DirError::NotFound,
            Some(0x530) | Some(0x531) => DirError::AccountState(AccountState::Disabled),
            Some(0x532) | Some(0x773) => DirError::AccountState(AccountState::PasswordExpired),
            Some(0x533) => DirError::AccountState(AccountState::Disabled),
            Some(0x701) => DirError::AccountState(AccountState::Expired),
            Some(0x775) => DirError::AccountState(AccountState::Locked),
            Some(_) => by_state(),
        },
        // inappropriateAuthentication, unwillingToPerform (e.g. ppolicy, or
        // an unauthenticated bind refused)
        48 | 53 => by_state(),
        // The server will not take a simple bind on this connection: setup problem.
        8 | 13 => DirError::Unavailable(format!(
            "the server refused a simple bind over TLS: rc={rc} {}",
            text.trim()
        )),
        _ => DirError::Unavailable(format!("unexpected bind result rc={rc} {}", text.trim())),
    }
}

// ---------------------------------------------------------------------------
// Unit tests (pure functions)
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> Attrs {
        let mut a: Attrs = HashMap::new();
        for (k, v) in pairs {
            a.entry(k.to_ascii_lowercase()).or_default().push(v.to_string());
        }
        a
    }

    /// 2024-06-01T00:00:00Z
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_717_200_000)
    }
    fn filetime(unix: i64) -> String {
        ((unix + FILETIME_UNIX_OFFSET_SECS) * 10_000_000).to_string()
    }
    const NOW: i64 = 1_717_200_000;

    fn ad(pairs: &[(&str, &str)]) -> AccountState {
        account_state(Flavor::ActiveDirectory, &attrs(pairs), now())
    }
    fn ol(pairs: &[(&str, &str)]) -> AccountState {
        account_state(Flavor::OpenLdap, &attrs(pairs), now())
    }

    const NORMAL: (&str, &str) = ("userAccountControl", "512");
    const NEVER: (&str, &str) = ("accountExpires", "9223372036854775807");
    const PWD_SET: (&str, &str) = ("pwdLastSet", "133000000000000000");

    #[test]
    fn ad_active() {
        assert_eq!(
            ad(&[NORMAL, NEVER, PWD_SET, ("lockoutTime", "0")]),
            AccountState::Active
        );
        assert_eq!(ad(&[NORMAL]), AccountState::Active);
        assert_eq!(ad(&[NORMAL, ("accountExpires", "0"), PWD_SET]), AccountState::Active);
        assert_eq!(
            ad(&[NORMAL, ("msDS-User-Account-Control-Computed", "0")]),
            AccountState::Active
        );
        // DONT_EXPIRE_PASSWORD and other harmless bits.
        assert_eq!(ad(&[("userAccountControl", "66048"), PWD_SET]), AccountState::Active);
    }

    #[test]
    fn ad_disabled() {
        assert_eq!(
            ad(&[("userAccountControl", "514"), NEVER, PWD_SET]),
            AccountState::Disabled
        );
        assert_eq!(ad(&[("userAccountControl", "2")]), AccountState::Disabled);
        // Disabled wins over every other reason.
        assert_eq!(
            ad(&[
                ("userAccountControl", "514"),
                ("accountExpires", "1"),
                ("lockoutTime", "5"),
                ("pwdLastSet", "0")
            ]),
            AccountState::Disabled
        );
    }

    #[test]
    fn ad_missing_or_bad_uac_fails_closed() {
        assert_eq!(ad(&[]), AccountState::Disabled);
        assert_eq!(ad(&[NEVER, PWD_SET]), AccountState::Disabled);
        assert_eq!(ad(&[("userAccountControl", "x")]), AccountState::Disabled);
        assert_eq!(ad(&[("userAccountControl", "99999999999")]), AccountState::Disabled);
        assert_eq!(
            ad(&[NORMAL, ("msDS-User-Account-Control-Computed", "zz")]),
            AccountState::Disabled
        );
        // A negative (signed) value is read as its 32-bit pattern: 0x80000202 has 0x2.
        assert_eq!(ad(&[("userAccountControl", "-2147483134")]), AccountState::Disabled);
    }

    #[test]
    fn ad_locked() {
        assert_eq!(ad(&[("userAccountControl", "528"), PWD_SET]), AccountState::Locked); // 512 | 0x10
        assert_eq!(
            ad(&[NORMAL, ("msDS-User-Account-Control-Computed", "16"), PWD_SET]),
            AccountState::Locked
        );
        assert_eq!(
            ad(&[NORMAL, ("lockoutTime", "133000000000000000"), PWD_SET]),
            AccountState::Locked
        );
        assert_eq!(ad(&[NORMAL, ("lockoutTime", "garbage"), PWD_SET]), AccountState::Locked);
        assert_eq!(ad(&[NORMAL, ("lockoutTime", "0"), PWD_SET]), AccountState::Active);
        // Locked wins over must-change.
        assert_eq!(
            ad(&[NORMAL, ("lockoutTime", "1"), ("pwdLastSet", "0")]),
            AccountState::Locked
        );
    }

    #[test]
    fn ad_account_expires() {
        assert_eq!(
            ad(&[NORMAL, ("accountExpires", &filetime(NOW - 1)), PWD_SET]),
            AccountState::Expired
        );
        assert_eq!(
            ad(&[NORMAL, ("accountExpires", &filetime(NOW)), PWD_SET]),
            AccountState::Expired
        );
        assert_eq!(
            ad(&[NORMAL, ("accountExpires", &filetime(NOW + 3600)), PWD_SET]),
            AccountState::Active
        );
        assert_eq!(
            ad(&[NORMAL, ("accountExpires", "132223104000000000"), PWD_SET]),
            AccountState::Expired
        ); // 2020-01-01
        assert_eq!(ad(&[NORMAL, ("accountExpires", "0"), PWD_SET]), AccountState::Active);
        assert_eq!(
            ad(&[NORMAL, ("accountExpires", "9223372036854775807"), PWD_SET]),
            AccountState::Active
        );
        assert_eq!(
            ad(&[NORMAL, ("accountExpires", "soon"), PWD_SET]),
            AccountState::Expired
        );
        // Expired wins over locked and must-change.
        assert_eq!(
            ad(&[
                NORMAL,
                ("accountExpires", "1"),
                ("lockoutTime", "1"),
                ("pwdLastSet", "0")
            ]),
            AccountState::Expired
        );
    }

    #[test]
    fn ad_password_expired_or_must_change() {
        assert_eq!(ad(&[NORMAL, NEVER, ("pwdLastSet", "0")]), AccountState::PasswordExpired);
        assert_eq!(
            ad(&[("userAccountControl", "8389120"), PWD_SET]),
            AccountState::PasswordExpired
        ); // 512 | 0x800000
        assert_eq!(
            ad(&[NORMAL, ("msDS-User-Account-Control-Computed", "8388608"), PWD_SET]),
            AccountState::PasswordExpired
        );
        assert_eq!(ad(&[NORMAL, ("pwdLastSet", "never")]), AccountState::PasswordExpired);
        assert_eq!(ad(&[NORMAL, ("pwdLastSet", "-1")]), AccountState::Active);
    }

    #[test]
    fn openldap_states() {
        assert_eq!(ol(&[]), AccountState::Active);
        assert_eq!(ol(&[("pwdAccountLockedTime", "20240101000000Z")]), AccountState::Locked);
        assert_eq!(ol(&[("pwdAccountLockedTime", "000001010000Z")]), AccountState::Locked);
        assert_eq!(ol(&[("pwdEndTime", "20240531235959Z")]), AccountState::Expired);
        assert_eq!(ol(&[("pwdEndTime", "20240601000001Z")]), AccountState::Active);
        assert_eq!(ol(&[("pwdEndTime", "not a time")]), AccountState::Expired);
        assert_eq!(ol(&[("shadowExpire", "-1")]), AccountState::Active);
        assert_eq!(
            ol(&[("shadowExpire", &(NOW / 86_400).to_string())]),
            AccountState::Expired
        );
        assert_eq!(
            ol(&[("shadowExpire", &(NOW / 86_400 + 2).to_string())]),
            AccountState::Active
        );
        assert_eq!(ol(&[("shadowExpire", "x")]), AccountState::Expired);
        assert_eq!(ol(&[("pwdReset", "TRUE")]), AccountState::PasswordExpired);
        assert_eq!(ol(&[("pwdReset", "FALSE")]), AccountState::Active);
        // Priority: expired, then locked, then must-change.
        assert_eq!(
            ol(&[
                ("pwdAccountLockedTime", "20240101000000Z"),
                ("pwdEndTime", "20200101000000Z")
            ]),
            AccountState::Expired
        );
        assert_eq!(
            ol(&[("pwdAccountLockedTime", "20240101000000Z"), ("pwdReset", "TRUE")]),
            AccountState::Locked
        );
        // AD attributes mean nothing to the OpenLDAP flavor, and the reverse.
        assert_eq!(ol(&[("userAccountControl", "514")]), AccountState::Active);
        assert_eq!(
            ad(&[NORMAL, ("pwdAccountLockedTime", "20240101000000Z")]),
            AccountState::Active
        );
    }

    #[test]
    fn generalized_time() {
        assert_eq!(parse_generalized_time("19700101000000Z"), Some(0));
        assert_eq!(parse_generalized_time("20240601000000Z"), Some(NOW));
        assert_eq!(parse_generalized_time("2024060100Z"), Some(NOW));
        assert_eq!(parse_generalized_time("202406010000Z"), Some(NOW));
        assert_eq!(parse_generalized_time("20240601000000.123Z"), Some(NOW));
        assert_eq!(parse_generalized_time("20240601020000+0200"), Some(NOW));
        assert_eq!(parse_generalized_time("20240531220000-02"), Some(NOW));
        assert_eq!(parse_generalized_time("20240229120000Z"), Some(1_709_208_000));
        assert_eq!(parse_generalized_time("20230229120000Z"), None);
        assert_eq!(parse_generalized_time("20241301000000Z"), None);
        assert_eq!(parse_generalized_time("20240601000000"), None);
        assert_eq!(parse_generalized_time("20240601000000ZZ"), None);
        assert_eq!(parse_generalized_time("2024"), None);
        assert_eq!(parse_generalized_time("20240601000000.Z"), None);
        assert_eq!(parse_generalized_time("２０２４0601000000Z"), None);
    }

    #[test]
    fn bind_subcodes() {
        let text = |c: &str| {
            format!("80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data {c}, v1db1")
        };
        assert_eq!(ad_bind_subcode(&text("52e")), Some(0x52e));
        assert_eq!(ad_bind_subcode("no code here"), None);
        let active = AccountState::Active;
        let is = |e: DirError, want: &str| assert_eq!(format!("{e:?}"), want);
        is(bind_failure(49, &text("52e"), active), "BadPassword");
        is(bind_failure(49, &text("525"), active), "NotFound");
        is(bind_failure(49, &text("530"), active), "AccountState(Disabled)");
        is(bind_failure(49, &text("531"), active), "AccountState(Disabled)");
        is(bind_failure(49, &text("532"), active), "AccountState(PasswordExpired)");
        is(bind_failure(49, &text("533"), active), "AccountState(Disabled)");
        is(bind_failure(49, &text("701"), active), "AccountState(Expired)");
        is(bind_failure(49, &text("773"), active), "AccountState(PasswordExpired)");
        is(bind_failure(49, &text("775"), active), "AccountState(Locked)");
        is(bind_failure(49, &text("fff"), active), "BadPassword");
        // OpenLDAP: plain invalidCredentials; the entry's state explains it.
        is(bind_failure(49, "", active), "BadPassword");
        is(bind_failure(49, "", AccountState::Locked), "AccountState(Locked)");
        is(
            bind_failure(49, &text("52e"), AccountState::Disabled),
            "AccountState(Disabled)",
        );
        // The sub-code wins over the entry's state.
        is(
            bind_failure(49, &text("775"), AccountState::PasswordExpired),
            "AccountState(Locked)",
        );
        is(
            bind_failure(53, "unauthenticated bind (DN with no password) disallowed", active),
            "BadPassword",
        );
        is(bind_failure(48, "", AccountState::Expired), "AccountState(Expired)");
        assert!(matches!(
            bind_failure(8, "BindSimple: Transport encryption required.", active),
            DirError::Unavailable(_)
        ));
        assert!(matches!(
            bind_failure(13, "confidentiality required", active),
            DirError::Unavailable(_)
        ));
        assert!(matches!(bind_failure(52, "", active), DirError::Unavailable(_)));
    }

    #[test]
    fn login_name_plausibility() {
        for ok in [
            "alice",
            "alice@corp.test",
            "CORP\\alice",
            "*",
            "al*",
            "alice)(uid=*",
            "é",
        ] {
            assert!(plausible_login_name(ok), "{ok:?}");
        }
        for bad in ["", "a\0", "alice\0", "alice\n", "\u{7f}x", "\u{85}"] {
            assert!(!plausible_login_name(bad), "{bad:?}");
        }
        assert!(plausible_login_name(&"a".repeat(MAX_USER_LEN)));
        assert!(!plausible_login_name(&"a".repeat(MAX_USER_LEN + 1)));
    }

    #[test]
    fn filters_escape_user_input() {
        let t = DEFAULT_OPENLDAP_FILTER;
        assert_eq!(
            user_search_filter(t, "alice"),
            "(&(objectClass=inetOrgPerson)(uid=alice))"
        );
        assert_eq!(user_search_filter(t, "*"), "(&(objectClass=inetOrgPerson)(uid=\\2a))");
        assert_eq!(
            user_search_filter(t, "alice)(uid=*"),
            "(&(objectClass=inetOrgPerson)(uid=alice\\29\\28uid=\\2a))"
        );
        assert_eq!(
            user_search_filter(t, "a\0"),
            "(&(objectClass=inetOrgPerson)(uid=a\\00))"
        );
        assert_eq!(
            user_search_filter(t, "a\\b"),
            "(&(objectClass=inetOrgPerson)(uid=a\\5cb))"
        );
        let ad = user_search_filter(DEFAULT_AD_FILTER, "al*");
        assert_eq!(
            ad,
            "(&(objectClass=user)(|(sAMAccountName=al\\2a)(userPrincipalName=al\\2a)))"
        );
        for f in [ad, user_search_filter(t, "x)(|(a=*")] {
            assert!(ldap3::parse_filter(&f).is_ok(), "{f}");
        }
        let g = group_member_filter(&["CN=Doe\\, John,OU=x".to_string()]);
        assert!(g.contains("(member=CN=Doe\\5c, John,OU=x)"), "{g}");
        assert!(ldap3::parse_filter(&g).is_ok());
    }

    #[test]
    fn urls() {
        let ok = |u: &str, st: bool| parse_url(u, st).map(|s| (s.url, s.starttls));
        assert_eq!(
            ok("ldaps://dc1.corp.test", false).unwrap(),
            ("ldaps://dc1.corp.test:636".into(), false)
        );
        assert_eq!(
            ok("LDAPS://127.0.0.1:1636/", false).unwrap(),
            ("ldaps://127.0.0.1:1636".into(), false)
        );
        assert_eq!(ok("ldap://dc1:389", true).unwrap(), ("ldap://dc1:389".into(), true));
        assert_eq!(ok("ldap://dc1", true).unwrap(), ("ldap://dc1:389".into(), true));
        let err = |u: &str, st: bool| parse_url(u, st).unwrap_err().to_string();
        assert!(err("ldap://dc1:389", false).contains("in clear"));
        assert!(err("ldaps://dc1", true).contains("starttls"));
        assert!(err("ldapi:///run/slapd", false).contains("scheme"));
        assert!(err("https://dc1", false).contains("scheme"));
        assert!(err("ldaps://", false).contains("no host"));
        assert!(err("ldaps://dc1:0", false).contains("port"));
        assert!(err("ldaps://dc1:99999", false).contains("port"));
        assert!(err("ldaps://dc1/dc=corp", false).contains("only"));
        assert!(err("ldaps://[::1]:636", false).contains("IPv6"));
        assert!(err("ldaps://bad_host!:636", false).contains("TLS server name"));
    }

    #[test]
    fn ssh_keys_from_values() {
        let k = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMptlwWmSavNGueQGHeAIbZUhGSG/tSYns28JF2eBDWz alice@corp.test";
        let values = vec![
            k.to_string(),
            format!("SSHKey:{k}"),
            format!("sshkey: {k}"),
            "X509:<I>DC=test,CN=CA<S>CN=alice".to_string(),
            "not-a-key".to_string(),
            String::new(),
        ];
        let keys = parse_ssh_keys(&values);
        assert_eq!(keys.len(), 3);
        assert!(keys.iter().all(|x| x.key_data() == keys[0].key_data()));
    }

    #[test]
    fn dn_helpers() {
        assert_eq!(first_rdn_value("CN=k8s-ops,CN=Users,DC=corp,DC=test"), "k8s-ops");
        assert_eq!(first_rdn_value("cn=Doe\\, John,ou=people"), "Doe, John");
        assert_eq!(first_rdn_value("cn=caf\\c3\\a9,ou=x"), "café");
        assert_eq!(first_rdn_value("cn = spaced , ou=x"), "spaced");
        assert_eq!(first_rdn_value("uid=a+cn=b,ou=x"), "a");
        assert_eq!(normalize_dn("CN=Sre, OU=Groups,DC=corp"), "cn=sre,ou=groups,dc=corp");
        assert_eq!(
            normalize_dn("cn=sre,ou=groups,dc=corp"),
            normalize_dn("CN=SRE , ou=Groups, DC=Corp")
        );
        assert_ne!(normalize_dn("cn=a\\,b,dc=x"), normalize_dn("cn=a,b,dc=x"));
        let mut g = vec![
            ("b".to_string(), "cn=b,dc=x".to_string()),
            ("A".to_string(), "cn=a,dc=x".to_string()),
            ("a".to_string(), "CN=A,DC=X".to_string()),
        ];
        sort_dedup_groups(&mut g);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].0.to_ascii_lowercase(), "a");
        assert_eq!(g[1].0, "b");
    }

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
