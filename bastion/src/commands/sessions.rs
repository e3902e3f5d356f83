//! `sessions …` over SSH: the console's reads for auditors (every session)
//! and for everyone else (their own), with no shell on the bastion host.
//! The same text as `bastion sessions …` on the host, through the same code
//! ([`crate::console`]).
//!
//! ```text
//! sessions list [--user U] [--target T] [--since WHEN] [--until WHEN] [--breakglass] [--unreviewed] [--json] [--limit N]
//! sessions show ID | verify ID|--all | search TEXT [-i] [filters] | export ID [--channel N] > file.cast
//! sessions replay ID [--speed X] [--idle-limit S] [--input] [--channel N]     (needs ssh -t)
//! sessions watch ID [--channel N]                                             (auditors; a running session)
//! sessions list --running [--json]                                            (what runs now, who watches)
//! sessions terminate ID --reason TEXT                                         (terminators)
//! ```

use clap::{Parser, Subcommand};
use recorder::display::escape;

use super::CommandCtx;
use super::io::ChannelIo;
use crate::console::{Door, Filter, Reader, Viewer, text};

#[derive(Parser, Debug)]
#[command(name = "sessions", about = "Recorded sessions: yours, or every one for auditors")]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args, Debug, Clone)]
struct Filters {
    #[arg(long)]
    user: Option<String>,
    #[arg(long)]
    target: Option<String>,
    /// A time (2026-12-01T10:00:00Z, 2026-12-01) or how long ago (2d, 12h).
    #[arg(long)]
    since: Option<String>,
    #[arg(long)]
    until: Option<String>,
    #[arg(long)]
    breakglass: bool,
    #[arg(long)]
    unreviewed: bool,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Recorded sessions, newest first.
    List {
        #[command(flatten)]
        filters: Filters,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// The sessions running now on this bastion, and who watches them.
        #[arg(long)]
        running: bool,
    },
    /// Who, from where, what, and whether the recording verifies.
    Show { id: String },
    /// Check signature, hash chain, completeness and retention.
    Verify {
        id: Option<String>,
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
    /// Full-text search over what was on screen and what was typed.
    Search {
        query: String,
        #[command(flatten)]
        filters: Filters,
        #[arg(long, short = 'i')]
        ignore_case: bool,
    },
    /// Replay in your terminal (ssh -t); sequences that could act on it are removed.
    Replay {
        id: String,
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        #[arg(long)]
        idle_limit: Option<f64>,
        #[arg(long)]
        input: bool,
        #[arg(long)]
        channel: Option<u32>,
    },
    /// Follow a running session live (auditors; ssh -t; Ctrl-] or ~. leaves).
    Watch {
        id: String,
        #[arg(long)]
        channel: Option<u32>,
    },
    /// End a running session (terminators); its user reads who and why.
    Terminate {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// The recording as asciicast v2 on stdout: `ssh bastion sessions export ID > s.cast`.
    Export {
        id: String,
        #[arg(long)]
        channel: Option<u32>,
    },
}

impl Filters {
    fn filter(&self) -> Result<Filter, String> {
        let now = crate::time::now();
        let when = |w: &Option<String>| w.as_deref().map(|t| crate::console::parse_when(t, now)).transpose();
        Ok(Filter {
            user: self.user.clone(),
            target: self.target.clone(),
            since: when(&self.since)?,
            until: when(&self.until)?,
            break_glass: self.breakglass,
            unreviewed: self.unreviewed,
        })
    }
}

pub fn viewer(ctx: &CommandCtx) -> Viewer {
    Viewer {
        user: ctx.identity.user.clone(),
        role: crate::access::Role::of(&ctx.identity, &ctx.bastion.config.console),
        door: Door::Ssh,
        terminates: crate::access::Role::may_terminate(&ctx.identity, &ctx.bastion.config.console),
    }
}

/// Runs `sessions ARGS` on the channel; returns the exit status.
pub async fn run(ctx: &CommandCtx, args: &[String], io: &mut ChannelIo) -> u32 {
    let parsed = match Args::try_parse_from(std::iter::once("sessions".to_string()).chain(args.iter().cloned())) {
        Ok(a) => a,
        Err(e) => {
            let text = escape(&e.render().to_string()).into_owned();
            return if e.use_stderr() {
                io.write_err(&text).await;
                2
            } else {
                io.write(&text).await;
                0
            };
        }
    };
    let reader = Reader::of(&ctx.bastion);
    let done = match &parsed.command {
        Cmd::Watch { id, channel } => super::watch::run(&ctx.bastion, &viewer(ctx), id, *channel, io).await,
        Cmd::Terminate { id, reason } => {
            let b = &ctx.bastion;
            match crate::console::terminate(&reader, &viewer(ctx), &b.running, id, reason).await {
                Ok(()) => {
                    io.write(&format!("session {} terminated\n", escape(id))).await;
                    Ok(0)
                }
                Err(e) => Err(e),
            }
        }
        Cmd::List {
            running: true, json, ..
        } => match reader.audit_view(&viewer(ctx), "list_running", "-") {
            Ok(()) => {
                let rows = crate::console::running_rows(&viewer(ctx), &ctx.bastion.running);
                io.write(&text::running(&rows, *json)).await;
                Ok(0)
            }
            Err(e) => Err(e),
        },
        _ => execute(&reader, &viewer(ctx), parsed.command, io).await,
    };
    match done {
        Ok(status) => status,
        Err(e) => {
            io.write_err(&format!("bastion: {}\n", escape(&format!("{e:#}")))).await;
            1
        }
    }
}

async fn execute(reader: &Reader, viewer: &Viewer, cmd: Cmd, io: &mut ChannelIo) -> anyhow::Result<u32> {
    let store = reader.store.describe();
    let status = |failed: bool| u32::from(failed);
    match cmd {
        Cmd::List {
            filters, json, limit, ..
        } => {
            let filter = filters.filter().map_err(anyhow::Error::msg)?;
            reader.refresh_index(false).await?;
            let rows = reader.page(viewer, &filter, None, limit.saturating_add(1))?;
            let more = rows.len() > limit as usize;
            let rows = &rows[..rows.len().min(limit as usize)];
            io.write(&if json {
                text::list_json(rows)
            } else {
                text::list(rows, more)
            })
            .await;
            Ok(0)
        }
        Cmd::Show { id } => {
            let rec = reader.recording(viewer, "show", &id).await?;
            let report = reader.verified(&id).await?;
            io.write(&text::show(&rec, &report, &store)).await;
            Ok(status(!report.ok()))
        }
        Cmd::Verify { id, all } => {
            let outcomes = match (id, all) {
                (Some(id), _) => vec![reader.verify_one(viewer, &id).await?],
                (None, true) => reader.verify_all(viewer).await?,
                (None, false) => anyhow::bail!("name a session, or --all"),
            };
            let (out, failed) = text::verify(&outcomes, &store);
            io.write(&out).await;
            Ok(status(failed > 0))
        }
        Cmd::Search {
            query,
            filters,
            ignore_case,
        } => {
            let filter = filters.filter().map_err(anyhow::Error::msg)?;
            let (hits, sessions) = reader.search(viewer, &query, &filter, ignore_case).await?;
            io.write(&text::search(&hits, &query, sessions)).await;
            Ok(status(hits.is_empty()))
        }
        Cmd::Export { id, channel } => {
            let rec = reader.recording(viewer, "export", &id).await?;
            // Raw bytes: `\n` must stay `\n` in the file, PTY or not.
            io.write_raw(recorder::cast::export(&rec, channel).into_bytes()).await;
            Ok(0)
        }
        Cmd::Watch { .. } | Cmd::Terminate { .. } => unreachable!("handled by run"),
        Cmd::Replay {
            id,
            speed,
            idle_limit,
            input,
            channel,
        } => {
            if !io.pty {
                anyhow::bail!("replay draws on a terminal: run it as `ssh -t BASTION sessions replay ID`");
            }
            let opts = recorder::replay::ReplayOptions {
                speed,
                idle_limit,
                include_input: input,
            };
            if !(speed.is_finite() && speed > 0.0) {
                anyhow::bail!("--speed must be a number > 0");
            }
            let rec = reader.recording(viewer, "replay", &id).await?;
            let cast = recorder::cast::export(&rec, channel);
            let parsed = recorder::cast_parse::parse(&cast).map_err(|e| anyhow::anyhow!("{e}"))?;
            for (delay, piece) in recorder::replay::schedule(&parsed.events, &opts) {
                tokio::time::sleep(delay).await;
                if !io.write_raw(piece.into_bytes()).await {
                    break;
                }
            }
            io.write_raw(b"\x1b[0m\r\n".to_vec()).await;
            Ok(0)
        }
    }
}
