//! The inner connection of `ssh -J`: an SSH server running on the outer
//! connection's `direct-tcpip` channel, presenting a host certificate for
//! the target's name.
//!
//! The user was proven on the outer connection, so method `none` succeeds
//! for a login the policy allows. When it does not, keyboard-interactive
//! shows the reason (no prompts) before the refusal, so the engineer reads
//! why instead of a bare "Permission denied".

use std::net::SocketAddr;
use std::sync::Arc;

use russh::server::{Auth, ChannelOpenHandle, Handler, Msg, Response, Session};
use russh::{Channel, ChannelId, Pty, Sig};
use tracing::{debug, info};

use crate::config::Target;
use crate::directory::Identity;
use crate::proxy::ProxyConn;

use super::Bastion;

/// Runs the inner server on `channel` until the client closes it.
pub fn spawn(
    bastion: Arc<Bastion>,
    identity: Arc<Identity>,
    target: Target,
    channel: Channel<Msg>,
    peer: SocketAddr,
    updates: Option<tokio::sync::watch::Receiver<Arc<Identity>>>,
) {
    let Some(config) = bastion.inner_config(&target.name) else {
        return;
    };
    let mut proxy = ProxyConn::new(bastion, identity, target, peer);
    if let Some(u) = updates {
        proxy.follow_identity(u);
    }
    let handler = InnerHandler {
        proxy,
        login: None,
        refusal: None,
    };
    tokio::spawn(async move {
        match russh::server::run_stream(config, channel.into_stream(), handler).await {
            Ok(session) => {
                if let Err(e) = session.await {
                    debug!(error = %e, "inner connection ended with an error");
                }
            }
            Err(e) => debug!(error = %e, "inner handshake failed"),
        }
    });
}

pub struct InnerHandler {
    proxy: ProxyConn,
    /// The login the client authenticated as.
    login: Option<String>,
    /// Why the last login was refused, shown through keyboard-interactive.
    refusal: Option<String>,
}

impl Handler for InnerHandler {
    type Error = anyhow::Error;

    async fn auth_none(&mut self, login: &str) -> Result<Auth, Self::Error> {
        match self.proxy.authorize_login(login) {
            policy::Decision::Allow => {
                self.login = Some(login.to_string());
                Ok(Auth::Accept)
            }
            policy::Decision::Deny(why) => {
                info!(target = %self.proxy.target().name, login, reason = %why, "login refused");
                self.refusal = Some(why);
                Ok(Auth::reject())
            }
        }
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        _login: &str,
        _submethods: &str,
        response: Option<Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        match (response, self.refusal.take()) {
            (None, Some(why)) => Ok(Auth::Partial {
                name: "bastion".into(),
                instructions: format!("Access denied: {why}").into(),
                prompts: vec![].into(),
            }),
            _ => Ok(Auth::Reject {
                proceed_with_methods: Some(russh::MethodSet::empty()),
                partial_success: false,
            }),
        }
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        let login = self.login.clone().unwrap_or_default();
        self.proxy.start(&login, session.handle());
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.proxy.open_session(channel, reply).await;
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
        self.proxy
            .open_direct_tcpip(channel, host, port, (originator_address, originator_port), reply)
            .await;
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
        self.proxy.answer_request(channel, session).await;
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _n: &str,
        _v: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.proxy.answer_request(channel, session).await;
        Ok(())
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        self.proxy.answer_request(channel, session).await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.proxy.answer_request(channel, session).await;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.proxy.answer_request(channel, session).await;
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
        Ok(self.proxy.tcpip_forward(address, port).await)
    }

    async fn cancel_tcpip_forward(
        &mut self,
        address: &str,
        port: u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(self.proxy.cancel_tcpip_forward(address, port).await)
    }

    async fn channel_close(&mut self, channel: ChannelId, _session: &mut Session) -> Result<(), Self::Error> {
        self.proxy.channel_closed(channel);
        Ok(())
    }
}
