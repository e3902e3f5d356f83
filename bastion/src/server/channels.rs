//! The channel callbacks both SSH servers share, written once.
//!
//! russh's [`Handler`](russh::server::Handler) has one method per channel
//! event, each with its own long signature. Both the outer and the inner
//! server answer them the same way: relayed through a [`ProxyConn`], or (the
//! outer one's own commands) served locally. [`Channels`] is that short list
//! of events, and [`serve_channels!`] writes the `Handler` methods that hand
//! them over. X11 and agent forwarding are refused here for both servers.

use russh::server::{ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId};

use crate::proxy::ProxyConn;

/// A request on an open session channel.
#[derive(Debug, Clone, Copy)]
pub(super) enum Request<'a> {
    Pty,
    Env,
    Shell,
    Exec(&'a [u8]),
    Subsystem,
}

impl Request<'_> {
    /// A shell, command or subsystem: what starts something on the channel.
    pub(super) fn starts(&self) -> bool {
        matches!(self, Request::Shell | Request::Exec(_) | Request::Subsystem)
    }
}

/// What a connection does with the channels its client opens.
pub(super) trait Channels {
    async fn open_session(&mut self, channel: Channel<Msg>, reply: ChannelOpenHandle);
    async fn open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host: &str,
        port: u32,
        originator: (&str, u32),
        reply: ChannelOpenHandle,
    );
    /// Answers the request with success or failure on `session`.
    async fn request(&mut self, channel: ChannelId, request: Request<'_>, session: &mut Session);
    async fn tcpip_forward(&mut self, address: &str, port: &mut u32) -> bool;
    async fn cancel_tcpip_forward(&mut self, address: &str, port: u32) -> bool;
    fn channel_closed(&mut self, channel: ChannelId);
}

/// A relayed connection: everything goes to the node through the proxy.
impl Channels for ProxyConn {
    async fn open_session(&mut self, channel: Channel<Msg>, reply: ChannelOpenHandle) {
        ProxyConn::open_session(self, channel, reply).await
    }

    async fn open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host: &str,
        port: u32,
        originator: (&str, u32),
        reply: ChannelOpenHandle,
    ) {
        ProxyConn::open_direct_tcpip(self, channel, host, port, originator, reply).await
    }

    async fn request(&mut self, channel: ChannelId, request: Request<'_>, session: &mut Session) {
        self.answer_request(channel, session, request.starts()).await
    }

    async fn tcpip_forward(&mut self, address: &str, port: &mut u32) -> bool {
        ProxyConn::tcpip_forward(self, address, port).await
    }

    async fn cancel_tcpip_forward(&mut self, address: &str, port: u32) -> bool {
        ProxyConn::cancel_tcpip_forward(self, address, port).await
    }

    fn channel_closed(&mut self, channel: ChannelId) {
        ProxyConn::channel_closed(self, channel)
    }
}

/// Writes, inside an `impl Handler`, the channel methods that hand each
/// event to `self.$channels()` (a method returning `&mut impl Channels`).
macro_rules! serve_channels {
    ($channels:ident) => {
        async fn channel_open_session(
            &mut self,
            channel: russh::Channel<russh::server::Msg>,
            reply: russh::server::ChannelOpenHandle,
            _session: &mut russh::server::Session,
        ) -> Result<(), Self::Error> {
            $crate::server::channels::Channels::open_session(self.$channels(), channel, reply).await;
            Ok(())
        }

        async fn channel_open_direct_tcpip(
            &mut self,
            channel: russh::Channel<russh::server::Msg>,
            host: &str,
            port: u32,
            originator_address: &str,
            originator_port: u32,
            reply: russh::server::ChannelOpenHandle,
            _session: &mut russh::server::Session,
        ) -> Result<(), Self::Error> {
            let originator = (originator_address, originator_port);
            $crate::server::channels::Channels::open_direct_tcpip(
                self.$channels(),
                channel,
                host,
                port,
                originator,
                reply,
            )
            .await;
            Ok(())
        }

        async fn pty_request(
            &mut self,
            channel: russh::ChannelId,
            _term: &str,
            _cols: u32,
            _rows: u32,
            _pw: u32,
            _ph: u32,
            _modes: &[(russh::Pty, u32)],
            session: &mut russh::server::Session,
        ) -> Result<(), Self::Error> {
            use $crate::server::channels::{Channels, Request};
            Channels::request(self.$channels(), channel, Request::Pty, session).await;
            Ok(())
        }

        async fn env_request(
            &mut self,
            channel: russh::ChannelId,
            _name: &str,
            _value: &str,
            session: &mut russh::server::Session,
        ) -> Result<(), Self::Error> {
            use $crate::server::channels::{Channels, Request};
            Channels::request(self.$channels(), channel, Request::Env, session).await;
            Ok(())
        }

        async fn shell_request(
            &mut self,
            channel: russh::ChannelId,
            session: &mut russh::server::Session,
        ) -> Result<(), Self::Error> {
            use $crate::server::channels::{Channels, Request};
            Channels::request(self.$channels(), channel, Request::Shell, session).await;
            Ok(())
        }

        async fn exec_request(
            &mut self,
            channel: russh::ChannelId,
            data: &[u8],
            session: &mut russh::server::Session,
        ) -> Result<(), Self::Error> {
            use $crate::server::channels::{Channels, Request};
            Channels::request(self.$channels(), channel, Request::Exec(data), session).await;
            Ok(())
        }

        async fn subsystem_request(
            &mut self,
            channel: russh::ChannelId,
            _name: &str,
            session: &mut russh::server::Session,
        ) -> Result<(), Self::Error> {
            use $crate::server::channels::{Channels, Request};
            Channels::request(self.$channels(), channel, Request::Subsystem, session).await;
            Ok(())
        }

        async fn x11_request(
            &mut self,
            channel: russh::ChannelId,
            _single: bool,
            _proto: &str,
            _cookie: &str,
            _screen: u32,
            session: &mut russh::server::Session,
        ) -> Result<(), Self::Error> {
            session.channel_failure(channel)?;
            Ok(())
        }

        async fn agent_request(
            &mut self,
            _channel: russh::ChannelId,
            _session: &mut russh::server::Session,
        ) -> Result<bool, Self::Error> {
            Ok(false)
        }

        async fn signal(
            &mut self,
            _channel: russh::ChannelId,
            _signal: russh::Sig,
            _session: &mut russh::server::Session,
        ) -> Result<(), Self::Error> {
            Ok(())
        }

        async fn tcpip_forward(
            &mut self,
            address: &str,
            port: &mut u32,
            _session: &mut russh::server::Session,
        ) -> Result<bool, Self::Error> {
            Ok($crate::server::channels::Channels::tcpip_forward(self.$channels(), address, port).await)
        }

        async fn cancel_tcpip_forward(
            &mut self,
            address: &str,
            port: u32,
            _session: &mut russh::server::Session,
        ) -> Result<bool, Self::Error> {
            Ok($crate::server::channels::Channels::cancel_tcpip_forward(self.$channels(), address, port).await)
        }

        async fn channel_close(
            &mut self,
            channel: russh::ChannelId,
            _session: &mut russh::server::Session,
        ) -> Result<(), Self::Error> {
            $crate::server::channels::Channels::channel_closed(self.$channels(), channel);
            Ok(())
        }
    };
}

pub(super) use serve_channels;
