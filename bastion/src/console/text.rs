//! The console as text: what `bastion sessions …` on the host and
//! `ssh bastion sessions …` print, the same bytes through the same code.
//! Every recorded or user-chosen string goes through [`recorder::display`]:
//! whoever made the session chose it, and an auditor's terminal reads it.

use std::fmt::Write as _;

use recorder::display::{escape as e, escape_json, escape_lines};
use recorder::format::{Event, EventKind, FileDir};
use recorder::read::Recording;
use recorder::verify::VerifyReport;

use super::{SearchHit, VerifyOutcome};
use crate::state::{GrantRecord, GrantSession, IndexedSession};
use crate::time::rfc3339;

/// A manifest part as one line of JSON, safe to show (see [`escape_json`]).
fn json_line(value: &impl serde::Serialize) -> String {
    escape_json(&serde_json::to_string(value).unwrap_or_default()).into_owned()
}

/// `sessions list`; `more` says the page was full.
pub fn list(rows: &[IndexedSession], more: bool) -> String {
    if rows.is_empty() {
        return "No recorded sessions match.\n".into();
    }
    let mut out = format!(
        "{:<16}  {:<20}  {:<10}  {:<20}  {:<9}  BREAK-GLASS\n",
        "SESSION", "STARTED", "USER", "LOGIN@TARGET", "ENDED"
    );
    for s in rows {
        let _ = writeln!(
            out,
            "{:<16}  {:<20}  {:<10}  {:<20}  {:<9}  {}",
            e(&s.id),
            rfc3339(s.started_at),
            e(&s.user),
            format!("{}@{}", e(&s.login), e(&s.target)),
            e(&s.ended_how),
            e(s.grant_id.as_deref().unwrap_or("-"))
        );
    }
    if more {
        out.push_str("(more sessions match: narrow with --since/--until/--user, or raise --limit)\n");
    }
    out
}

/// `sessions list --running`: the sessions running now, who watches them.
pub fn running(rows: &[std::sync::Arc<crate::running::RunningSession>], json: bool) -> String {
    if json {
        let list: Vec<_> = rows
            .iter()
            .map(|s| {
                let (i, st) = (&s.info, s.state());
                serde_json::json!({
                    "id": i.id, "user": i.user, "target": i.target, "login": i.login, "client": i.client,
                    "started_at": i.started_at, "grant_id": i.grant_id, "reason": i.reason, "ticket": i.ticket,
                    "held_for_watcher": i.needs_watcher && st.watchers.is_empty(),
                    "watchers": st.watchers.iter().map(|w| serde_json::json!({"user": w.user, "door": w.door, "since": w.since})).collect::<Vec<_>>(),
                })
            })
            .collect();
        return format!(
            "{}\n",
            escape_json(&serde_json::to_string_pretty(&list).unwrap_or_default())
        );
    }
    if rows.is_empty() {
        return "No sessions are running.\n".into();
    }
    let mut out = format!(
        "{:<16}  {:<20}  {:<10}  {:<20}  {:<12}  WATCHERS\n",
        "SESSION", "STARTED", "USER", "LOGIN@TARGET", "BREAK-GLASS"
    );
    for s in rows {
        let (i, st) = (&s.info, s.state());
        let watchers = if st.watchers.is_empty() {
            if i.needs_watcher {
                "(held: waiting for one)".to_string()
            } else {
                "-".to_string()
            }
        } else {
            st.watchers
                .iter()
                .map(|w| format!("{} ({})", e(&w.user), w.door))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "{:<16}  {:<20}  {:<10}  {:<20}  {:<12}  {}",
            e(&i.id),
            rfc3339(i.started_at),
            e(&i.user),
            format!("{}@{}", e(&i.login), e(&i.target)),
            if i.grant_id.is_some() { "yes" } else { "-" },
            watchers
        );
    }
    out
}

/// `sessions list --json`.
pub fn list_json(rows: &[IndexedSession]) -> String {
    format!(
        "{}\n",
        escape_json(&serde_json::to_string_pretty(rows).unwrap_or_default())
    )
}

/// One timeline line of a recorded event that is not terminal data.
pub fn event_line(ev: &Event) -> Option<String> {
    Some(match &ev.kind {
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
        _ => return None,
    })
}

/// `sessions show`: who, from where, what, and whether it verifies.
pub fn show(rec: &Recording, report: &VerifyReport, store: &str) -> String {
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
            let _ = writeln!(out, "store:     {}   chunks: {}", e(store), m.chunks.len());
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
        if let Some(line) = event_line(ev) {
            let _ = writeln!(ops, "  +{:>8.3}s ch{} {line}", ev.t, ev.ch);
        }
    }
    if !ops.is_empty() {
        let _ = writeln!(out, "events:\n{ops}");
    }
    let _ = writeln!(out, "verification: {}", if report.ok() { "OK" } else { "FAILED" });
    let _ = writeln!(out, "{}", escape_lines(&report.to_string()));
    out
}

/// `sessions verify`: one block per session and, for several, a total.
/// Returns the text and how many failed.
pub fn verify(outcomes: &[VerifyOutcome], store: &str) -> (String, usize) {
    let mut out = String::new();
    let mut failed = 0;
    for o in outcomes {
        match o {
            VerifyOutcome::Checked(id, report) => {
                let word = if report.ok() { "OK" } else { "FAILED" };
                failed += usize::from(!report.ok());
                let _ = writeln!(out, "{}: {word}", e(id));
                for line in report.to_string().lines() {
                    let _ = writeln!(out, "  {}", e(line));
                }
            }
            VerifyOutcome::Missing { id, known_by } => {
                failed += 1;
                let _ = writeln!(out, "{}: MISSING", e(id));
                let _ = writeln!(out, "  known to {known_by}, absent from {}", e(store));
            }
        }
    }
    let missing = outcomes.iter().any(|o| matches!(o, VerifyOutcome::Missing { .. }));
    if outcomes.len() > 1 || missing {
        let _ = writeln!(out, "{} sessions, {failed} failed", outcomes.len());
    }
    (out, failed)
}

/// `sessions search`: one line per hit with its context.
pub fn search(hits: &[SearchHit], query: &str, sessions: usize) -> String {
    if hits.is_empty() {
        return format!("No match for \"{}\" in {sessions} sessions.\n", e(query));
    }
    let mut out = String::new();
    for h in hits {
        let source = match h.hit.source {
            recorder::search::Source::Screen => "screen",
            recorder::search::Source::Input => "input",
        };
        let s = &h.session;
        let _ = writeln!(
            out,
            "{}  {}@{}  {}  +{:.1}s  [{source}]  {}",
            e(&s.id),
            e(&s.user),
            e(&s.target),
            rfc3339(s.started_at),
            h.hit.time,
            e(h.hit.line.trim_end())
        );
        for c in &h.hit.context {
            let _ = writeln!(out, "      | {}", e(c.trim_end()));
        }
    }
    out
}

/// `breakglass list`.
pub fn grants(grants: &[(GrantRecord, Vec<GrantSession>)], unreviewed: bool, now: i64) -> String {
    if grants.is_empty() {
        return if unreviewed {
            "No unreviewed break-glass grants.\n".into()
        } else {
            "No break-glass grants.\n".into()
        };
    }
    let mut out = String::new();
    for (g, sessions) in grants {
        let state_word = if now < g.ends_at { "ACTIVE" } else { "ended" };
        let _ = writeln!(
            out,
            "{}  {}  {} → {}  {}  [{}]",
            e(&g.id),
            e(&g.user),
            rfc3339(g.starts_at),
            rfc3339(g.ends_at),
            e(&g.targets.join(",")),
            state_word
        );
        let _ = writeln!(out, "    reason:   {}", e(&g.reason));
        if let Some(t) = &g.ticket {
            let _ = writeln!(out, "    ticket:   {}", e(t));
        }
        let _ = writeln!(out, "    from:     {} (via {})", e(&g.client), e(&g.source));
        if sessions.is_empty() {
            let _ = writeln!(out, "    sessions: none");
        }
        for s in sessions {
            let _ = writeln!(
                out,
                "    session:  {} {}@{} at {}",
                e(&s.session_id),
                e(&s.login),
                e(&s.target),
                rfc3339(s.started_at)
            );
        }
        match (&g.reviewer, &g.review_note) {
            (Some(r), note) => {
                let _ = writeln!(
                    out,
                    "    reviewed: by {} at {}: {}",
                    e(r),
                    rfc3339(g.reviewed_at.unwrap_or(0)),
                    e(note.as_deref().unwrap_or(""))
                );
            }
            (None, _) => {
                let _ = writeln!(out, "    reviewed: NOT YET");
            }
        }
        out.push('\n');
    }
    out
}

/// `breakglass list --json`.
pub fn grants_json(grants: &[(GrantRecord, Vec<GrantSession>)]) -> String {
    let rows: Vec<serde_json::Value> = grants
        .iter()
        .map(|(g, s)| serde_json::json!({"grant": g, "sessions": s}))
        .collect();
    format!(
        "{}\n",
        escape_json(&serde_json::to_string_pretty(&rows).unwrap_or_default())
    )
}
