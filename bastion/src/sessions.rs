//! `bastion sessions …` on the bastion host: the console's reads for an
//! operator with a shell there (list, show, verify, replay, search, export,
//! reindex). The work and the text are [`crate::console`]'s, the same as
//! `ssh bastion sessions …` prints.

use std::process::ExitCode;

use anyhow::{Context, Result};
use recorder::display::escape as e;

use crate::config::Config;
use crate::console::{self, Filter, Reader, Viewer, text};

/// Who runs the command on the host, as the login session says.
pub fn os_user() -> String {
    std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        // SAFETY: getuid has no preconditions and cannot fail.
        .unwrap_or_else(|_| format!("uid {}", unsafe { libc::getuid() }))
}

fn viewer() -> Viewer {
    Viewer::host(os_user())
}

fn status(failed: bool) -> ExitCode {
    if failed { ExitCode::from(1) } else { ExitCode::SUCCESS }
}

pub async fn list(config: &Config, filter: &Filter, json: bool, limit: u32) -> Result<ExitCode> {
    let reader = Reader::open(config).await?;
    reader.refresh_index(false).await?;
    let rows = reader.page(&viewer(), filter, None, limit.saturating_add(1))?;
    let more = rows.len() > limit as usize;
    let rows = &rows[..rows.len().min(limit as usize)];
    print!(
        "{}",
        if json {
            text::list_json(rows)
        } else {
            text::list(rows, more)
        }
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn reindex(config: &Config) -> Result<ExitCode> {
    let reader = Reader::open(config).await?;
    let n = reader.refresh_index(true).await?;
    println!("indexed {n} sessions from {}", e(&reader.store.describe()));
    Ok(ExitCode::SUCCESS)
}

pub async fn show(config: &Config, id: &str) -> Result<ExitCode> {
    let reader = Reader::open(config).await?;
    let rec = reader.recording(&viewer(), "show", id).await?;
    let report = reader.verified(id).await?;
    print!("{}", text::show(&rec, &report, &reader.store.describe()));
    // What was shown cannot be trusted when it does not verify: say so in the status too.
    Ok(status(!report.ok()))
}

pub async fn verify(config: &Config, id: Option<&str>) -> Result<ExitCode> {
    let reader = Reader::open(config).await?;
    let outcomes = match id {
        Some(id) => vec![reader.verify_one(&viewer(), id).await?],
        None => reader.verify_all(&viewer()).await?,
    };
    let (out, failed) = text::verify(&outcomes, &reader.store.describe());
    print!("{out}");
    Ok(status(failed > 0))
}

pub async fn export(config: &Config, id: &str, out: &std::path::Path, channel: Option<u32>) -> Result<ExitCode> {
    let reader = Reader::open(config).await?;
    let rec = reader.recording(&viewer(), "export", id).await?;
    let cast = recorder::cast::export(&rec, channel);
    std::fs::write(out, cast).with_context(|| format!("writing {}", out.display()))?;
    println!("wrote {}", e(&out.display().to_string()));
    Ok(ExitCode::SUCCESS)
}

pub async fn replay(
    config: &Config,
    id: &str,
    channel: Option<u32>,
    opts: recorder::replay::ReplayOptions,
) -> Result<ExitCode> {
    let reader = Reader::open(config).await?;
    let rec = reader.recording(&viewer(), "replay", id).await?;
    let cast = recorder::cast::export(&rec, channel);
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    recorder::replay::replay_to(&cast, &opts, &mut lock, std::thread::sleep)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn search(config: &Config, query: &str, filter: &Filter, case_insensitive: bool) -> Result<ExitCode> {
    let reader = Reader::open(config).await?;
    let (hits, sessions) = reader.search(&viewer(), query, filter, case_insensitive).await?;
    print!("{}", text::search(&hits, query, sessions));
    Ok(status(hits.is_empty()))
}

/// `bastion breakglass list`.
pub async fn list_grants(config: &Config, unreviewed: bool, user: Option<&str>, json: bool) -> Result<ExitCode> {
    let reader = Reader::open(config).await?;
    let grants = reader.grants(&viewer(), unreviewed, user)?;
    print!(
        "{}",
        if json {
            text::grants_json(&grants)
        } else {
            text::grants(&grants, unreviewed, crate::time::now())
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// `bastion breakglass review ID --reviewer NAME --note TEXT`: the reviewer
/// is named (the host operator may act for them), the OS user audited too.
pub async fn review_grant(config: &Config, id: &str, reviewer: &str, note: &str) -> Result<ExitCode> {
    if reviewer.trim().is_empty() || reviewer.chars().any(policy::is_unsafe) {
        anyhow::bail!("--reviewer must name the reviewer");
    }
    let reader = Reader::open(config).await?;
    let as_reviewer = Viewer::host(reviewer.trim().to_string());
    match reader.review(&as_reviewer, id, note) {
        Ok(g) => {
            reader.audit.record(
                "console.review",
                serde_json::json!({"grant": g.id, "reviewer": reviewer, "os_user": os_user()}),
            );
            println!("{}: reviewed by {}.", e(&g.id), e(reviewer));
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            eprintln!("bastion: {}", e(&format!("{err:#}")));
            Ok(ExitCode::from(1))
        }
    }
}

/// `--since`/`--until`: a time (`2026-12-01T10:00:00Z`, `2026-12-01`) or a
/// duration back from now (`2d`, `12h`).
pub fn parse_when(text: &str) -> Result<i64, String> {
    console::parse_when(text, crate::time::now())
}
