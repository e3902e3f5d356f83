//! The inner connection of `ssh -J`: an SSH server running on the outer
//! connection's `direct-tcpip` channel, presenting a host certificate for
//! the target's name.
//!
//! The user was proven on the outer connection, so method `none` succeeds
//! for a login the policy allows. Keyboard-interactive is used for two
//! things only: to ask for a break-glass reason (and ticket) when the target
//! is break-glass only, and otherwise to show why a login is refused (no
//! prompts) so the engineer reads more than a bare "Permission denied".

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use russh::Channel;
use russh::server::{Auth, Handler, Msg, Response, Session};
use tokio::io::{AsyncRead, AsyncReadExt};
use tracing::{debug, info, warn};

use crate::config::Target;
use crate::directory::Identity;
use crate::proxy::ProxyConn;
use crate::running::RunningSession;

use super::Server;

/// Runs the inner server on `channel` until the client closes it.
pub fn spawn(
    server: Arc<Server>,
    identity: Arc<Identity>,
    target: Target,
    channel: Channel<Msg>,
    peer: SocketAddr,
    updates: Option<tokio::sync::watch::Receiver<Arc<Identity>>>,
) {
    let target_name = target.name.clone();
    let mut proxy = ProxyConn::new(server.bastion.clone(), identity, target, peer);
    if let Some(u) = updates {
        proxy.follow_identity(u);
    }
    let handler = InnerHandler {
        proxy,
        pending: Pending::Nothing,
    };
    tokio::spawn(async move {
        let mut stream = channel.into_stream();
        let seen = read_banner(&mut stream).await;
        let offer = super::inner_offer(banner_line(&seen));
        let Some(config) = server.inner_config(&target_name, offer) else {
            return;
        };
        debug!(?offer, "inner connection");
        // What was read to see the banner is handed back in front of the rest.
        let (read, write) = tokio::io::split(stream);
        let stream = tokio::io::join(std::io::Cursor::new(seen).chain(read), write);
        match russh::server::run_stream(config, stream, handler).await {
            Ok(session) => {
                if let Err(e) = session.await {
                    debug!(error = %e, "inner connection ended with an error");
                }
            }
            Err(e) => debug!(error = %e, "inner handshake failed"),
        }
    });
}

/// How long the inner server waits for the client's version banner before
/// choosing its offer without it. Clients send theirs at once (RFC 4253
/// §4.2); one that waits for the server's first gets the broad offer.
const BANNER_WAIT: Duration = Duration::from_millis(1500);

/// The most read while looking for the banner: RFC 4253 allows 255 bytes.
const BANNER_MAX: usize = 256;

/// Reads what the client sends first, up to the end of its version line,
/// [`BANNER_MAX`] bytes or [`BANNER_WAIT`], whichever comes first.
async fn read_banner<S: AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    let mut seen = Vec::with_capacity(BANNER_MAX);
    let _ = tokio::time::timeout(BANNER_WAIT, async {
        let mut buf = [0u8; BANNER_MAX];
        while !seen.contains(&b'\n') && seen.len() < BANNER_MAX {
            match stream.read(&mut buf[..BANNER_MAX - seen.len()]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    seen
}

/// The version line in what was read, if it came whole.
fn banner_line(seen: &[u8]) -> Option<&[u8]> {
    let end = seen.iter().position(|&b| b == b'\n')?;
    let line = &seen[..end];
    Some(line.strip_suffix(b"\r").unwrap_or(line))
}

pub struct InnerHandler {
    proxy: ProxyConn,
    /// Where the login stands.
    pending: Pending,
}

/// What the next authentication step has to do.
enum Pending {
    Nothing,
    /// The login was accepted with this access: the session starts.
    Allowed(policy::Access),
    /// Show why the login is refused, then reject.
    Refusal(String),
    /// The session is recorded and held until a second person watches it
    /// (`[break_glass] watch = "required"`): tell the user, then wait.
    Watch {
        session: Arc<RunningSession>,
        told: bool,
    },
    /// The recorded session was let in.
    Opened,
    /// Ask for a break-glass reason (and a ticket when `ticket` names the pattern).
    Reason {
        ticket: Option<String>,
        /// Refused answers so far; after [`MAX_REASON_TRIES`] the login fails.
        tries: u8,
    },
}

/// The last word on a login: keyboard-interactive only. An empty method
/// list would not do: OpenSSH reads it as "anything goes" and falls back to
/// asking for a password the bastion never takes.
fn final_reject() -> Auth {
    Auth::Reject {
        proceed_with_methods: Some(russh::MethodSet::from(&[russh::MethodKind::KeyboardInteractive][..])),
        partial_success: false,
    }
}

/// What a user held for a watcher reads (no answer asked: OpenSSH replies at once).
fn waiting_prompt(session: &RunningSession) -> Auth {
    Auth::Partial {
        name: "bastion break-glass".into(),
        instructions: format!(
            "waiting for a second person to watch; on-call has been alerted (session {})\n",
            session.info.id
        )
        .into(),
        prompts: vec![].into(),
    }
}

/// Reasons refused before the login fails.
const MAX_REASON_TRIES: u8 = 3;

impl InnerHandler {
    /// Where the channel callbacks go ([`super::channels`]).
    fn proxy(&mut self) -> &mut ProxyConn {
        &mut self.proxy
    }

    fn reason_prompt(&self, ticket: &Option<String>, refused: Option<&str>) -> Auth {
        let target = &self.proxy.target().name;
        let bg = &self.proxy.bastion().config.policy.break_glass;
        let minutes = bg.default_duration.as_secs().div_ceil(60);
        let mut instructions = match refused {
            Some(why) => format!("Refused: {why}. Try again.\n"),
            None => format!(
                "{target} is break-glass only. Access is time-boxed ({minutes} min), alerted, recorded with \
                 keystrokes, and reviewed afterwards by a second person.\n"
            ),
        };
        let mut prompts = vec![(format!("Break-glass access to {target}. Reason: ").into(), true)];
        if let Some(pattern) = ticket {
            instructions.push_str(&format!("A ticket matching {pattern} is required.\n"));
            prompts.push(("Ticket: ".into(), true));
        }
        Auth::Partial {
            name: "bastion break-glass".into(),
            instructions: instructions.into(),
            prompts: prompts.into(),
        }
    }

    /// The login is allowed: in it goes, unless it must wait for a watcher
    /// (then the recording starts now, so the watcher sees it from the first
    /// byte). `prompting`: keyboard-interactive is under way already.
    fn allow(&mut self, access: policy::Access, prompting: bool) -> Auth {
        if !self.proxy.needs_watcher(&access) {
            self.pending = Pending::Allowed(access);
            return Auth::Accept;
        }
        let Some(session) = self.proxy.open(access) else {
            // The recording could not start: the channels say why.
            self.pending = Pending::Opened;
            return Auth::Accept;
        };
        if prompting {
            let prompt = waiting_prompt(&session);
            self.pending = Pending::Watch { session, told: true };
            prompt
        } else {
            self.pending = Pending::Watch { session, told: false };
            Auth::reject()
        }
    }

    /// Holds the login until somebody who is not the user watches the
    /// session, or refuses it after `watch_wait`.
    async fn wait_for_watcher(&mut self, session: Arc<RunningSession>) -> Auth {
        let wait = self.proxy.bastion().config.policy.break_glass.watch_wait;
        let bastion = self.proxy.bastion().clone();
        let fields =
            serde_json::json!({"session": session.info.id, "user": session.info.user, "target": session.info.target});
        info!(session = %session.info.id, "break-glass session held for a watcher");
        match tokio::time::timeout(wait, session.watched()).await {
            Ok(true) => {
                bastion.audit.record("breakglass.watched", fields);
                self.pending = Pending::Opened;
                Auth::Accept
            }
            _ => {
                let why = match session.state().terminated {
                    Some(t) => format!("session terminated by {}: {}", t.by, t.reason),
                    None => format!(
                        "nobody started watching within {}; the session is refused. Connect again and ask \
                         on-call to open the alert's link or run `sessions watch {}`",
                        humantime::format_duration(wait),
                        session.info.id
                    ),
                };
                bastion.audit.record("breakglass.unwatched", fields);
                // The recording ends here: nobody got in.
                self.proxy.refuse(why.clone());
                self.pending = Pending::Refusal(why.clone());
                Auth::Partial {
                    name: "bastion".into(),
                    instructions: format!("Access denied: {why}").into(),
                    prompts: vec![].into(),
                }
            }
        }
    }

    /// A reason was typed: grant, then decide again with the new grant.
    async fn take_reason(&mut self, login: &str, answers: Vec<String>, ticket: Option<String>, tries: u8) -> Auth {
        let reason = answers.first().cloned().unwrap_or_default();
        let ticket_answer = answers.get(1).cloned();
        let bastion = self.proxy.bastion().clone();
        let identity = self.proxy.identity().clone();
        let target = self.proxy.target().clone();
        let ask = crate::access::Ask {
            targets: std::slice::from_ref(&target.name),
            reason: &reason,
            ticket: ticket_answer.as_deref(),
            duration: bastion.config.policy.break_glass.default_duration,
            source: "prompt",
            client: self.proxy.client_addr(),
        };
        match crate::access::grant(&bastion, &identity, ask).await {
            Ok(_) => match self.proxy.authorize_login(login).verdict {
                policy::Verdict::Allow(access) => self.allow(access, true),
                other => {
                    warn!(user = %identity.user, target = %target.name, verdict = ?other, "a fresh grant did not allow the login");
                    final_reject()
                }
            },
            Err(why) => {
                info!(user = %identity.user, target = %target.name, reason = %why, "break-glass reason refused");
                if tries + 1 >= MAX_REASON_TRIES {
                    return final_reject();
                }
                let prompt = self.reason_prompt(&ticket, Some(&why));
                self.pending = Pending::Reason {
                    ticket,
                    tries: tries + 1,
                };
                prompt
            }
        }
    }
}

impl Handler for InnerHandler {
    type Error = anyhow::Error;

    async fn auth_none(&mut self, login: &str) -> Result<Auth, Self::Error> {
        let decision = self.proxy.authorize_login(login);
        match decision.verdict {
            policy::Verdict::Allow(access) => Ok(self.allow(access, false)),
            policy::Verdict::NeedsReason { ticket } => {
                info!(target = %self.proxy.target().name, login, "break-glass target: asking for a reason");
                self.pending = Pending::Reason { ticket, tries: 0 };
                Ok(Auth::reject())
            }
            policy::Verdict::Deny(why) => {
                info!(target = %self.proxy.target().name, login, reason = %why, explanation = ?decision.explanation, "login refused");
                self.proxy.bastion().audit.record(
                    "policy.denied",
                    serde_json::json!({
                        "user": self.proxy.identity().user, "target": self.proxy.target().name, "login": login,
                        "reason": why, "explanation": decision.explanation,
                    }),
                );
                self.pending = Pending::Refusal(why);
                Ok(Auth::reject())
            }
        }
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        login: &str,
        _submethods: &str,
        response: Option<Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        let reject = final_reject();
        match (std::mem::replace(&mut self.pending, Pending::Nothing), response) {
            (Pending::Refusal(why), None) => Ok(Auth::Partial {
                name: "bastion".into(),
                instructions: format!("Access denied: {why}").into(),
                prompts: vec![].into(),
            }),
            (Pending::Reason { ticket, tries }, None) => {
                let prompt = self.reason_prompt(&ticket, None);
                self.pending = Pending::Reason { ticket, tries };
                Ok(prompt)
            }
            (Pending::Reason { ticket, tries }, Some(response)) => {
                let answers: Vec<String> = response.map(|a| String::from_utf8_lossy(&a).into_owned()).collect();
                Ok(self.take_reason(login, answers, ticket, tries).await)
            }
            (Pending::Watch { session, told: false }, _) => {
                let prompt = waiting_prompt(&session);
                self.pending = Pending::Watch { session, told: true };
                Ok(prompt)
            }
            (Pending::Watch { session, told: true }, Some(_)) => Ok(self.wait_for_watcher(session).await),
            (Pending::Refusal(_), Some(_)) => Ok(reject),
            _ => Ok(reject),
        }
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        match std::mem::replace(&mut self.pending, Pending::Nothing) {
            Pending::Allowed(access) => self.proxy.start(access, session.handle()),
            Pending::Opened => self.proxy.serve(session.handle()),
            _ => self.proxy.refuse("no access was granted".into()),
        }
        Ok(())
    }

    super::channels::serve_channels!(proxy);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn the_banner_is_read_and_kept_for_the_server() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client
            .write_all(b"SSH-2.0-dropbear_2022.83\r\n\x00\x00\x01\x0ckexinit...")
            .await
            .unwrap();
        let seen = read_banner(&mut server).await;
        assert_eq!(banner_line(&seen), Some(&b"SSH-2.0-dropbear_2022.83"[..]));
        assert!(seen.ends_with(b"kexinit..."), "what follows the banner is kept too");
    }

    #[tokio::test]
    async fn a_silent_client_gets_no_banner_after_the_wait() {
        let (_client, mut server) = tokio::io::duplex(1024);
        assert!(banner_line(&read_banner(&mut server).await).is_none());
    }

    #[tokio::test]
    async fn a_banner_without_end_stops_at_the_limit() {
        let (mut client, mut server) = tokio::io::duplex(4096);
        client.write_all(&[b'A'; 1000]).await.unwrap();
        let seen = read_banner(&mut server).await;
        assert_eq!(seen.len(), BANNER_MAX);
        assert!(banner_line(&seen).is_none());
    }
}
