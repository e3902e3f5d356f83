//! The listener: accepts TCP connections within limits, runs the outer SSH
//! server on each, and drains on shutdown.
//!
//! Shutdown follows mini-redis: every connection task holds a clone of a
//! drop-guard sender; after SIGTERM the accept loop stops, the server waits
//! for the guards to drop (sessions finishing on their own) up to the grace
//! period, then broadcasts a forced stop that disconnects what is left.

mod algorithms;
mod channels;
pub mod inner;
pub mod limits;
pub mod login;
pub mod outer;
pub mod serial;

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
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::ca::Authority;
pub use crate::context::Bastion;
pub use algorithms::{InnerOffer, inner_offer};
use limits::{Admission, ConnectionLimits, Startup};

/// Host certificates for targets are signed with this lifetime…
const HOST_CERT_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);
/// …and re-signed when older than this, so a long-running bastion never
/// presents an expired one.
const HOST_CERT_REFRESH: Duration = Duration::from_secs(24 * 3600);

/// The SSH servers over the shared context: the outer server's settings,
/// the inner servers per target, connection limits, and the per-user queue
/// of login attempts.
pub struct Server {
    pub bastion: Arc<Bastion>,
    /// The outer server (what `ssh bastion` talks to).
    outer_config: Arc<russh::server::Config>,
    /// Per target: the inner servers presenting that target's host
    /// certificate, and when that certificate was signed.
    inner_configs: std::sync::RwLock<HashMap<String, (std::time::Instant, InnerConfigs)>>,
    limits: ConnectionLimits,
    /// One login attempt at a time per user, so back-off holds in parallel.
    attempts: Arc<serial::Serial>,
}

impl Server {
    /// Builds the SSH server settings for the bastion's config.
    pub fn new(bastion: Arc<Bastion>) -> Result<Arc<Server>> {
        let s = &bastion.config.server;
        let authority = &bastion.authority;
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
        for t in &bastion.config.targets {
            inner_configs.insert(
                t.name.clone(),
                (std::time::Instant::now(), inner_config(authority, &t.name)?),
            );
        }
        let limits = ConnectionLimits::new(limits::Limits {
            max_total: s.max_connections,
            max_per_source: s.max_connections_per_source,
            startups: s.max_startups,
            startups_per_source: s.max_startups_per_source,
        });
        Ok(Arc::new(Server {
            outer_config,
            inner_configs: std::sync::RwLock::new(inner_configs),
            limits,
            attempts: Arc::default(),
            bastion,
        }))
    }

    /// A login over another door (the browser console), waiting its turn in
    /// the same per-user queue as SSH logins.
    pub fn login(&self, peer: std::net::SocketAddr) -> login::Login {
        login::Login::new(self.bastion.clone(), self.attempts.clone(), peer)
    }

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
        match inner_config(&self.bastion.authority, target) {
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
pub async fn serve(server: Arc<Server>, listener: TcpListener, stop: impl Future<Output = ()>) -> Result<()> {
    let bastion = server.bastion.clone();
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
                let (admission, startup) = match server.limits.admit(peer.ip(), roll) {
                    Ok(a) => a,
                    Err(why) => {
                        warn!(client = %peer, reason = %why, "connection refused");
                        continue;
                    }
                };
                let server = server.clone();
                let guard = guard_tx.clone();
                tokio::spawn(async move {
                    run_connection(server, socket, peer, admission, startup).await;
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
        bastion.shutdown.force();
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
    server: Arc<Server>,
    socket: TcpStream,
    peer: SocketAddr,
    _admission: Admission,
    startup: Startup,
) {
    let bastion = &server.bastion;
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
    let handler = outer::OuterHandler::new(server.clone(), peer, authenticated.clone(), startup);
    let mut forced = bastion.shutdown.forced();
    let session = tokio::select! {
        started = russh::server::run_stream(server.outer_config.clone(), socket, handler) => match started {
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
