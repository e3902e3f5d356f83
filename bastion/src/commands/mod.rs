//! Commands an engineer runs on the bastion itself: `ssh bastion CMD`.
//!
//! One file per command. A command is a pure function of its context and
//! arguments to text and an exit status; the outer connection writes the
//! result to the channel. The bastion never runs a user command in a shell.
//! What a command echoes back of its arguments or of the directory goes
//! through [`recorder::display::escape`], as on the auditor's side.

mod audit;
mod breakglass;
mod enroll;
mod grants;
mod help;
pub mod io;
mod kube_credential;
mod kubeconfig;
mod sessions;
mod targets;
mod watch;
mod whoami;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use crate::context::Bastion;
use crate::directory::Identity;

/// Who is asking, from where.
pub struct CommandCtx {
    pub bastion: Arc<Bastion>,
    pub identity: Arc<Identity>,
    pub client: SocketAddr,
}

/// What a command prints and its exit status.
#[derive(Debug, Default)]
pub struct Output {
    pub stdout: Bytes,
    pub stderr: Bytes,
    pub status: u32,
}

impl Output {
    pub fn ok(text: String) -> Self {
        Output {
            stdout: Bytes::from(text.into_bytes()),
            ..Default::default()
        }
    }

    pub fn fail(status: u32, text: String) -> Self {
        Output {
            stderr: Bytes::from(text.into_bytes()),
            status,
            ..Default::default()
        }
    }
}

/// Parses a command line and runs it on the channel; ends the channel.
pub async fn run_on(ctx: &CommandCtx, line: &str, mut io: io::ChannelIo) {
    let words = shlex::split(line).unwrap_or_default();
    if words.first().map(String::as_str) == Some("enroll") {
        tracing::info!(user = %ctx.identity.user, command = "enroll", client = %ctx.client, "bastion command");
        let status = enroll::run(ctx, &words[1..], &mut io).await;
        io.finish(status).await;
        return;
    }
    let first = words.first().map(String::as_str);
    if first == Some("sessions") {
        if let Err(why) = crate::access::enrollment_gate(&ctx.identity, crate::access::Step::Command(first)) {
            io.write_err(&format!("{why}\n")).await;
            io.finish(1).await;
            return;
        }
        tracing::info!(user = %ctx.identity.user, command = "sessions", client = %ctx.client, "bastion command");
        let status = sessions::run(ctx, &words[1..], &mut io).await;
        io.finish(status).await;
        return;
    }
    let out = match crate::access::enrollment_gate(&ctx.identity, crate::access::Step::Command(first)) {
        Err(why) => Output::fail(1, format!("{why}\n")),
        Ok(()) => run(ctx, line).await,
    };
    if !out.stdout.is_empty() {
        io.write(&String::from_utf8_lossy(&out.stdout)).await;
    }
    if !out.stderr.is_empty() {
        io.write_err(&String::from_utf8_lossy(&out.stderr)).await;
    }
    io.finish(out.status).await;
}

/// Parses a command line with shell quoting rules and runs it.
pub async fn run(ctx: &CommandCtx, line: &str) -> Output {
    let Some(words) = shlex::split(line) else {
        return Output::fail(2, "bastion: unbalanced quotes in the command\n".into());
    };
    let Some((name, args)) = words.split_first() else {
        return help::run(ctx, &[]);
    };
    tracing::info!(user = %ctx.identity.user, command = %name, client = %ctx.client, "bastion command");
    match name.as_str() {
        "targets" => targets::run(ctx, args),
        "breakglass" if grants::handles(args) => grants::run(ctx, args),
        "audit" => audit::run(ctx, args),
        "breakglass" => breakglass::run(ctx, args).await,
        "whoami" => whoami::run(ctx, args),
        "kubeconfig" => kubeconfig::run(ctx, args).await,
        "kube-credential" => kube_credential::run(ctx, args).await,
        "help" | "--help" => help::run(ctx, args),
        other => Output::fail(
            127,
            format!(
                "bastion: unknown command `{}`; the bastion gives no shell. Try `help`.\n",
                recorder::display::escape(other)
            ),
        ),
    }
}
