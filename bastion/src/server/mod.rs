//! The listener: accepts TCP connections within limits, runs the outer SSH
//! server on each, and drains on shutdown.
//!
//! Shutdown follows mini-redis: every connection task holds a clone of a
//! drop-guard sender; after SIGTERM the accept loop stops, the server waits
//! for the guards to drop (sessions finishing on their own) up to the grace
//! period, then broadcasts a forced stop that disconnects what is left.

mod algorithms;
pub mod inner;
pub mod limits;
pub mod login;
pub mod outer;
mod serial;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use russh::keys::Certificate;
use russh::{MethodKind, MethodSet};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, info, warn};

use recorder::Sink;

use crate::alerts::{Alerter, RetryPolicy, Webhook};
use crate::audit::AuditLog;
use crate::ca::Authority;
use crate::config::Config;
use crate::config::DirectoryConfig;
use crate::directory::{EmbeddedDirectory, SharedDirectory};
use crate::state::StateStore;
pub use algorithms::{InnerOffer, inner_offer};
use limits::{Admission, ConnectionLimits, Startup};

/// Host certificates for targets are signed with this lifetime…
const HOST_CERT_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);
/// …and re-signed when older than this, so a long-running bastion never
/// presents an expired one.
const HOST_CERT_REFRESH: Duration = Duration::from_secs(24 * 3600);

/// Everything a connection needs, shared read-only.
pub struct Bastion {
    pub config: Arc<Config>,
    pub authority: Authority,
    /// Who users are: the embedded directory or LDAP / Active Directory.
    pub directory: SharedDirectory,
    /// Shared state: TOTP seeds, used codes, failure counters, tokens, keys.
    pub state: Arc<StateStore>,
    /// Where sessions are recorded; a session whose recording cannot start is refused.
    pub sink: Arc<dyn Sink>,
    /// The outer server (what `ssh bastion` talks to).
    pub outer_config: Arc<russh::server::Config>,
    /// Per target: the inner server presenting that target's host
    /// certificate, and when that certificate was signed.
    inner_configs: std::sync::RwLock<HashMap<String, (std::time::Instant, InnerConfigs)>>,
    /// Client settings towards nodes with pinned keys.
    pub node_config: Arc<russh::client::Config>,
    /// Client settings towards nodes with a host CA (asks for certificates first).
    pub node_config_with_host_certs: Arc<russh::client::Config>,
    pub shutdown: Shutdown,
    pub limits: ConnectionLimits,
    /// The hash-chained audit trail.
    pub audit: Arc<AuditLog>,
    /// Break-glass alerts to webhooks, through the state store's outbox.
    pub alerter: Alerter,
    /// Each cluster's client-signing CA, for `kubeconfig` and `kube-credential`.
    pub kube: crate::kube::Issuers,
    /// One login attempt at a time per user, so back-off holds in parallel.
    attempts: serial::Serial,
}

/// The forced-stop broadcast.
pub struct Shutdown {
    forced: broadcast::Sender<()>,
}

impl Shutdown {
    /// A receiver that fires when remaining sessions must close now.
    pub fn forced(&self) -> broadcast::Receiver<()> {
        self.forced.subscribe()
    }
}

impl Bastion {
    /// Loads keys and builds the SSH configurations from a parsed config.
    pub fn new(config: Config, sink: Arc<dyn Sink>) -> Result<Arc<Bastion>> {
        let s = &config.server;
        let authority = Authority::load(&s.host_key, &s.host_ca, &s.user_ca)?;
        let outer_config = Arc::new(russh::server::Config {
            server_id: russh::SshId::Standard("SSH-2.0-bastion".into()),
            methods: MethodSet::from(
                &[
                    MethodKind::PublicKey,
                    MethodKind::Password,
                    MethodKind::KeyboardInteractive,
                ][..],
            ),
            auth_rejection_time: Duration::from_millis(300),
            auth_rejection_time_initial: Some(Duration::ZERO),
            keys: vec![authority.host_key.clone()],
            preferred: algorithms::outer(),
            inactivity_timeout: Some(s.idle_timeout + Duration::from_secs(60)),
            // No SSH keepalive towards clients: russh would send it before
            // authentication too, and OpenSSH, PuTTY and Dropbear end a login
            // that gets a global request mid-way (a TOTP typed after 30 s).
            // Dead clients are found by TCP keepalive (`run_connection`).
            keepalive_interval: None,
            nodelay: true,
            max_auth_attempts: 6,
            ..Default::default()
        });
        let mut inner_configs = HashMap::new();
        for t in &config.targets {
            inner_configs.insert(
                t.name.clone(),
                (std::time::Instant::now(), inner_config(&authority, &t.name)?),
            );
        }
        let node_config = || russh::client::Config {
            keepalive_interval: Some(s.keepalive_interval),
            keepalive_max: 3,
            nodelay: true,
            preferred: russh::Preferred {
                cipher: std::borrow::Cow::Borrowed(algorithms::NODE_CIPHERS),
                ..Default::default()
            },
            ..Default::default()
        };
        let mut with_certs = node_config();
        with_certs.preferred.host_key_certificates = with_certs.preferred.key.clone();
        let node_config = node_config();
        let kube = crate::kube::Issuers::load(&config)?;
        let directory = open_directory(&config)?;
        let state = Arc::new(open_state(&config)?);
        let mut audit = AuditLog::open(&config.audit.file, config.audit.stdout)?;
        if let Some(socket) = &config.audit.syslog {
            audit = audit.with_syslog(socket);
        }
        let audit = Arc::new(audit);
        let alerter = open_alerter(&config, state.clone())?;
        let limits = ConnectionLimits::new(limits::Limits {
            max_total: s.max_connections,
            max_per_source: s.max_connections_per_source,
            startups: s.max_startups,
            startups_per_source: s.max_startups_per_source,
        });
        let (forced, _) = broadcast::channel(1);
        Ok(Arc::new(Bastion {
            config: Arc::new(config),
            authority,
            directory,
            state,
            sink,
            outer_config,
            inner_configs: std::sync::RwLock::new(inner_configs),
            node_config: Arc::new(node_config),
            node_config_with_host_certs: Arc::new(with_certs),
            shutdown: Shutdown { forced },
            limits,
            audit,
            alerter,
            kube,
            attempts: serial::Serial::default(),
        }))
    }
}

impl Bastion {
    /// The inner server for `target` and this kind of client, re-signing
    /// the target's host certificate when due.
    pub fn inner_config(&self, target: &str, offer: InnerOffer) -> Option<Arc<russh::server::Config>> {
        {
            let map = self.inner_configs.read().expect("not poisoned");
            match map.get(target) {
                None => return None,
                Some((signed, c)) if signed.elapsed() < HOST_CERT_REFRESH => return Some(c.get(offer)),
                Some(_) => {}
            }
        }
        match inner_config(&self.authority, target) {
            Ok(fresh) => {
                let config = fresh.get(offer);
                let mut map = self.inner_configs.write().expect("not poisoned");
                map.insert(target.to_string(), (std::time::Instant::now(), fresh));
                Some(config)
            }
            Err(e) => {
                warn!(target, error = %e, "cannot re-sign the host certificate; keeping the current one");
                self.inner_configs
                    .read()
                    .expect("not poisoned")
                    .get(target)
                    .map(|(_, c)| c.get(offer))
            }
        }
    }
}

/// One target's inner servers, one per [`InnerOffer`], sharing a certificate.
struct InnerConfigs {
    aes_gcm: Arc<russh::server::Config>,
    broad: Arc<russh::server::Config>,
}

impl InnerConfigs {
    fn get(&self, offer: InnerOffer) -> Arc<russh::server::Config> {
        match offer {
            InnerOffer::AesGcm => self.aes_gcm.clone(),
            InnerOffer::Broad => self.broad.clone(),
        }
    }
}

/// The directory the config names.
pub fn open_directory(config: &Config) -> Result<SharedDirectory> {
    Ok(match &config.directory {
        DirectoryConfig::Embedded => Arc::new(EmbeddedDirectory::new(config)),
        DirectoryConfig::Ldap { table, line } => {
            let at = |e: &dyn std::fmt::Display| {
                anyhow::anyhow!(
                    "{}:{line}: `directory.ldap`: {e}",
                    config.base_dir.join("(config)").display()
                )
            };
            let cfg: crate::directory::ldap::LdapConfig = toml::Value::Table(table.clone())
                .try_into()
                .map_err(|e: toml::de::Error| at(&e.message()))?;
            Arc::new(crate::directory::ldap::LdapDirectory::new(cfg, &config.base_dir).map_err(|e| at(&e))?)
        }
    })
}

/// The alert sender for the configured webhooks, secrets read from their files.
pub fn open_alerter(config: &Config, state: Arc<StateStore>) -> Result<Alerter> {
    let mut webhooks = Vec::new();
    for w in &config.alerts.webhooks {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&w.secret_file)
            .with_context(|| format!("the secret of webhook `{}` ({})", w.name, w.secret_file.display()))?
            .permissions()
            .mode();
        anyhow::ensure!(
            mode & 0o077 == 0,
            "the secret file of webhook `{}` ({}) is readable by others (mode {:o}); chmod 600 it",
            w.name,
            w.secret_file.display(),
            mode & 0o777
        );
        let secret = std::fs::read(&w.secret_file).with_context(|| {
            format!(
                "reading the secret of webhook `{}` from {}",
                w.name,
                w.secret_file.display()
            )
        })?;
        let trimmed = zeroize::Zeroizing::new(secret.trim_ascii().to_vec());
        drop(zeroize::Zeroizing::new(secret));
        anyhow::ensure!(
            !trimmed.is_empty(),
            "the secret file of webhook `{}` ({}) is empty",
            w.name,
            w.secret_file.display()
        );
        webhooks.push(Webhook {
            name: w.name.clone(),
            url: w.url.clone(),
            secret: trimmed,
            timeout: w.timeout,
        });
    }
    let retry = RetryPolicy {
        initial: config.alerts.retry_initial,
        max: config.alerts.retry_max,
        ..RetryPolicy::default()
    };
    Alerter::new(state, webhooks, retry)
}

/// Opens the state store, creating its directory and (first run) its key.
pub fn open_state(config: &Config) -> Result<StateStore> {
    let st = &config.state;
    if let Some(parent) = st.db.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    crate::state::create_key_file(&st.key_file)?;
    let policy = crate::factors::lockout::LockoutPolicy {
        max_failures: config.auth.max_failures,
        lock_for: config.auth.lockout,
        ..Default::default()
    };
    Ok(StateStore::open(&st.db, &st.key_file)?.with_lockout_policy(policy))
}

/// The inner SSH server configurations for one target: the bastion's host
/// key with a host certificate naming the target.
fn inner_config(authority: &Authority, target: &str) -> Result<InnerConfigs> {
    let cert: Certificate = authority
        .host_certificate(&[target], &format!("bastion inner host {target}"), HOST_CERT_VALIDITY)
        .with_context(|| format!("signing the host certificate for {target}"))?;
    let config = |offer| {
        Arc::new(russh::server::Config {
            server_id: russh::SshId::Standard("SSH-2.0-bastion".into()),
            methods: MethodSet::from(&[MethodKind::None, MethodKind::KeyboardInteractive][..]),
            auth_rejection_time: Duration::from_millis(100),
            auth_rejection_time_initial: Some(Duration::ZERO),
            keys: vec![authority.host_key.clone()],
            certificates: vec![cert.clone()],
            preferred: algorithms::inner(offer),
            // The outer connection carries keepalives and idle checks.
            inactivity_timeout: None,
            keepalive_interval: None,
            nodelay: true,
            ..Default::default()
        })
    };
    Ok(InnerConfigs {
        aes_gcm: config(InnerOffer::AesGcm),
        broad: config(InnerOffer::Broad),
    })
}

/// Accepts connections until `stop` resolves, then drains.
pub async fn serve(bastion: Arc<Bastion>, listener: TcpListener, stop: impl Future<Output = ()>) -> Result<()> {
    let local = listener.local_addr()?;
    info!(listen = %local, targets = bastion.config.targets.len(), "bastion listening");
    let (guard_tx, mut guard_rx) = mpsc::channel::<()>(1);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let roll = rand::random_range(0..100);
                let (admission, startup) = match bastion.limits.admit(peer.ip(), roll) {
                    Ok(a) => a,
                    Err(why) => {
                        warn!(client = %peer, reason = %why, "connection refused");
                        continue;
                    }
                };
                let b = bastion.clone();
                let guard = guard_tx.clone();
                tokio::spawn(async move {
                    run_connection(b, socket, peer, admission, startup).await;
                    drop(guard);
                });
            }
        }
    }
    drop(listener);
    drop(guard_tx);
    let grace = bastion.config.server.shutdown_grace;
    info!(grace = %humantime::format_duration(grace), "stopped accepting; waiting for sessions to finish");
    if tokio::time::timeout(grace, guard_rx.recv()).await.is_err() {
        warn!("grace period over; closing remaining sessions");
        let _ = bastion.shutdown.forced.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), guard_rx.recv()).await;
    }
    info!("bastion stopped");
    Ok(())
}

/// One outer connection, from handshake to disconnect. Until the client has
/// authenticated, `login_grace_time` from the accept bounds it whatever the
/// protocol state: the socket is dropped, not merely sent a disconnect that
/// russh ignores while key exchange is unfinished.
async fn run_connection(
    bastion: Arc<Bastion>,
    socket: TcpStream,
    peer: SocketAddr,
    _admission: Admission,
    startup: Startup,
) {
    let grace = bastion.config.server.login_grace_time;
    let login_deadline = tokio::time::sleep(grace);
    tokio::pin!(login_deadline);
    let _ = socket.set_nodelay(true);
    set_tcp_keepalive(&socket, bastion.config.server.keepalive_interval);
    // russh runs the session in a task of its own that dropping its handle
    // does not stop: a second handle on the socket shuts it down.
    let Some((socket, closer)) = with_closer(socket) else {
        return;
    };
    let authenticated = Arc::new(AtomicBool::new(false));
    let handler = outer::OuterHandler::new(bastion.clone(), peer, authenticated.clone(), startup);
    let mut forced = bastion.shutdown.forced();
    let session = tokio::select! {
        started = russh::server::run_stream(bastion.outer_config.clone(), socket, handler) => match started {
            Ok(s) => s,
            Err(e) => {
                debug!(client = %peer, error = %e, "handshake failed");
                return;
            }
        },
        _ = &mut login_deadline => {
            info!(client = %peer, "no SSH banner within the login grace time; closed");
            return;
        }
    };
    let handle = session.handle();
    tokio::pin!(session);
    let mut deadline_armed = true;
    loop {
        tokio::select! {
            result = &mut session => {
                if let Err(e) = result {
                    debug!(client = %peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = &mut login_deadline, if deadline_armed => {
                deadline_armed = false;
                if !authenticated.load(Ordering::Relaxed) {
                    info!(client = %peer, "login grace time over; closed");
                    // Said where the protocol state allows it (russh drops
                    // it during key exchange); the socket is shut anyway.
                    let _ = tokio::time::timeout(
                        Duration::from_millis(200),
                        handle.disconnect(russh::Disconnect::ByApplication, "login grace time over".into(), "en".into()),
                    )
                    .await;
                    let _ = closer.shutdown(std::net::Shutdown::Both);
                    return;
                }
            }
            _ = forced.recv() => {
                let _ = handle
                    .disconnect(russh::Disconnect::ByApplication, "bastion: shutting down".into(), "en".into())
                    .await;
                let _ = tokio::time::timeout(Duration::from_secs(3), &mut session).await;
                let _ = closer.shutdown(std::net::Shutdown::Both);
                return;
            }
        }
    }
}

/// The socket, and a second handle on it that can shut it down.
fn with_closer(socket: TcpStream) -> Option<(TcpStream, std::net::TcpStream)> {
    let std = socket.into_std().ok()?;
    let closer = std.try_clone().ok()?;
    Some((TcpStream::from_std(std).ok()?, closer))
}

/// Dead clients are dropped after three unanswered TCP keepalive probes,
/// `interval` apart after `interval` of silence.
fn set_tcp_keepalive(socket: &TcpStream, interval: Duration) {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(interval)
        .with_interval(interval)
        .with_retries(3);
    if let Err(e) = socket2::SockRef::from(socket).set_tcp_keepalive(&keepalive) {
        warn!(error = %e, "cannot set TCP keepalive on a client connection");
    }
}
