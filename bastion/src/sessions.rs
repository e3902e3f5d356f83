//! `bastion sessions …`: what an auditor does with recordings on the bastion
//! host — list, show, verify, replay, search, export, reindex. Everything is
//! read from the write-once store; the state store only keeps an index.
//! Every recorded string is printed through [`recorder::display`]: it was
//! chosen by whoever made the session, and the auditor's terminal reads it.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use recorder::display::{escape as e, escape_json, escape_lines};
use recorder::format::{EventKind, FileDir};
use recorder::read::Recording;
use recorder::store::Store;

use crate::config::Config;
use crate::state::IndexedSession;
use crate::time::{rfc3339, unix};

/// Filters of `sessions list` and `sessions search`.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub user: Option<String>,
    pub target: Option<String>,
    pub since: Option<Duration>,
    pub break_glass: bool,
}

impl Filter {
    fn since_unix(&self) -> i64 {
        self.since
            .and_then(|d| SystemTime::now().checked_sub(d))
            .map(unix)
            .unwrap_or(0)
    }

    fn keeps(&self, s: &IndexedSession) -> bool {
        self.user.as_ref().is_none_or(|u| &s.user == u)
            && self.target.as_ref().is_none_or(|t| &s.target == t)
            && (!self.break_glass || s.grant_id.is_some())
    }
}

fn parse_time(text: &str) -> Option<i64> {
    humantime::parse_rfc3339_weak(text).ok().map(unix)
}

/// A manifest part as one line of JSON, safe to show (see [`escape_json`]).
fn json_line(value: &impl serde::Serialize) -> String {
    escape_json(&serde_json::to_string(value).unwrap_or_default()).into_owned()
}

/// The index row a recording stands for.
fn index_row(rec: &Recording) -> Option<IndexedSession> {
    let m = rec.manifest.as_ref()?;
    Some(IndexedSession {
        id: rec.session.clone(),
        user: m.info.user.clone(),
        target: m.info.target.clone(),
        login: m.info.login.clone(),
        client: m.info.client.clone(),
        started_at: parse_time(&m.info.started).unwrap_or(0),
        ended_at: parse_time(&m.ended),
        ended_how: serde_json::to_value(m.ended_how)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "?".into()),
        grant_id: m.info.break_glass.as_ref().map(|b| b.grant.clone()),
        record_input: m.info.record_input,
        channels: m.channels.len() as i64,
    })
}

/// Adds sessions the index does not know yet (sealed since the last look).
async fn refresh_index(config: &Config, store: &dyn Store, rebuild: bool) -> Result<usize> {
    let state = crate::context::open_state(config)?;
    if rebuild {
        state.clear_session_index()?;
    }
    let known: std::collections::HashSet<String> = state.indexed_ids()?.into_iter().collect();
    let mut added = 0;
    for id in recorder::read::list_sessions(store).await.map_err(|e| anyhow!("{e}"))? {
        if known.contains(&id) {
            continue;
        }
        let rec = recorder::read::load(store, &id).await.map_err(|e| anyhow!("{e}"))?;
        if let Some(row) = index_row(&rec) {
            state.index_session(&row)?;
            added += 1;
        }
    }
    Ok(added)
}

async fn open(config: &Config) -> Result<std::sync::Arc<dyn Store>> {
    crate::recording::open_store(config).await
}

pub async fn list(config: &Config, filter: &Filter, json: bool) -> Result<ExitCode> {
    let store = open(config).await?;
    refresh_index(config, store.as_ref(), false).await?;
    let state = crate::context::open_state(config)?;
    let rows: Vec<IndexedSession> = state
        .indexed_sessions(filter.since_unix())?
        .into_iter()
        .filter(|s| filter.keeps(s))
        .collect();
    if json {
        println!("{}", escape_json(&serde_json::to_string_pretty(&rows)?));
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("No recorded sessions match.");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<16}  {:<20}  {:<10}  {:<20}  {:<9}  BREAK-GLASS",
        "SESSION", "STARTED", "USER", "LOGIN@TARGET", "ENDED"
    );
    for s in rows {
        println!(
            "{:<16}  {:<20}  {:<10}  {:<20}  {:<9}  {}",
            e(&s.id),
            rfc3339(s.started_at),
            e(&s.user),
            format!("{}@{}", e(&s.login), e(&s.target)),
            e(&s.ended_how),
            e(s.grant_id.as_deref().unwrap_or("-"))
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn reindex(config: &Config) -> Result<ExitCode> {
    let store = open(config).await?;
    let n = refresh_index(config, store.as_ref(), true).await?;
    println!("indexed {n} sessions from {}", e(&store.describe()));
    Ok(ExitCode::SUCCESS)
}

async fn load(store: &dyn Store, id: &str) -> Result<Recording> {
    let rec = recorder::read::load(store, id).await.map_err(|e| anyhow!("{e}"))?;
    if rec.manifest.is_none() && rec.events.is_empty() {
        bail!("no recording {id} in {}", store.describe());
    }
    Ok(rec)
}

fn verifying_key(config: &Config) -> Result<ed25519_dalek::VerifyingKey> {
    crate::recording::verifying_key(&config.server.recording_key)
}

pub async fn show(config: &Config, id: &str) -> Result<ExitCode> {
    let store = open(config).await?;
    let rec = load(store.as_ref(), id).await?;
    let report = recorder::verify::verify(store.as_ref(), id, &verifying_key(config)?)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let mut out = String::new();
    match &rec.manifest {
        Some(m) => {
            let i = &m.info;
            let _ = writeln!(out, "session:   {}", e(&rec.session));
            let _ = writeln!(out, "user:      {} (groups: {})", e(&i.user), e(&i.groups.join(", ")));
            let _ = writeln!(
                out,
                "from:      {}   factors: {}",
                e(&i.client),
                e(&i.factors.join("+"))
            );
            let _ = writeln!(out, "target:    {}@{}", e(&i.login), e(&i.target));
            let _ = writeln!(out, "started:   {}", e(&i.started));
            let how = serde_json::to_value(m.ended_how)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let _ = writeln!(out, "ended:     {} ({})", e(&m.ended), e(&how));
            if let Some(g) = &m.gap {
                let _ = writeln!(out, "gap:       {}", json_line(g));
            }
            if let Some(bg) = &i.break_glass {
                let _ = writeln!(
                    out,
                    "break-glass: grant {} ticket {} reason \"{}\"",
                    e(&bg.grant),
                    e(bg.ticket.as_deref().unwrap_or("-")),
                    e(&bg.reason)
                );
            }
            let _ = writeln!(
                out,
                "keystrokes: {}",
                if i.record_input { "recorded" } else { "not recorded" }
            );
            let _ = writeln!(out, "store:     {}   chunks: {}", e(&store.describe()), m.chunks.len());
            let _ = writeln!(out, "channels:");
            for c in &m.channels {
                let _ = writeln!(out, "  {}", json_line(c));
            }
        }
        None => {
            let _ = writeln!(out, "session:   {} (no manifest yet: running, or cut)", e(&rec.session));
        }
    }
    let mut ops = String::new();
    for ev in &rec.events {
        let line = match &ev.kind {
            EventKind::Exec { command } => format!("exec {}", e(command)),
            EventKind::Subsystem { name } => format!("subsystem {}", e(name)),
            EventKind::File(f) => format!(
                "file {} {}{}{}{}",
                e(&f.op),
                e(&f.path),
                f.to.as_ref().map(|t| format!(" -> {}", e(t))).unwrap_or_default(),
                f.bytes.map(|b| format!(" {b} bytes")).unwrap_or_default(),
                match f.dir {
                    Some(FileDir::Up) => " (upload)",
                    Some(FileDir::Down) => " (download)",
                    None => "",
                }
            ),
            EventKind::Fwd {
                host,
                port,
                bytes_in,
                bytes_out,
            } => format!("forward {}:{port} in {bytes_in} out {bytes_out} bytes", e(host)),
            EventKind::Refused { request, reason } => format!("refused {}: {}", e(request), e(reason)),
            _ => continue,
        };
        let _ = writeln!(ops, "  +{:>8.3}s ch{} {line}", ev.t, ev.ch);
    }
    if !ops.is_empty() {
        let _ = writeln!(out, "events:\n{ops}");
    }
    let _ = writeln!(out, "verification: {}", if report.ok() { "OK" } else { "FAILED" });
    let _ = write!(out, "{}", escape_lines(&report.to_string()));
    println!("{out}");
    // What was shown cannot be trusted when it does not verify: say so in the status too.
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub async fn verify(config: &Config, id: Option<&str>) -> Result<ExitCode> {
    let store = open(config).await?;
    let key = verifying_key(config)?;
    let (ids, missing) = match id {
        Some(id) => (vec![id.to_string()], Vec::new()),
        None => {
            let present = recorder::read::list_sessions(store.as_ref())
                .await
                .map_err(|e| anyhow!("{e}"))?;
            let missing = missing_sessions(config, &present)?;
            (present, missing)
        }
    };
    let mut failed = 0;
    for id in &ids {
        let report = recorder::verify::verify(store.as_ref(), id, &key)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        if report.ok() {
            println!("{}: OK", e(id));
        } else {
            failed += 1;
            println!("{}: FAILED", e(id));
        }
        for line in report.to_string().lines() {
            println!("  {}", e(line));
        }
    }
    for (id, known_by) in &missing {
        failed += 1;
        println!("{}: MISSING", e(id));
        println!("  known to {known_by}, absent from {}", e(&store.describe()));
    }
    let total = ids.len() + missing.len();
    if total > 1 || !missing.is_empty() {
        println!("{total} sessions, {failed} failed");
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Sessions the index or the audit log knows as stored, and the store lacks:
/// a deleted recording leaves those two traces behind.
fn missing_sessions(config: &Config, present: &[String]) -> Result<Vec<(String, &'static str)>> {
    let present: std::collections::HashSet<&str> = present.iter().map(String::as_str).collect();
    let indexed: std::collections::BTreeSet<String> =
        crate::context::open_state(config)?.indexed_ids()?.into_iter().collect();
    let sealed = crate::audit::sealed_sessions(&config.audit.file)?;
    let known_by = |id: &str| match (indexed.contains(id), sealed.contains(id)) {
        (true, true) => "the session index and the audit log",
        (true, false) => "the session index",
        _ => "the audit log",
    };
    Ok(indexed
        .union(&sealed)
        .filter(|id| !present.contains(id.as_str()))
        .map(|id| (id.clone(), known_by(id)))
        .collect())
}

pub async fn export(config: &Config, id: &str, out: &std::path::Path, channel: Option<u32>) -> Result<ExitCode> {
    let store = open(config).await?;
    let rec = load(store.as_ref(), id).await?;
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
    let store = open(config).await?;
    let rec = load(store.as_ref(), id).await?;
    let cast = recorder::cast::export(&rec, channel);
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    recorder::replay::replay_to(&cast, &opts, &mut lock, std::thread::sleep)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn search(config: &Config, query: &str, filter: &Filter, case_insensitive: bool) -> Result<ExitCode> {
    let store = open(config).await?;
    refresh_index(config, store.as_ref(), false).await?;
    let state = crate::context::open_state(config)?;
    let sessions: Vec<IndexedSession> = state
        .indexed_sessions(filter.since_unix())?
        .into_iter()
        .filter(|s| filter.keeps(s))
        .collect();
    let mut hits = 0;
    for s in &sessions {
        let rec = recorder::read::load(store.as_ref(), &s.id)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        let mut channels: Vec<u32> = rec.events.iter().map(|e| e.ch).collect();
        channels.sort();
        channels.dedup();
        for ch in channels {
            let cast = recorder::cast::export(&rec, Some(ch));
            let found = recorder::search::search(
                &cast,
                query,
                recorder::search::SearchOptions {
                    case_insensitive,
                    context_lines: 1,
                },
            )?;
            for h in found {
                hits += 1;
                let source = match h.source {
                    recorder::search::Source::Screen => "screen",
                    recorder::search::Source::Input => "input",
                };
                println!(
                    "{}  {}@{}  {}  +{:.1}s  [{source}]  {}",
                    e(&s.id),
                    e(&s.user),
                    e(&s.target),
                    rfc3339(s.started_at),
                    h.time,
                    e(h.line.trim_end())
                );
                for c in h.context {
                    println!("      | {}", e(c.trim_end()));
                }
            }
        }
    }
    if hits == 0 {
        println!("No match for \"{}\" in {} sessions.", e(query), sessions.len());
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
