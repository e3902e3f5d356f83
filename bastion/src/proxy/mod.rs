//! The proxy: one engineer's session with one node.
//!
//! A [`ProxyConn`] serves a connection whose user is already proven and
//! whose target is known: the inner connection of `ssh -J` (see
//! `server::inner`) or a direct-mode outer connection (`user:login@target`).
//! It logs in to the node with a fresh certificate ([`node`]), and relays
//! each channel the client opens ([`relay`]) through the recording seam.

pub mod node;
pub mod relay;
mod watchdog;

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
use crate::running::{Registration, RunningInfo, RunningSession};
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
    /// The session as the console sees it: watchers, termination.
    pub live: Arc<RunningSession>,
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
    /// Fresh directory answers from the outer connection's live re-check.
    identity_updates: Option<watch::Receiver<Arc<Identity>>>,
    phase: Phase,
    /// Channels accepted only to say why nothing happens: the message goes
    /// out once the client asked for a shell, command or subsystem (sent
    /// before, the client may drop it when its request then fails).
    explaining: HashMap<ChannelId, (Channel<server::Msg>, String)>,
}

/// Where the connection is: before authentication, refused, recorded but
/// not yet let in (held for a watcher), or serving.
enum Phase {
    Authorising,
    /// Every channel shows the user `why` (no access, or no recording).
    Refused(String),
    Opened(Recorded),
    Started(Box<Started>),
}

/// A session whose recording runs and which is listed as running; its end
/// is logged and audited when this goes.
struct Recorded {
    ctx: Arc<SessionCtx>,
    _listed: Registration,
}

/// A session that is recorded and watched.
struct Started {
    ctx: Arc<SessionCtx>,
    _recorded: Recorded,
    client: server::Handle,
    node: Node,
    /// Per client channel: the replies the relay owes, in request order.
    replies: HashMap<ChannelId, mpsc::UnboundedReceiver<oneshot::Receiver<bool>>>,
    /// Stops the watchdog when the connection (and so this struct) goes away.
    _watchdog: AbortOnDrop,
}

/// The node connection, made at the first channel open.
enum Node {
    NotYet,
    Linked(NodeLink),
    Unreachable(String),
}

/// Aborts a task when dropped.
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Drop for Recorded {
    fn drop(&mut self) {
        let ctx = &self.ctx;
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

impl ProxyConn {
    pub fn new(bastion: Arc<Bastion>, identity: Arc<Identity>, target: Target, client_addr: SocketAddr) -> Self {
        ProxyConn {
            bastion,
            identity,
            target,
            client_addr,
            identity_updates: None,
            phase: Phase::Authorising,
            explaining: HashMap::new(),
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
        crate::access::decide_login(&self.bastion, &self.identity, &self.target, login)
    }

    /// Starts the session once the client is authenticated: [`Self::open`]
    /// then [`Self::serve`].
    pub fn start(&mut self, access: policy::Access, handle: server::Handle) {
        if self.open(access).is_some() {
            self.serve(handle);
        }
    }

    /// Opens the session's recording (or keeps the reason it could not) and
    /// lists it as running, before the client is let in: a session held for
    /// a watcher is watched from its first byte. The running session, once
    /// recorded.
    pub fn open(&mut self, access: policy::Access) -> Option<Arc<RunningSession>> {
        let id = new_session_id();
        let meta = self.session_meta(&id, &access);
        let tap = match self.bastion.sink.start(&meta) {
            Ok(tap) => tap,
            Err(e) => {
                warn!(session = %id, user = %self.identity.user, error = %e, "session refused: recording cannot start");
                self.bastion.audit.record(
                    "recording.failed",
                    serde_json::json!({
                        "session": id, "user": self.identity.user, "target": self.target.name,
                        "error": e.to_string(), "outcome": "session refused",
                    }),
                );
                self.phase = Phase::Refused(format!("the session cannot be recorded, so it is not started ({e})"));
                return None;
            }
        };
        let login = access.login.clone();
        let registration = self.bastion.running.register(
            RunningInfo {
                id: id.clone(),
                user: meta.user.clone(),
                target: meta.target.clone(),
                login: login.clone(),
                client: meta.client.clone(),
                started_at: crate::time::now(),
                grant_id: meta.break_glass.as_ref().map(|b| b.grant_id.clone()),
                reason: meta.break_glass.as_ref().map(|b| b.reason.clone()),
                ticket: meta.break_glass.as_ref().and_then(|b| b.ticket.clone()),
                needs_watcher: self.needs_watcher(&access),
            },
            tap.clone(),
        );
        let live = registration.session().clone();
        let ctx = Arc::new(SessionCtx {
            id: id.clone(),
            bastion: self.bastion.clone(),
            identity: self.identity.clone(),
            target: self.target.clone(),
            login: login.clone(),
            client_addr: self.client_addr,
            started: Instant::now(),
            last_activity_ms: AtomicU64::new(0),
            tap,
            access: access.clone(),
            terminals: std::sync::Mutex::new(Vec::new()),
            live: live.clone(),
        });
        self.note_start(&ctx);
        self.phase = Phase::Opened(Recorded {
            ctx,
            _listed: registration,
        });
        Some(live)
    }

    /// Whether the policy holds this session until a second person watches it.
    pub fn needs_watcher(&self, access: &policy::Access) -> bool {
        access.break_glass.is_some() && self.bastion.config.policy.break_glass.watch == policy::WatchRule::Required
    }

    /// Lets the client in to an opened session: the watchdog starts.
    pub fn serve(&mut self, handle: server::Handle) {
        let recorded = match std::mem::replace(&mut self.phase, Phase::Authorising) {
            Phase::Opened(recorded) => recorded,
            // Not recorded (the phase says why): it stays refused.
            refused @ Phase::Refused(_) => {
                self.phase = refused;
                return;
            }
            _ => {
                self.phase = Phase::Refused("session not started".into());
                return;
            }
        };
        let updates = self.identity_updates.clone();
        let watchdog = AbortOnDrop(tokio::spawn(watchdog::run(
            recorded.ctx.clone(),
            handle.clone(),
            updates,
        )));
        self.phase = Phase::Started(Box::new(Started {
            ctx: recorded.ctx.clone(),
            _recorded: recorded,
            client: handle,
            node: Node::NotYet,
            replies: HashMap::new(),
            _watchdog: watchdog,
        }));
    }

    /// What the recording says about who, where and why.
    fn session_meta(&self, id: &str, access: &policy::Access) -> SessionMeta {
        let break_glass = access.break_glass.as_ref().map(|bg| {
            let grant = self.bastion.state.grant(&bg.grant_id).ok().flatten();
            recorder::BreakGlassMeta {
                grant_id: bg.grant_id.clone(),
                reason: grant.as_ref().map(|g| g.reason.clone()).unwrap_or_default(),
                ticket: grant.and_then(|g| g.ticket),
                ends_at: bg.ends_at,
            }
        });
        SessionMeta {
            session_id: id.to_string(),
            user: self.identity.user.clone(),
            groups: self.identity.groups.clone(),
            client: self.client_addr.to_string(),
            target: self.target.name.clone(),
            login: access.login.clone(),
            factors: self.identity.factors.clone(),
            started: SystemTime::now(),
            record_input: access.record_input,
            break_glass,
        }
    }

    /// Logs and audits the start, and alerts a break-glass one.
    fn note_start(&self, ctx: &SessionCtx) {
        let (id, login, access) = (&ctx.id, &ctx.login, &ctx.access);
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
    }

    /// Refuses the session with a message every channel shows the user.
    pub fn refuse(&mut self, why: String) {
        self.phase = Phase::Refused(why);
    }

    /// The started session and its node connection, connecting at the
    /// first call; otherwise what to tell the user.
    async fn node(&mut self) -> Result<(&mut Started, NodeLink), String> {
        let started = match &mut self.phase {
            Phase::Started(s) => s,
            Phase::Refused(why) => return Err(why.clone()),
            Phase::Authorising | Phase::Opened(_) => return Err("session not started".into()),
        };
        if let Node::NotYet = started.node {
            started.node = match node::connect(started.ctx.clone(), started.client.clone()).await {
                Ok(link) => Node::Linked(link),
                Err(e) => {
                    let ctx = &started.ctx;
                    warn!(session = %ctx.id, target = %ctx.target.name, error = %e, "cannot reach node");
                    Node::Unreachable(e)
                }
            };
        }
        match &started.node {
            Node::Linked(link) => {
                let link = link.clone();
                Ok((started, link))
            }
            Node::Unreachable(e) => Err(e.clone()),
            Node::NotYet => unreachable!("connected above"),
        }
    }

    /// A session channel: open the matching channel on the node and relay.
    /// If the node cannot be reached the channel is accepted only to tell
    /// the user why, on stderr, and closed with exit status 255.
    pub async fn open_session(&mut self, channel: Channel<server::Msg>, reply: ChannelOpenHandle) {
        let (started, link) = match self.node().await {
            Ok(x) => x,
            Err(message) => {
                reply.accept().await;
                self.explaining.insert(channel.id(), (channel, message));
                return;
            }
        };
        let ctx = started.ctx.clone();
        let client_handle = started.client.clone();
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
        started.replies.insert(channel.id(), rx);
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
            client_handle,
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
        let (ctx, client_handle, link) = match self.node().await {
            Ok((started, link)) => (started.ctx.clone(), started.client.clone(), link),
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
            client_handle,
        }
        .spawn();
    }

    /// `-R` from the client: ask the node to listen; connections come back
    /// through `node::NodeHandler`.
    pub async fn tcpip_forward(&mut self, address: &str, port: &mut u32) -> bool {
        let Ok((started, link)) = self.node().await else {
            return false;
        };
        if started
            .ctx
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
        let queue = match &mut self.phase {
            Phase::Started(started) => started.replies.get_mut(&channel),
            _ => None,
        };
        let ok = match queue {
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
        self.explaining.remove(&channel);
        if let Phase::Started(started) = &mut self.phase {
            started.replies.remove(&channel);
            if let Ok(mut t) = started.ctx.terminals.lock() {
                t.retain(|c| *c != channel);
            }
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
