//! The bastion's SSH client connection to a node.
//!
//! Each session logs in with a fresh key pair and a user certificate valid
//! for minutes, naming the user and session in its key id, so the node's
//! own log says who came in. The node's host key must match a pinned key or
//! carry a certificate from the configured host CA; anything else is refused
//! with a message the user can act on.

use std::sync::{Arc, Mutex};

use russh::client::{self, Session};
use russh::keys::PublicKeyOrCertificate;
use russh::{Channel, ChannelOpenFailure, server};
use tracing::{debug, info, warn};

use recorder::ChannelKind;

use super::SessionCtx;
use super::relay::{Relay, RelayKind};

/// A live, authenticated connection to the node, shared by the session's channels.
#[derive(Clone)]
pub struct NodeLink {
    pub handle: Arc<client::Handle<NodeHandler>>,
}

/// Callbacks of the node connection.
pub struct NodeHandler {
    ctx: Arc<SessionCtx>,
    /// Why the host key was refused, for the message to the user.
    host_key_problem: Arc<Mutex<Option<String>>>,
    /// The client's connection, where `-R` connections are handed back.
    client_handle: server::Handle,
}

impl client::Handler for NodeHandler {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let t = &self.ctx.target;
        match crate::ca::verify_node_host_key(key, &t.host_keys, t.host_ca.as_ref(), &t.name) {
            Ok(()) => Ok(true),
            Err(problem) => {
                warn!(session = %self.ctx.id, target = %t.name, %problem, "node host key refused");
                *self.host_key_problem.lock().expect("not poisoned") = Some(problem);
                Ok(false)
            }
        }
    }

    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        channel: Channel<client::Msg>,
        connected_address: &str,
        connected_port: u32,
        originator_address: &str,
        originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let ctx = self.ctx.clone();
        let client_handle = self.client_handle.clone();
        let (address, port) = (connected_address.to_string(), connected_port);
        let (orig_addr, orig_port) = (originator_address.to_string(), originator_port);
        // Opening the client's side waits for the client; do not hold up the
        // node connection's loop meanwhile.
        tokio::spawn(async move {
            let client_channel = match client_handle
                .channel_open_forwarded_tcpip(address.clone(), port, orig_addr, orig_port)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    debug!(session = %ctx.id, error = %e, "client refused a forwarded connection");
                    reply.reject(ChannelOpenFailure::ConnectFailed).await;
                    return;
                }
            };
            let Ok(tap) = ctx.tap.channel(ChannelKind::ForwardedTcpip { address, port }).await else {
                reply.reject(ChannelOpenFailure::ResourceShortage).await;
                return;
            };
            reply.accept().await;
            Relay {
                ctx,
                client: client_channel,
                node: channel,
                tap,
                kind: RelayKind::Forward,
                replies: None,
                client_handle,
            }
            .spawn();
        });
        Ok(())
    }
}

/// Connects and logs in to the session's node as its login.
pub async fn connect(ctx: Arc<SessionCtx>, client_handle: server::Handle) -> Result<NodeLink, String> {
    let bastion = ctx.bastion.clone();
    let target = &ctx.target;
    let server = &bastion.config.server;
    let config = if target.host_ca.is_some() {
        bastion.node_config_with_host_certs.clone()
    } else {
        bastion.node_config.clone()
    };
    let host_key_problem = Arc::new(Mutex::new(None));
    let handler = NodeHandler {
        ctx: ctx.clone(),
        host_key_problem: host_key_problem.clone(),
        client_handle,
    };
    let unreachable = |e: &dyn std::fmt::Display| format!("cannot reach {} ({}): {e}", target.name, target.address);
    let stream = tokio::time::timeout(
        server.node_connect_timeout,
        tokio::net::TcpStream::connect(target.address.as_str()),
    )
    .await
    .map_err(|_| unreachable(&"connection timed out"))?
    .map_err(|e| unreachable(&e))?;
    let _ = stream.set_nodelay(true);
    let handshake = tokio::time::timeout(
        server.node_connect_timeout,
        client::connect_stream(config, stream, handler),
    )
    .await;
    let mut handle = match handshake {
        Err(_) => return Err(unreachable(&"SSH handshake timed out")),
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            if let Some(problem) = host_key_problem.lock().expect("not poisoned").take() {
                return Err(format!(
                    "refusing to connect to {}: {problem}. If the node was reinstalled, an operator must \
                     update its host key in the bastion's configuration.",
                    target.name
                ));
            }
            return Err(unreachable(&e));
        }
    };
    // The node's auth log names the person, the session and, for
    // break-glass, the grant whose reason covers it.
    let mut key_id = format!(
        "{} session={} target={} login={}",
        ctx.identity.user, ctx.id, target.name, ctx.login
    );
    if let Some(bg) = &ctx.access.break_glass {
        key_id.push_str(&format!(" grant={}", bg.grant_id));
    }
    let (key, cert) = bastion
        .authority
        .node_login_certificate(
            &ctx.login,
            &key_id,
            server.node_cert_validity,
            target.allow_local_forwarding || target.allow_remote_forwarding,
        )
        .map_err(|e| format!("cannot sign a login certificate: {e}"))?;
    let auth = handle
        .authenticate_openssh_cert(ctx.login.clone(), Arc::new(key), cert)
        .await
        .map_err(|e| unreachable(&e))?;
    if !auth.success() {
        return Err(format!(
            "{} refused the bastion's certificate for {}: the node must trust the bastion's user CA \
             (TrustedUserCAKeys, see `bastion ca user-ca`) and allow that login",
            target.name, ctx.login
        ));
    }
    info!(session = %ctx.id, target = %target.name, login = %ctx.login, "logged in to node");
    Ok(NodeLink {
        handle: Arc::new(handle),
    })
}
