//! Terminal I/O for the few commands that ask the user something
//! (`enroll totp` asks for a token and a code): lines in, text out, over the
//! session channel.

use bytes::Bytes;
use russh::server::Msg;
use russh::{Channel, ChannelMsg};

/// Longest line a command reads; a longer one is cut (no unbounded buffer).
const MAX_LINE: usize = 4096;

/// The channel of a running command.
pub struct ChannelIo {
    channel: Channel<Msg>,
    /// Bytes received but not yet returned as a line.
    pending: Vec<u8>,
    /// Whether the client asked for a PTY (then echo is ours to do).
    pub pty: bool,
    eof: bool,
}

impl ChannelIo {
    pub fn new(channel: Channel<Msg>, pty: bool) -> Self {
        ChannelIo {
            channel,
            pending: Vec::new(),
            pty,
            eof: false,
        }
    }

    /// Writes text; `\n` becomes `\r\n` on a PTY.
    pub async fn write(&self, text: &str) {
        let text = if self.pty {
            text.replace("\r\n", "\n").replace('\n', "\r\n")
        } else {
            text.to_string()
        };
        let _ = self.channel.data_bytes(Bytes::from(text.into_bytes())).await;
    }

    /// Writes bytes as they are (an export, a replay's frames); false once
    /// the client is gone.
    pub async fn write_raw(&self, bytes: Vec<u8>) -> bool {
        self.channel.data_bytes(Bytes::from(bytes)).await.is_ok()
    }

    pub async fn write_err(&self, text: &str) {
        let text = if self.pty {
            text.replace('\n', "\r\n")
        } else {
            text.to_string()
        };
        let _ = self
            .channel
            .extended_data_bytes(1, Bytes::from(text.into_bytes()))
            .await;
    }

    /// Shows `prompt` and reads one line (without its end). `None` at EOF.
    /// On a PTY, typed characters are echoed unless `secret`.
    pub async fn read_line(&mut self, prompt: &str, secret: bool) -> Option<String> {
        self.write(prompt).await;
        loop {
            if let Some(pos) = self.pending.iter().position(|b| *b == b'\n' || *b == b'\r') {
                let line: Vec<u8> = self.pending.drain(..=pos).collect();
                if self.pty {
                    self.write("\n").await;
                }
                let text = String::from_utf8_lossy(&line[..line.len() - 1]).trim().to_string();
                return Some(text);
            }
            if self.eof {
                if self.pending.is_empty() {
                    return None;
                }
                let text = String::from_utf8_lossy(&self.pending).trim().to_string();
                self.pending.clear();
                return Some(text);
            }
            match self.channel.wait().await {
                Some(ChannelMsg::Data { data }) => {
                    if self.pty && !secret {
                        let visible: Vec<u8> = data.iter().copied().filter(|b| *b != b'\r' && *b != b'\n').collect();
                        let _ = self.channel.data_bytes(Bytes::from(visible)).await;
                    }
                    if data.contains(&3) {
                        // Ctrl-C on a PTY.
                        return None;
                    }
                    self.pending.extend_from_slice(&data);
                    self.pending.truncate(MAX_LINE);
                }
                Some(ChannelMsg::Eof) | Some(ChannelMsg::Close) | None => self.eof = true,
                Some(_) => {}
            }
        }
    }

    /// The next bytes the client sends; `None` at EOF or close.
    pub async fn read_bytes(&mut self) -> Option<Vec<u8>> {
        if !self.pending.is_empty() {
            return Some(std::mem::take(&mut self.pending));
        }
        if self.eof {
            return None;
        }
        loop {
            match self.channel.wait().await {
                Some(ChannelMsg::Data { data }) => return Some(data.to_vec()),
                Some(ChannelMsg::Eof) | Some(ChannelMsg::Close) | None => {
                    self.eof = true;
                    return None;
                }
                Some(_) => {}
            }
        }
    }

    /// Ends the command with `status`.
    pub async fn finish(self, status: u32) {
        let _ = self.channel.exit_status(status).await;
        let _ = self.channel.eof().await;
        let _ = self.channel.close().await;
    }
}
