//! The outer connection: what `ssh bastion` and the first hop of `ssh -J`
//! talk to.
//!
//! It authenticates the engineer, then serves one of three things:
//! * `direct-tcpip` to a target's SSH port (ProxyJump): an inner SSH server
//!   on that channel ([`super::inner`]);
//! * session channels when the user name is `user:login@target` (direct
//!   mode): relayed to the node like an inner connection;
//! * session channels otherwise: bastion commands (`targets`, `whoami`…),
//!   never a shell.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use russh::server::{Auth, ChannelOpenHandle, Handler, Msg, PublicKeyOffer, Response, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure, MethodKind, MethodSet};
use tracing::{info, warn};

use crate::access::{Fresh, fresh_identity};
use crate::commands;
use crate::directory::Identity;
use crate::proxy::{AbortOnDrop, ProxyConn};

use super::channels::{Channels, Request};
use super::login::Login;

use super::{Bastion, Server};

/// A user name as typed: `alice`, or `alice:root@node-1` for direct mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginName {
    pub user: String,
    /// `(login, target)` in direct mode.
    pub direct: Option<(String, String)>,
}

/// Splits `user[:login@target]`; `None` when it is malformed.
pub fn parse_login_name(raw: &str) -> Option<LoginName> {
    match raw.split_once(':') {
        None => crate::config::valid_name(raw).then(|| LoginName {
            user: raw.to_string(),
            direct: None,
        }),
        Some((user, rest)) => {
            let (login, target) = rest.rsplit_once('@')?;
            let ok = crate::config::valid_name(user)
                && crate::config::valid_name(login)
                && crate::config::valid_name(target);
            ok.then(|| LoginName {
                user: user.to_string(),
                direct: Some((login.to_string(), target.to_string())),
            })
        }
    }
}

pub struct OuterHandler {
    server: Arc<Server>,
    peer: SocketAddr,
    /// Read by the connection task to enforce the login grace time.
    authenticated: Arc<AtomicBool>,
    /// Factors proven so far, until a combination is complete.
    login: Login,
    phase: Phase,
}

/// Where the connection is.
enum Phase {
    /// Proving factors, holding an unauthenticated slot
    /// (`server.max_startups`), given back once the client is in.
    Proving {
        _slot: super::limits::Startup,
    },
    Serving(Box<Serving>),
}

/// An authenticated connection.
struct Serving {
    /// The user as proven at login.
    identity: Arc<Identity>,
    /// The live re-check publishes fresh identities here; sessions follow.
    updates: tokio::sync::watch::Sender<Arc<Identity>>,
    recheck: Recheck,
    mode: Mode,
}

/// The live re-check of the user against the directory.
enum Recheck {
    /// Starts once russh hands over the session.
    Pending,
    /// Stops when the connection ends.
    Running { _task: AbortOnDrop },
    /// Emergency accounts have no directory behind them.
    Never,
}

/// What the connection's channels are for.
enum Mode {
    /// Bastion commands on session channels, and jumps over `direct-tcpip`.
    Bastion(CommandChannels),
    /// `user:login@target`: every channel relayed to the one target, with
    /// what the policy said of the login.
    Direct {
        proxy: Box<ProxyConn>,
        access: Result<policy::Access, String>,
    },
}

/// Session channels waiting for the command they will run.
#[derive(Default)]
struct CommandChannels {
    open: HashMap<ChannelId, Channel<Msg>>,
    /// Channels with a PTY (output needs CR LF, input echo).
    ptys: HashSet<ChannelId>,
}

impl OuterHandler {
    pub fn new(
        server: Arc<Server>,
        peer: SocketAddr,
        authenticated: Arc<AtomicBool>,
        startup: super::limits::Startup,
    ) -> Self {
        OuterHandler {
            login: Login::new(server.bastion.clone(), server.attempts.clone(), peer),
            server,
            peer,
            authenticated,
            phase: Phase::Proving { _slot: startup },
        }
    }

    fn bastion(&self) -> &Arc<Bastion> {
        &self.server.bastion
    }

    /// A combination of factors is complete: settle identity and, in direct
    /// mode, whether the login on the target is allowed.
    fn settle(&mut self, auth: Auth) -> Auth {
        if !matches!(auth, Auth::Accept) {
            return auth;
        }
        let Some((identity, name)) = self.login.outcome.clone() else {
            return Auth::reject();
        };
        let (updates, follow) = tokio::sync::watch::channel(identity.clone());
        let mode = match &name.direct {
            None => Mode::Bastion(CommandChannels::default()),
            Some((login, target_name)) => match self.direct_mode(&identity, login, target_name) {
                Some((access, mut proxy)) => {
                    proxy.follow_identity(follow);
                    Mode::Direct {
                        proxy: Box::new(proxy),
                        access,
                    }
                }
                None => return Auth::reject(),
            },
        };
        let recheck = if identity.emergency {
            Recheck::Never
        } else {
            Recheck::Pending
        };
        self.phase = Phase::Serving(Box::new(Serving {
            identity,
            updates,
            recheck,
            mode,
        }));
        Auth::Accept
    }

    /// Direct mode: the proxy to the target and what the policy says of the
    /// login; `None` when the login is refused outright.
    fn direct_mode(
        &self,
        identity: &Arc<Identity>,
        login: &str,
        target_name: &str,
    ) -> Option<(Result<policy::Access, String>, ProxyConn)> {
        let bastion = self.bastion();
        let Some(target) = bastion.config.target(target_name) else {
            warn!(user = %identity.user, target = %target_name, client = %self.peer, "direct mode: unknown target");
            return None;
        };
        let proxy = ProxyConn::new(bastion.clone(), identity.clone(), target.clone(), self.peer);
        let decision = proxy.authorize_login(login);
        let access = match decision.verdict {
            policy::Verdict::Allow(access) => Ok(access),
            policy::Verdict::Deny(why) => {
                warn!(
                    user = %identity.user, target = %target_name, reason = %why,
                    explanation = ?decision.explanation, "login refused"
                );
                bastion.audit.record(
                    "policy.denied",
                    serde_json::json!({
                        "user": identity.user, "target": target_name, "login": login,
                        "reason": why, "explanation": decision.explanation,
                    }),
                );
                return None;
            }
            // Direct mode has no inner prompt: the session channel
            // explains how to state a reason.
            policy::Verdict::NeedsReason { ticket } => Err(format!(
                "{target_name} is break-glass only: state a reason first with `ssh BASTION breakglass \
                 {target_name} --reason TEXT{}`, or connect with `ssh -J` to be asked",
                if ticket.is_some() { " --ticket ID" } else { "" }
            )),
        };
        Some((access, proxy))
    }

    /// Where the channel callbacks go ([`super::channels`]).
    fn channels(&mut self) -> &mut Self {
        self
    }
}

impl Handler for OuterHandler {
    type Error = anyhow::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(
                &[MethodKind::PublicKey, MethodKind::KeyboardInteractive][..],
            )),
            partial_success: false,
        })
    }

    async fn auth_publickey_offered(&mut self, user: &str, offer: PublicKeyOffer<'_>) -> Result<Auth, Self::Error> {
        Ok(if self.login.key_offered(user, offer.public_key).await {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn auth_publickey(&mut self, user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        let auth = self.login.key_verified(user, key.public_key).await;
        Ok(self.settle(auth))
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        let auth = self.login.keyboard_interactive(user, response).await;
        Ok(self.settle(auth))
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        self.authenticated.store(true, Ordering::Relaxed);
        let bastion = self.server.bastion.clone();
        let Phase::Serving(serving) = &mut self.phase else {
            return Ok(());
        };
        let handle = session.handle();
        if let Recheck::Pending = serving.recheck {
            let task = recheck(
                bastion,
                serving.identity.clone(),
                serving.updates.clone(),
                handle.clone(),
            );
            serving.recheck = Recheck::Running {
                _task: AbortOnDrop(tokio::spawn(task)),
            };
        }
        if let Mode::Direct { proxy, access } = &mut serving.mode {
            match access.clone() {
                Ok(access) => proxy.start(access, handle),
                Err(why) => proxy.refuse(why),
            }
        }
        Ok(())
    }

    super::channels::serve_channels!(channels);
}

/// Channels before authentication cannot be opened (russh refuses them);
/// after it they are relayed in direct mode, else served here.
impl Channels for OuterHandler {
    async fn open_session(&mut self, channel: Channel<Msg>, reply: ChannelOpenHandle) {
        match self.serving_mode() {
            Some(Mode::Direct { proxy, .. }) => proxy.open_session(channel, reply).await,
            Some(Mode::Bastion(commands)) => {
                commands.open.insert(channel.id(), channel);
                reply.accept().await;
            }
            None => reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await,
        }
    }

    async fn open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host: &str,
        port: u32,
        originator: (&str, u32),
        reply: ChannelOpenHandle,
    ) {
        match self.serving_mode() {
            Some(Mode::Direct { proxy, .. }) => proxy.open_direct_tcpip(channel, host, port, originator, reply).await,
            Some(Mode::Bastion(_)) => self.jump(channel, host, port, reply).await,
            None => reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await,
        }
    }

    async fn request(&mut self, channel: ChannelId, request: Request<'_>, session: &mut Session) {
        let commands = match self.serving_mode() {
            Some(Mode::Direct { proxy, .. }) => return proxy.answer_request(channel, session, request.starts()).await,
            Some(Mode::Bastion(commands)) => commands,
            None => {
                let _ = session.channel_failure(channel);
                return;
            }
        };
        let line = match request {
            Request::Pty => {
                commands.ptys.insert(channel);
                let _ = session.channel_success(channel);
                return;
            }
            Request::Env | Request::Subsystem => {
                let _ = session.channel_failure(channel);
                return;
            }
            Request::Shell => "help --shell".to_string(),
            Request::Exec(data) => String::from_utf8_lossy(data).into_owned(),
        };
        let _ = session.channel_success(channel);
        self.run_command(channel, &line);
    }

    async fn tcpip_forward(&mut self, address: &str, port: &mut u32) -> bool {
        match self.serving_mode() {
            Some(Mode::Direct { proxy, .. }) => proxy.tcpip_forward(address, port).await,
            _ => false,
        }
    }

    async fn cancel_tcpip_forward(&mut self, address: &str, port: u32) -> bool {
        match self.serving_mode() {
            Some(Mode::Direct { proxy, .. }) => proxy.cancel_tcpip_forward(address, port).await,
            _ => false,
        }
    }

    fn channel_closed(&mut self, channel: ChannelId) {
        match self.serving_mode() {
            Some(Mode::Direct { proxy, .. }) => proxy.channel_closed(channel),
            Some(Mode::Bastion(commands)) => {
                commands.open.remove(&channel);
            }
            None => {}
        }
    }
}

impl OuterHandler {
    fn serving_mode(&mut self) -> Option<&mut Mode> {
        match &mut self.phase {
            Phase::Serving(serving) => Some(&mut serving.mode),
            Phase::Proving { .. } => None,
        }
    }

    /// `ssh -J`'s second hop: an inner SSH server on the channel, for a
    /// target's SSH port only.
    async fn jump(&mut self, channel: Channel<Msg>, host: &str, port: u32, reply: ChannelOpenHandle) {
        let Phase::Serving(serving) = &self.phase else {
            return reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
        };
        let identity = serving.identity.clone();
        match self.server.bastion.config.target(host) {
            Some(target) if port == 22 => {
                info!(user = %identity.user, target = %target.name, client = %self.peer, "jump to target");
                reply.accept().await;
                let updates = Some(serving.updates.subscribe());
                super::inner::spawn(
                    self.server.clone(),
                    identity,
                    target.clone(),
                    channel,
                    self.peer,
                    updates,
                );
            }
            Some(target) => {
                warn!(user = %identity.user, target = %target.name, port, "refused: only the SSH port of a target is reachable");
                reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
            }
            None => {
                warn!(user = %identity.user, host, port, client = %self.peer, "refused: unknown target");
                reply.reject(ChannelOpenFailure::ConnectFailed).await;
            }
        }
    }

    /// Runs a bastion command on a command channel and closes it.
    fn run_command(&mut self, channel: ChannelId, line: &str) {
        let Phase::Serving(serving) = &mut self.phase else {
            return;
        };
        let Mode::Bastion(commands) = &mut serving.mode else {
            return;
        };
        let Some(ch) = commands.open.remove(&channel) else {
            return;
        };
        let pty = commands.ptys.remove(&channel);
        let ctx = commands::CommandCtx {
            bastion: self.server.bastion.clone(),
            // The latest groups from the live re-check, not those of login.
            identity: serving.updates.borrow().clone(),
            client: self.peer,
        };
        let line = line.to_string();
        tokio::spawn(async move {
            commands::run_on(&ctx, &line, commands::io::ChannelIo::new(ch, pty)).await;
        });
    }
}

/// Re-validates the user against the directory every `auth.recheck_interval`:
/// an account that is gone, disabled, locked or expired is cut off; fresh
/// groups go to the sessions, which close if their login is no longer allowed.
/// A directory that cannot be reached leaves running sessions alone.
async fn recheck(
    bastion: Arc<Bastion>,
    identity: Arc<Identity>,
    updates: tokio::sync::watch::Sender<Arc<Identity>>,
    handle: russh::server::Handle,
) {
    let every = bastion.config.auth.recheck_interval;
    loop {
        tokio::time::sleep(every).await;
        let reason = match fresh_identity(&bastion, &identity, None).await {
            Fresh::Current(fresh) => {
                updates.send_replace(Arc::new(fresh));
                continue;
            }
            Fresh::Revoked(reason) => reason,
            Fresh::Unavailable(e) => {
                warn!(user = %identity.user, error = %e, "live re-check: directory unavailable; sessions continue");
                continue;
            }
            Fresh::Slow => continue,
        };
        warn!(user = %identity.user, %reason, "live re-check: access revoked; disconnecting");
        let _ = handle
            .disconnect(
                russh::Disconnect::ByApplication,
                format!("bastion: access revoked ({reason}); session closed"),
                "en".into(),
            )
            .await;
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_names() {
        assert_eq!(
            parse_login_name("alice"),
            Some(LoginName {
                user: "alice".into(),
                direct: None
            })
        );
        assert_eq!(
            parse_login_name("alice:root@node-1"),
            Some(LoginName {
                user: "alice".into(),
                direct: Some(("root".into(), "node-1".into()))
            })
        );
        assert_eq!(parse_login_name("alice:root"), None);
        assert_eq!(parse_login_name("alice:@node-1"), None);
        assert_eq!(parse_login_name("a b"), None);
        assert_eq!(parse_login_name("alice:root@node-1@x"), None);
        assert_eq!(parse_login_name(""), None);
    }
}
