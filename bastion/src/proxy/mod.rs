//! The proxy: one engineer's session with one node.
//!
//! A [`ProxyConn`] serves a connection whose user is already proven and
//! whose target is known: the inner connection of `ssh -J` (see
//! `server::inner`) or a direct-mode outer connection (`user:login@target`).
//! It logs in to the node with a fresh certificate ([`node`]), and relays
//! each channel the client opens ([`relay`]) through the recording seam.

pub mod node;
pub mod relay;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use russh::server::{self, ChannelOpenHandle, Session};
use russh::{Channel, ChannelId, ChannelOpenFailure};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use recorder::{ChannelKind, SessionMeta, SessionTap};

use crate::config::Target;
use crate::context::Bastion;
use crate::directory::Identity;
use node::NodeLink;
use relay::{Relay, RelayKind};

/// How long the client waits for the node to answer a channel request.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// What every relay of a session shares.
pub struct SessionCtx {
    /// Random id naming the session in logs, certificates and recordings.
    pub id: String,
    pub bastion: Arc<Bastion>,
    pub identity: Arc<Identity>,
    pub target: Target,
    pub login: String,
    pub client_addr: SocketAddr,
    pub started: Instant,
    /// Milliseconds since `started` of the last relayed byte or request,
    /// for the idle timeout.
    last_activity_ms: AtomicU64,
    /// The recording seam for this session.
    pub tap: SessionTap,
    /// What the policy allowed at login: every channel request is checked
    /// against it, and its limits drive the watchdog.
    pub access: policy::Access,
    /// The client's open session channels, where time-box warnings go.
    pub terminals: std::sync::Mutex<Vec<ChannelId>>,
}

impl SessionCtx {
    /// Marks activity (resets the idle clock).
    pub fn touch(&self) {
        self.last_activity_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_activity_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    /// Checks a channel request against the session's access, logging a refusal.
    pub fn check(&self, request: &policy::Request<'_>) -> Result<(), String> {
        let result = self.access.check(request);
        if let Err(why) = &result {
            info!(session = %self.id, user = %self.identity.user, target = %self.target.name, ?request, reason = %why, "request refused by policy");
            self.bastion.audit.record(
                "policy.denied",
                serde_json::json!({
                    "session": self.id, "user": self.identity.user, "target": self.target.name,
                    "request": format!("{request:?}"), "reason": why,
                }),
            );
        }
        result
    }
}

/// A random session id: 16 hex digits.
pub fn new_session_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Per-connection proxy state; the connection's russh handler forwards its
/// callbacks here.
pub struct ProxyConn {
    bastion: Arc<Bastion>,
    identity: Arc<Identity>,
    target: Target,
    client_addr: SocketAddr,
    /// Set once the login is authorised and the session has started (or
    /// failed to start, with the message the user should read).
    ctx: Option<Result<Arc<SessionCtx>, String>>,
    /// The node connection, made at the first channel open.
    node: Option<Result<NodeLink, String>>,
    /// Per client channel: the replies the relay owes, in request order.
    replies: HashMap<ChannelId, mpsc::UnboundedReceiver<oneshot::Receiver<bool>>>,
    /// Channels accepted only to say why nothing happens: the message goes
    /// out once the client asked for a shell, command or subsystem (sent
    /// before, the client may drop it when its request then fails).
    explaining: HashMap<ChannelId, (Channel<server::Msg>, String)>,
    client_handle: Option<server::Handle>,
    /// Stops the watchdog when the connection (and so this struct) goes away.
    watchdog: Option<AbortOnDrop>,
    /// Fresh directory answers from the outer connection's live re-check.
    identity_updates: Option<watch::Receiver<Arc<Identity>>>,
}

/// Aborts a task when dropped.
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Drop for ProxyConn {
    fn drop(&mut self) {
        if let Some(Ok(ctx)) = &self.ctx {
            info!(
                session = %ctx.id, user = %ctx.identity.user, target = %ctx.target.name,
                duration_s = ctx.started.elapsed().as_secs(), "session ended"
            );
            ctx.bastion.audit.record(
                "session.end",
                serde_json::json!({
                    "session": ctx.id, "user": ctx.identity.user, "target": ctx.target.name, "login": ctx.login,
                    "duration_s": ctx.started.elapsed().as_secs(),
                }),
            );
        }
    }
}

impl ProxyConn {
    pub fn new(bastion: Arc<Bastion>, identity: Arc<Identity>, target: Target, client_addr: SocketAddr) -> Self {
        ProxyConn {
            bastion,
            identity,
            target,
            client_addr,
            ctx: None,
            node: None,
            replies: HashMap::new(),
            explaining: HashMap::new(),
            client_handle: None,
            watchdog: None,
            identity_updates: None,
        }
    }

    /// Re-checks of the user (group changes) reach this session through `updates`.
    pub fn follow_identity(&mut self, updates: watch::Receiver<Arc<Identity>>) {
        self.identity_updates = Some(updates);
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }

    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    pub fn bastion(&self) -> &Arc<Bastion> {
        &self.bastion
    }

    /// Whether the user may log in to the target as `login` (with the
    /// break-glass grants they hold now).
    pub fn authorize_login(&self, login: &str) -> policy::Decision {
        if self.identity.enrollment_only {
            return policy::Decision {
                verdict: policy::Verdict::Deny(
                    "TOTP enrollment is required first: `ssh BASTION enroll totp` with a token from an admin".into(),
                ),
                explanation: vec!["the user must enroll TOTP before reaching any target".into()],
            };
        }
        crate::access::decide_login(&self.bastion, &self.identity, &self.target, login)
    }

    /// Starts the session once the client is authenticated as `login`:
    /// opens the recording (or keeps the reason it could not) and starts the
    /// watchdog for idle and maximum time.
    pub fn start(&mut self, access: policy::Access, handle: server::Handle) {
        let id = new_session_id();
        let login = access.login.clone();
        let login = login.as_str();
        let break_glass = access.break_glass.as_ref().map(|bg| {
            let grant = self.bastion.state.grant(&bg.grant_id).ok().flatten();
            recorder::BreakGlassMeta {
                grant_id: bg.grant_id.clone(),
                reason: grant.as_ref().map(|g| g.reason.clone()).unwrap_or_default(),
                ticket: grant.and_then(|g| g.ticket),
                ends_at: bg.ends_at,
            }
        });
        let meta = SessionMeta {
            session_id: id.clone(),
            user: self.identity.user.clone(),
            groups: self.identity.groups.clone(),
            client: self.client_addr.to_string(),
            target: self.target.name.clone(),
            login: login.to_string(),
            factors: self.identity.factors.clone(),
            started: SystemTime::now(),
            record_input: access.record_input,
            break_glass,
        };
        self.client_handle = Some(handle.clone());
        let result = match self.bastion.sink.start(&meta) {
            Ok(tap) => {
                let ctx = Arc::new(SessionCtx {
                    id: id.clone(),
                    bastion: self.bastion.clone(),
                    identity: self.identity.clone(),
                    target: self.target.clone(),
                    login: login.to_string(),
                    client_addr: self.client_addr,
                    started: Instant::now(),
                    last_activity_ms: AtomicU64::new(0),
                    tap,
                    access: access.clone(),
                    terminals: std::sync::Mutex::new(Vec::new()),
                });
                info!(
                    session = %id, user = %self.identity.user, target = %self.target.name,
                    login, client = %self.client_addr, rules = %access.rules.join("; "),
                    break_glass = access.break_glass.as_ref().map(|b| b.grant_id.as_str()).unwrap_or("-"),
                    "session started"
                );
                self.bastion.audit.record(
                    "session.start",
                    serde_json::json!({
                        "session": id, "user": self.identity.user, "groups": self.identity.groups,
                        "factors": self.identity.factors, "client": self.client_addr.to_string(),
                        "target": self.target.name, "login": login, "rules": access.rules,
                        "record_input": access.record_input,
                        "grant": access.break_glass.as_ref().map(|b| b.grant_id.clone()),
                    }),
                );
                if let Some(bg) = &access.break_glass {
                    let (b, identity, session, target, grant, client) = (
                        self.bastion.clone(),
                        self.identity.clone(),
                        id.clone(),
                        self.target.name.clone(),
                        bg.grant_id.clone(),
                        self.client_addr,
                    );
                    let login = login.to_string();
                    tokio::spawn(async move {
                        crate::access::session_started(&b, &identity, &session, &target, &login, &grant, client).await;
                    });
                }
                let updates = self.identity_updates.clone();
                self.watchdog = Some(AbortOnDrop(tokio::spawn(watchdog(ctx.clone(), handle, updates))));
                Ok(ctx)
            }
            Err(e) => {
                warn!(session = %id, user = %self.identity.user, error = %e, "session refused: recording cannot start");
                self.bastion.audit.record(
                    "recording.failed",
                    serde_json::json!({
                        "session": id, "user": self.identity.user, "target": self.target.name,
                        "error": e.to_string(), "outcome": "session refused",
                    }),
                );
                Err(format!("the session cannot be recorded, so it is not started ({e})"))
            }
        };
        self.ctx = Some(result);
    }

    /// Refuses the session with a message every channel shows the user.
    pub fn refuse(&mut self, why: String, handle: server::Handle) {
        self.client_handle = Some(handle);
        self.ctx = Some(Err(why));
    }

    fn ctx(&self) -> Result<Arc<SessionCtx>, String> {
        match &self.ctx {
            Some(Ok(c)) => Ok(c.clone()),
            Some(Err(e)) => Err(e.clone()),
            None => Err("session not started".into()),
        }
    }

    /// The node connection, connecting at the first call.
    async fn node(&mut self) -> Result<(Arc<SessionCtx>, NodeLink), String> {
        let ctx = self.ctx()?;
        if self.node.is_none() {
            let handle = self.client_handle.clone().ok_or("no client handle")?;
            let link = node::connect(ctx.clone(), handle).await;
            if let Err(e) = &link {
                warn!(session = %ctx.id, target = %ctx.target.name, error = %e, "cannot reach node");
            }
            self.node = Some(link);
        }
        match self.node.as_ref().expect("set above") {
            Ok(link) => Ok((ctx, link.clone())),
            Err(e) => Err(e.clone()),
        }
    }

    /// A session channel: open the matching channel on the node and relay.
    /// If the node cannot be reached the channel is accepted only to tell
    /// the user why, on stderr, and closed with exit status 255.
    pub async fn open_session(&mut self, channel: Channel<server::Msg>, reply: ChannelOpenHandle) {
        let (ctx, link) = match self.node().await {
            Ok(x) => x,
            Err(message) => {
                reply.accept().await;
                self.explaining.insert(channel.id(), (channel, message));
                return;
            }
        };
        let node_channel = match link.handle.channel_open_session().await {
            Ok(c) => c,
            Err(e) => {
                warn!(session = %ctx.id, error = %e, "node refused a session channel");
                reply.reject(ChannelOpenFailure::ConnectFailed).await;
                return;
            }
        };
        let tap = match ctx.tap.channel(ChannelKind::Session).await {
            Ok(t) => t,
            Err(e) => {
                reply.accept().await;
                self.explaining.insert(channel.id(), (channel, e.to_string()));
                return;
            }
        };
        reply.accept().await;
        let (tx, rx) = mpsc::unbounded_channel();
        self.replies.insert(channel.id(), rx);
        if let Ok(mut t) = ctx.terminals.lock() {
            t.push(channel.id());
        }
        ctx.bastion.audit.record(
            "channel.open",
            serde_json::json!({"session": ctx.id, "user": ctx.identity.user, "target": ctx.target.name, "kind": "session"}),
        );
        Relay {
            ctx,
            client: channel,
            node: node_channel,
            tap,
            kind: RelayKind::Session,
            replies: Some(tx),
            client_handle: self.client_handle.clone().expect("set at start"),
        }
        .spawn();
    }

    /// `-L` / `-D` from the client: the node makes the TCP connection, so
    /// the node's own sshd rules apply on top of ours.
    pub async fn open_direct_tcpip(
        &mut self,
        channel: Channel<server::Msg>,
        host: &str,
        port: u32,
        originator: (&str, u32),
        reply: ChannelOpenHandle,
    ) {
        let (ctx, link) = match self.node().await {
            Ok(x) => x,
            Err(_) => {
                reply.reject(ChannelOpenFailure::ConnectFailed).await;
                return;
            }
        };
        if ctx.check(&policy::Request::LocalForward { host, port }).is_err() {
            reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
            return;
        }
        let node_channel = match link
            .handle
            .channel_open_direct_tcpip(host, port, originator.0, originator.1)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                info!(session = %ctx.id, host, port, error = %e, "node could not open forward");
                reply.reject(ChannelOpenFailure::ConnectFailed).await;
                return;
            }
        };
        let kind = ChannelKind::DirectTcpip {
            host: host.to_string(),
            port,
        };
        let Ok(tap) = ctx.tap.channel(kind).await else {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return;
        };
        reply.accept().await;
        ctx.bastion.audit.record(
            "channel.open",
            serde_json::json!({
                "session": ctx.id, "user": ctx.identity.user, "target": ctx.target.name,
                "kind": "direct-tcpip", "host": host, "port": port,
            }),
        );
        Relay {
            ctx,
            client: channel,
            node: node_channel,
            tap,
            kind: RelayKind::Forward,
            replies: None,
            client_handle: self.client_handle.clone().expect("set at start"),
        }
        .spawn();
    }

    /// `-R` from the client: ask the node to listen; connections come back
    /// through `node::NodeHandler`.
    pub async fn tcpip_forward(&mut self, address: &str, port: &mut u32) -> bool {
        let Ok((ctx, link)) = self.node().await else {
            return false;
        };
        if ctx
            .check(&policy::Request::RemoteForward { address, port: *port })
            .is_err()
        {
            return false;
        }
        match link.handle.tcpip_forward(address, *port).await {
            Ok(bound) => {
                if *port == 0 {
                    *port = bound;
                }
                true
            }
            Err(_) => false,
        }
    }

    pub async fn cancel_tcpip_forward(&mut self, address: &str, port: u32) -> bool {
        let Ok((_, link)) = self.node().await else {
            return false;
        };
        link.handle.cancel_tcpip_forward(address, port).await.is_ok()
    }

    /// Answers the client's channel request with what the node (or our
    /// policy) said, in order.
    /// `starts`: a shell, exec or subsystem request (not pty or env).
    pub async fn answer_request(&mut self, channel: ChannelId, session: &mut Session, starts: bool) {
        if self.explaining.contains_key(&channel) {
            // Accepted, so that the client reads the explanation and the
            // exit status instead of "request failed".
            let _ = session.channel_success(channel);
            if starts && let Some((ch, message)) = self.explaining.remove(&channel) {
                tokio::spawn(explain_and_close(ch, message));
            }
            return;
        }
        let ok = match self.replies.get_mut(&channel) {
            None => false,
            Some(queue) => match tokio::time::timeout(REPLY_TIMEOUT, queue.recv()).await {
                Ok(Some(rx)) => matches!(tokio::time::timeout(REPLY_TIMEOUT, rx).await, Ok(Ok(true))),
                _ => false,
            },
        };
        let _ = if ok {
            session.channel_success(channel)
        } else {
            session.channel_failure(channel)
        };
    }

    pub fn channel_closed(&mut self, channel: ChannelId) {
        self.replies.remove(&channel);
        self.explaining.remove(&channel);
        if let Some(Ok(ctx)) = &self.ctx
            && let Ok(mut t) = ctx.terminals.lock()
        {
            t.retain(|c| *c != channel);
        }
    }
}

/// Tells the user on stderr why nothing happens, and closes the channel.
async fn explain_and_close(channel: Channel<server::Msg>, message: String) {
    let text = format!("bastion: {message}\r\n");
    let _ = channel
        .extended_data_bytes(1, bytes::Bytes::from(text.into_bytes()))
        .await;
    let _ = channel.exit_status(255).await;
    let _ = channel.eof().await;
    let _ = channel.close().await;
}

/// Closes the session when it has been idle too long, has run too long,
/// its break-glass time box ended (warning the terminal before), its user
/// lost access, or the bastion is shutting down past its grace period.
async fn watchdog(ctx: Arc<SessionCtx>, handle: server::Handle, mut updates: Option<watch::Receiver<Arc<Identity>>>) {
    let limits = ctx.access.limits;
    let break_glass_end = ctx.access.break_glass.as_ref().map(|b| b.ends_at);
    let warn_before = ctx.bastion.config.policy.break_glass.warn_before.as_secs() as i64;
    let mut warned = false;
    let mut forced = ctx.bastion.shutdown.forced();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let reason = loop {
        let update = async {
            match updates.as_mut() {
                Some(rx) => rx.changed().await.map(|_| rx.borrow_and_update().clone()),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tick.tick() => {}
            _ = forced.recv() => break "the bastion is shutting down".to_string(),
            fresh = update => match fresh {
                Ok(identity) => {
                    let decision = crate::access::decide_login(&ctx.bastion, &identity, &ctx.target, &ctx.login);
                    if !decision.is_allowed() {
                        let why = match decision.verdict {
                            policy::Verdict::Deny(why) => why,
                            _ => "a break-glass reason is required again".to_string(),
                        };
                        break format!("access revoked: {why}; session closed");
                    }
                }
                // The outer connection is gone; so is this session.
                Err(_) => updates = None,
            },
        }
        if let Some(end) = break_glass_end {
            let now = crate::time::now();
            if now >= end {
                break format!(
                    "the break-glass time box for {} ended at {}; session closed",
                    ctx.target.name,
                    crate::time::rfc3339(end)
                );
            }
            let has_terminal = ctx.terminals.lock().map(|t| !t.is_empty()).unwrap_or(false);
            if !warned && has_terminal && now >= end - warn_before {
                warned = true;
                let text = format!(
                    "\r\nbastion: break-glass access to {} ends in {} s (at {}); the session will be closed then\r\n",
                    ctx.target.name,
                    end - now,
                    crate::time::rfc3339(end)
                );
                let channels = ctx.terminals.lock().map(|t| t.clone()).unwrap_or_default();
                for channel in channels {
                    let _ = handle.extended_data(channel, 1, text.clone().into_bytes()).await;
                }
                info!(session = %ctx.id, ends_at = end, "break-glass time box warning sent");
            }
        }
        if ctx.idle_for() >= limits.idle_timeout {
            break format!(
                "idle for {}; session closed",
                humantime::format_duration(limits.idle_timeout)
            );
        }
        if ctx.started.elapsed() >= limits.max_session {
            if let Some(end) = break_glass_end.filter(|e| crate::time::now() + 2 >= *e) {
                break format!(
                    "the break-glass time box for {} ended at {}; session closed",
                    ctx.target.name,
                    crate::time::rfc3339(end)
                );
            }
            break format!(
                "maximum session length of {} reached; session closed",
                humantime::format_duration(limits.max_session)
            );
        }
    };
    info!(session = %ctx.id, user = %ctx.identity.user, %reason, "closing session");
    let _ = handle
        .disconnect(
            russh::Disconnect::ByApplication,
            format!("bastion: {reason}"),
            "en".into(),
        )
        .await;
}
