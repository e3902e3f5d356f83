//! Relays one channel between the engineer's client and the node, through
//! the recording seam.
//!
//! Each direction is its own task, so a stalled direction never stops the
//! other (a client that stops reading output can still press Ctrl-C).
//! Writes wait for the peer's SSH window, so a slow reader slows the sender
//! instead of growing a buffer here. Every message is handed to the
//! [`ChannelTap`] before it is forwarded; if the recorder is gone the channel
//! is closed (recording fails closed).
//!
//! Channel requests that want a reply (pty, env, shell, exec, subsystem) are
//! answered by the node: the upstream task forwards each with `want_reply`
//! and queues a oneshot; the downstream task completes the oneshots in order
//! as the node's SUCCESS/FAILURE messages arrive; the connection handler
//! awaits them in the same order and answers the client.
//!
//! When one task ends it closes the other side's channel and tells the other
//! task to stop once it has taken what is already queued: russh drops the
//! peer's close reply to a channel this side closed, so the other task would
//! otherwise wait (and the channel's close go unrecorded) until the whole
//! connection ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Sig, client, server};
use tokio::sync::{Notify, mpsc, oneshot};
use tracing::{debug, warn};

use recorder::{ChannelEvent, ChannelTap, Direction};

use super::SessionCtx;

/// Replies owed to the client, in request order.
pub type ReplyQueue = mpsc::UnboundedSender<oneshot::Receiver<bool>>;

/// Whether a channel carries a session (requests allowed) or raw bytes of a
/// forward (no requests).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum RelayKind {
    Session,
    Forward,
}

/// The client side of a relayed channel and the node side, plus what the
/// relay needs to enforce and record.
pub struct Relay {
    pub ctx: Arc<SessionCtx>,
    pub client: russh::Channel<server::Msg>,
    pub node: russh::Channel<client::Msg>,
    pub tap: ChannelTap,
    pub kind: RelayKind,
    /// Where to answer the client's channel requests (session channels only).
    pub replies: Option<ReplyQueue>,
    /// Lets the downstream task send exit-signal, which has no write-half method.
    pub client_handle: server::Handle,
}

impl Relay {
    /// Starts both directions; returns when both have ended.
    pub fn spawn(self) {
        let Relay {
            ctx,
            client,
            node,
            tap,
            kind,
            replies,
            client_handle,
        } = self;
        let client_id = client.id();
        let (client_read, client_write) = client.split();
        let (node_read, node_write) = node.split();
        let (pending_tx, pending_rx) = mpsc::unbounded_channel::<oneshot::Sender<bool>>();
        let told = Arc::new(AtomicBool::new(false));
        let (up_ended, down_ended) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let up = Upstream {
            ctx: ctx.clone(),
            tap: tap.clone(),
            kind,
            replies,
            pending: pending_tx,
            client_id,
            client_handle: client_handle.clone(),
            told: told.clone(),
            ended: up_ended.clone(),
            other_ended: down_ended.clone(),
        };
        let down = Downstream {
            ctx,
            hold_eof: kind == RelayKind::Session,
            tap,
            pending: pending_rx,
            client_id,
            client_handle,
            told,
            ended: down_ended,
            other_ended: up_ended,
        };
        tokio::spawn(async move {
            let up_task = tokio::spawn(up.run(client_read, node_write));
            let down_task = tokio::spawn(down.run(node_read, client_write));
            let _ = tokio::join!(up_task, down_task);
        });
    }
}

/// Client → node.
struct Upstream {
    ctx: Arc<SessionCtx>,
    tap: ChannelTap,
    kind: RelayKind,
    replies: Option<ReplyQueue>,
    pending: mpsc::UnboundedSender<oneshot::Sender<bool>>,
    /// Where a refusal is explained (the client's stderr on this channel).
    client_id: russh::ChannelId,
    client_handle: server::Handle,
    /// Shared with the downstream task: the recording-failed notice is written once.
    told: Arc<AtomicBool>,
    /// Tells the downstream task that this one has ended.
    ended: Arc<Notify>,
    /// The downstream task has ended: the client's channel is closed.
    other_ended: Arc<Notify>,
}

impl Upstream {
    /// Answers the client at once (a refused or unforwarded request).
    fn reply_now(&self, ok: bool) {
        if let Some(q) = &self.replies {
            let (tx, rx) = oneshot::channel();
            let _ = tx.send(ok);
            let _ = q.send(rx);
        }
    }

    /// The node will answer; the downstream task passes the answer on.
    fn reply_from_node(&self) {
        if let Some(q) = &self.replies {
            let (tx, rx) = oneshot::channel();
            let _ = self.pending.send(tx);
            let _ = q.send(rx);
        }
    }

    async fn refuse(&self, request: &str, reason: String) -> Result<(), recorder::RecordError> {
        debug!(session = %self.ctx.id, request, %reason, "request refused");
        // Without this the user reads only "exec request failed on channel 0".
        if request != "env" {
            let text = format!("bastion: {reason}\r\n");
            let _ = self
                .client_handle
                .extended_data(self.client_id, 1, text.into_bytes())
                .await;
        }
        self.tap
            .record(ChannelEvent::Refused {
                request: request.to_string(),
                reason,
            })
            .await?;
        self.reply_now(false);
        Ok(())
    }

    async fn run(self, mut from_client: ChannelReadHalf, to_node: ChannelWriteHalf<client::Msg>) {
        let failed = self.pump(&mut from_client, &to_node).await.err();
        let _ = to_node.close().await;
        let Upstream {
            ctx,
            pending,
            client_id,
            client_handle,
            told,
            ended,
            ..
        } = self;
        // Unblock a handler waiting for replies that will never come.
        drop(pending);
        if let Some(e) = failed {
            // The client is told and its channel closed here: the downstream
            // task only drains what the node already sent, then stops.
            if !told.swap(true, Ordering::AcqRel) {
                warn!(session = %ctx.id, direction = "input", error = %e, "closing channel: recording failed");
                let _ = client_handle
                    .extended_data(client_id, 1, recording_failed_notice(&ctx.id).into_bytes())
                    .await;
            }
            let _ = client_handle.close(client_id).await;
        }
        ended.notify_one();
    }

    async fn pump(
        &self,
        from_client: &mut ChannelReadHalf,
        to_node: &ChannelWriteHalf<client::Msg>,
    ) -> Result<(), recorder::RecordError> {
        while let Some(msg) = next_message(from_client, &self.other_ended).await {
            self.ctx.touch();
            match msg {
                ChannelMsg::Data { data } => {
                    self.tap
                        .record(ChannelEvent::data(Direction::Input, false, data.clone()))
                        .await?;
                    if to_node.data_bytes(data).await.is_err() {
                        break;
                    }
                }
                ChannelMsg::ExtendedData { data, ext } => {
                    self.tap
                        .record(ChannelEvent::data(Direction::Input, ext == 1, data.clone()))
                        .await?;
                    if to_node.extended_data_bytes(ext, data).await.is_err() {
                        break;
                    }
                }
                ChannelMsg::Eof => {
                    self.tap
                        .record(ChannelEvent::Eof {
                            direction: Direction::Input,
                        })
                        .await?;
                    let _ = to_node.eof().await;
                }
                ChannelMsg::Close => break,
                _ if self.kind == RelayKind::Forward => {}
                ChannelMsg::RequestPty {
                    term,
                    col_width,
                    row_height,
                    pix_width,
                    pix_height,
                    terminal_modes,
                    ..
                } => {
                    self.tap
                        .record(ChannelEvent::Pty {
                            term: term.clone(),
                            cols: col_width,
                            rows: row_height,
                        })
                        .await?;
                    self.reply_from_node();
                    let _ = to_node
                        .request_pty(
                            true,
                            &term,
                            col_width,
                            row_height,
                            pix_width,
                            pix_height,
                            &terminal_modes,
                        )
                        .await;
                }
                ChannelMsg::SetEnv {
                    variable_name,
                    variable_value,
                    ..
                } => {
                    if policy::env_allowed(&self.ctx.bastion.config.server.accept_env, &variable_name) {
                        self.tap
                            .record(ChannelEvent::Env {
                                name: variable_name.clone(),
                                value: variable_value.clone(),
                            })
                            .await?;
                        self.reply_from_node();
                        let _ = to_node.set_env(true, variable_name, variable_value).await;
                    } else {
                        self.refuse("env", format!("{variable_name} is not in server.accept_env"))
                            .await?;
                    }
                }
                ChannelMsg::RequestShell { .. } => {
                    if let Err(why) = self.ctx.check(&policy::Request::Shell) {
                        self.refuse("shell", why).await?;
                        continue;
                    }
                    self.tap.record(ChannelEvent::Shell).await?;
                    self.reply_from_node();
                    let _ = to_node.request_shell(true).await;
                }
                ChannelMsg::Exec { command, .. } => {
                    if let Err(why) = self
                        .ctx
                        .check(&policy::Request::Exec(&String::from_utf8_lossy(&command)))
                    {
                        self.refuse("exec", why).await?;
                        continue;
                    }
                    self.tap
                        .record(ChannelEvent::Exec {
                            command: String::from_utf8_lossy(&command).into_owned(),
                        })
                        .await?;
                    self.reply_from_node();
                    let _ = to_node.exec(true, command).await;
                }
                ChannelMsg::RequestSubsystem { name, .. } => {
                    if let Err(why) = self.ctx.check(&policy::Request::Subsystem(&name)) {
                        self.refuse("subsystem", why).await?;
                        continue;
                    }
                    self.tap.record(ChannelEvent::Subsystem { name: name.clone() }).await?;
                    self.reply_from_node();
                    let _ = to_node.request_subsystem(true, name).await;
                }
                ChannelMsg::WindowChange {
                    col_width,
                    row_height,
                    pix_width,
                    pix_height,
                } => {
                    self.tap
                        .record(ChannelEvent::Resize {
                            cols: col_width,
                            rows: row_height,
                        })
                        .await?;
                    let _ = to_node
                        .window_change(col_width, row_height, pix_width, pix_height)
                        .await;
                }
                ChannelMsg::Signal { signal } => {
                    self.tap
                        .record(ChannelEvent::Signal {
                            name: sig_name(&signal),
                        })
                        .await?;
                    let _ = to_node.signal(signal).await;
                }
                // The handler answers these itself (always no); they are
                // recorded so an auditor sees the attempt.
                ChannelMsg::AgentForward { .. } => {
                    self.tap
                        .record(ChannelEvent::Refused {
                            request: "auth-agent".into(),
                            reason: "agent forwarding is off".into(),
                        })
                        .await?;
                }
                ChannelMsg::RequestX11 { .. } => {
                    self.tap
                        .record(ChannelEvent::Refused {
                            request: "x11".into(),
                            reason: "X11 forwarding is off".into(),
                        })
                        .await?;
                }
                _ => {}
            }
        }
        self.tap.record(ChannelEvent::Close).await?;
        Ok(())
    }
}

/// Node → client.
struct Downstream {
    ctx: Arc<SessionCtx>,
    /// A session channel's EOF goes to the client only with or after the
    /// exit status (see [`Downstream::pump`]); a forward's half-close at once.
    hold_eof: bool,
    tap: ChannelTap,
    pending: mpsc::UnboundedReceiver<oneshot::Sender<bool>>,
    client_id: russh::ChannelId,
    client_handle: server::Handle,
    /// Shared with the upstream task: the recording-failed notice is written once.
    told: Arc<AtomicBool>,
    /// Tells the upstream task that this one has ended.
    ended: Arc<Notify>,
    /// The upstream task has ended: the node's channel is closed.
    other_ended: Arc<Notify>,
}

impl Downstream {
    async fn run(mut self, mut from_node: ChannelReadHalf, to_client: ChannelWriteHalf<server::Msg>) {
        if let Err(e) = self.pump(&mut from_node, &to_client).await
            && !self.told.swap(true, Ordering::AcqRel)
        {
            warn!(session = %self.ctx.id, direction = "output", error = %e, "closing channel: recording failed");
            let notice = recording_failed_notice(&self.ctx.id);
            let _ = to_client.extended_data_bytes(1, bytes::Bytes::from(notice)).await;
        }
        let _ = to_client.close().await;
        self.ended.notify_one();
    }

    async fn pump(
        &mut self,
        from_node: &mut ChannelReadHalf,
        to_client: &ChannelWriteHalf<server::Msg>,
    ) -> Result<(), recorder::RecordError> {
        // The node's EOF, not yet passed on.
        let mut eof_held = false;
        while let Some(msg) = next_message(from_node, &self.other_ended).await {
            match msg {
                ChannelMsg::Data { data } => {
                    self.ctx.touch();
                    self.tap
                        .record(ChannelEvent::data(Direction::Output, false, data.clone()))
                        .await?;
                    if to_client.data_bytes(data).await.is_err() {
                        break;
                    }
                }
                ChannelMsg::ExtendedData { data, ext } => {
                    self.ctx.touch();
                    self.tap
                        .record(ChannelEvent::data(Direction::Output, ext == 1, data.clone()))
                        .await?;
                    if to_client.extended_data_bytes(ext, data).await.is_err() {
                        break;
                    }
                }
                ChannelMsg::Success | ChannelMsg::Failure => {
                    let ok = matches!(msg, ChannelMsg::Success);
                    if let Ok(waiting) = self.pending.try_recv() {
                        let _ = waiting.send(ok);
                    }
                }
                ChannelMsg::ExitStatus { exit_status } => {
                    self.tap
                        .record(ChannelEvent::ExitStatus { status: exit_status })
                        .await?;
                    let _ = to_client.exit_status(exit_status).await;
                    if std::mem::take(&mut eof_held) {
                        let _ = to_client.eof().await;
                    }
                }
                ChannelMsg::ExitSignal {
                    signal_name,
                    core_dumped,
                    error_message,
                    lang_tag,
                } => {
                    self.tap
                        .record(ChannelEvent::ExitSignal {
                            signal: sig_name(&signal_name),
                            core_dumped,
                        })
                        .await?;
                    let _ = self
                        .client_handle
                        .exit_signal_request(self.client_id, signal_name, core_dumped, error_message, lang_tag)
                        .await;
                    if std::mem::take(&mut eof_held) {
                        let _ = to_client.eof().await;
                    }
                }
                ChannelMsg::Eof => {
                    self.tap
                        .record(ChannelEvent::Eof {
                            direction: Direction::Output,
                        })
                        .await?;
                    // OpenSSH's client closes its channel once EOF went both
                    // ways, without waiting for the exit status, and russh
                    // answers that close at once: an exit status sent after it
                    // is dropped and `ssh` exits 255. sshd often sends EOF a
                    // fraction of a millisecond before the exit status, so it
                    // waits for it here (as sshd itself holds its close).
                    if self.hold_eof {
                        eof_held = true;
                    } else {
                        let _ = to_client.eof().await;
                    }
                }
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        if eof_held {
            let _ = to_client.eof().await;
        }
        Ok(())
    }
}

/// The next message on `from`; `None` once the channel is closed or, when
/// nothing is queued any more, once the other direction's task has ended.
async fn next_message(from: &mut ChannelReadHalf, other_ended: &Notify) -> Option<ChannelMsg> {
    tokio::select! {
        biased;
        msg = from.wait() => msg,
        () = other_ended.notified() => None,
    }
}

/// What the user reads on stderr when a channel is closed because its
/// recording failed.
fn recording_failed_notice(session: &str) -> String {
    format!(
        "\r\nbastion: recording failed, so this channel is closed (nothing runs unrecorded); \
         tell the bastion operator, session {session}\r\n"
    )
}

/// The wire name of a signal (RFC 4254 §6.10), without the "SIG" prefix.
pub fn sig_name(sig: &Sig) -> String {
    match sig {
        Sig::ABRT => "ABRT".into(),
        Sig::ALRM => "ALRM".into(),
        Sig::FPE => "FPE".into(),
        Sig::HUP => "HUP".into(),
        Sig::ILL => "ILL".into(),
        Sig::INT => "INT".into(),
        Sig::KILL => "KILL".into(),
        Sig::PIPE => "PIPE".into(),
        Sig::QUIT => "QUIT".into(),
        Sig::SEGV => "SEGV".into(),
        Sig::TERM => "TERM".into(),
        Sig::USR1 => "USR1".into(),
        Sig::Custom(s) => s.clone(),
    }
}
