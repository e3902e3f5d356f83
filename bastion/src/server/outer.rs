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

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use russh::server::{Auth, ChannelOpenHandle, Handler, Msg, PublicKeyOffer, Response, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure, MethodKind, MethodSet, Pty, Sig};
use tracing::{info, warn};

use crate::access::{Fresh, fresh_identity};
use crate::commands;
use crate::directory::Identity;
use crate::proxy::ProxyConn;

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
    bastion: Arc<Bastion>,
    peer: SocketAddr,
    /// Read by the connection task to enforce the login grace time.
    authenticated: Arc<AtomicBool>,
    /// The unauthenticated connection's slot (`server.max_startups`),
    /// given back once the client has authenticated.
    startup: Option<super::limits::Startup>,
    /// Factors proven so far, until a combination is complete.
    login: Login,
    identity: Option<Arc<Identity>>,
    /// Direct mode: the login and the proxy to the target.
    /// Direct mode: what the policy said about the login, and the proxy.
    direct: Option<(Result<policy::Access, String>, ProxyConn)>,
    /// Session channels running bastion commands.
    command_channels: HashMap<ChannelId, Channel<Msg>>,
    /// Command channels with a PTY (output needs CR LF, input echo).
    command_ptys: std::collections::HashSet<ChannelId>,
    /// The live re-check publishes fresh identities here; sessions follow.
    identity_updates: Option<tokio::sync::watch::Sender<Arc<Identity>>>,
    /// Stops the re-check when the connection ends.
    _recheck: Option<crate::proxy::AbortOnDrop>,
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
            bastion: server.bastion.clone(),
            server,
            peer,
            authenticated,
            startup: Some(startup),
            identity: None,
            direct: None,
            command_channels: HashMap::new(),
            command_ptys: Default::default(),
            identity_updates: None,
            _recheck: None,
        }
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
        if let Some((login, target_name)) = &name.direct {
            let Some(target) = self.bastion.config.target(target_name) else {
                warn!(user = %identity.user, target = %target_name, client = %self.peer, "direct mode: unknown target");
                return Auth::reject();
            };
            let proxy = ProxyConn::new(self.bastion.clone(), identity.clone(), target.clone(), self.peer);
            let decision = proxy.authorize_login(login);
            let access = match decision.verdict {
                policy::Verdict::Allow(access) => Ok(access),
                policy::Verdict::Deny(why) => {
                    warn!(
                        user = %identity.user, target = %target_name, reason = %why,
                        explanation = ?decision.explanation, "login refused"
                    );
                    self.bastion.audit.record(
                        "policy.denied",
                        serde_json::json!({
                            "user": identity.user, "target": target_name, "login": login,
                            "reason": why, "explanation": decision.explanation,
                        }),
                    );
                    return Auth::reject();
                }
                // Direct mode has no inner prompt: the session channel
                // explains how to state a reason.
                policy::Verdict::NeedsReason { ticket } => Err(format!(
                    "{target_name} is break-glass only: state a reason first with `ssh BASTION breakglass \
                     {target_name} --reason TEXT{}`, or connect with `ssh -J` to be asked",
                    if ticket.is_some() { " --ticket ID" } else { "" }
                )),
            };
            self.direct = Some((access, proxy));
        }
        let (tx, rx) = tokio::sync::watch::channel(identity.clone());
        if let Some((_, proxy)) = self.direct.as_mut() {
            proxy.follow_identity(rx);
        }
        self.identity_updates = Some(tx);
        self.identity = Some(identity);
        Auth::Accept
    }

    fn proxy(&mut self) -> Option<&mut ProxyConn> {
        self.direct.as_mut().map(|(_, p)| p)
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
        self.startup = None;
        let handle = session.handle();
        if let (Some(identity), Some(updates)) = (self.identity.clone(), self.identity_updates.clone())
            && !identity.emergency
        {
            let task = tokio::spawn(recheck(self.bastion.clone(), identity, updates, handle.clone()));
            self._recheck = Some(crate::proxy::AbortOnDrop(task));
        }
        if let Some((access, proxy)) = self.direct.as_mut() {
            match access.clone() {
                Ok(access) => proxy.start(access, handle),
                Err(why) => proxy.refuse(why, handle),
            }
        }
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(proxy) = self.proxy() {
            proxy.open_session(channel, reply).await;
        } else {
            self.command_channels.insert(channel.id(), channel);
            reply.accept().await;
        }
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host: &str,
        port: u32,
        originator_address: &str,
        originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(proxy) = self.proxy() {
            proxy
                .open_direct_tcpip(channel, host, port, (originator_address, originator_port), reply)
                .await;
            return Ok(());
        }
        let identity = self.identity.clone().expect("channels open only after authentication");
        match self.bastion.config.target(host) {
            Some(target) if port == 22 => {
                info!(user = %identity.user, target = %target.name, client = %self.peer, "jump to target");
                reply.accept().await;
                let updates = self.identity_updates.as_ref().map(|u| u.subscribe());
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
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _cols: u32,
        _rows: u32,
        _pw: u32,
        _ph: u32,
        _modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.proxy() {
            Some(p) => p.answer_request(channel, session, false).await,
            None => {
                self.command_ptys.insert(channel);
                session.channel_success(channel)?
            }
        }
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.proxy() {
            Some(p) => p.answer_request(channel, session, false).await,
            None => session.channel_failure(channel)?,
        }
        Ok(())
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        if let Some(p) = self.proxy() {
            p.answer_request(channel, session, true).await;
            return Ok(());
        }
        session.channel_success(channel)?;
        self.run_command(channel, "help --shell");
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(p) = self.proxy() {
            p.answer_request(channel, session, true).await;
            return Ok(());
        }
        session.channel_success(channel)?;
        let line = String::from_utf8_lossy(data).into_owned();
        self.run_command(channel, &line);
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.proxy() {
            Some(p) => p.answer_request(channel, session, true).await,
            None => session.channel_failure(channel)?,
        }
        Ok(())
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single: bool,
        _proto: &str,
        _cookie: &str,
        _screen: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn agent_request(&mut self, _channel: ChannelId, _session: &mut Session) -> Result<bool, Self::Error> {
        Ok(false)
    }

    async fn signal(&mut self, _channel: ChannelId, _signal: Sig, _session: &mut Session) -> Result<(), Self::Error> {
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(match self.proxy() {
            Some(p) => p.tcpip_forward(address, port).await,
            None => false,
        })
    }

    async fn cancel_tcpip_forward(
        &mut self,
        address: &str,
        port: u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(match self.proxy() {
            Some(p) => p.cancel_tcpip_forward(address, port).await,
            None => false,
        })
    }

    async fn channel_close(&mut self, channel: ChannelId, _session: &mut Session) -> Result<(), Self::Error> {
        if let Some(p) = self.proxy() {
            p.channel_closed(channel);
        }
        self.command_channels.remove(&channel);
        Ok(())
    }
}

impl OuterHandler {
    /// Runs a bastion command on a command channel and closes it.
    fn run_command(&mut self, channel: ChannelId, line: &str) {
        let Some(ch) = self.command_channels.remove(&channel) else {
            return;
        };
        let pty = self.command_ptys.remove(&channel);
        // The latest groups from the live re-check, not those of login.
        let identity = match &self.identity_updates {
            Some(updates) => updates.borrow().clone(),
            None => self.identity.clone().expect("commands run only after authentication"),
        };
        let ctx = commands::CommandCtx {
            bastion: self.bastion.clone(),
            identity,
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
