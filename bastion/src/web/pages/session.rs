//! One session's page: the manifest (who, from where, factors, target,
//! login, reason, grant, times), the timeline of channels, commands, file
//! transfers and forwards, the verification saying exactly what is wrong,
//! a player per terminal channel, and the export. Everything recorded is
//! text: maud escapes it for HTML, [`recorder::display`] makes control and
//! bidi characters visible first.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use recorder::display::escape as e;
use recorder::format::{Event, EventKind};

use super::{failed, layout};
use crate::web::Web;
use crate::web::analysis::Analysis;
use crate::web::login::Authed;

/// How long the page waits for a first analysis before showing what it has.
const WAIT: Duration = Duration::from_millis(1500);

#[derive(serde::Deserialize)]
pub struct Params {
    /// The terminal channel to play (default: the first with output).
    ch: Option<u32>,
}

pub async fn show(
    State(web): State<Arc<Web>>,
    authed: Authed,
    Path(id): Path<String>,
    Query(p): Query<Params>,
) -> Response {
    let row = match web.reader.visible(&authed.viewer, &id).await {
        Ok(Some(r)) => r,
        Ok(None) => return super::not_found().await,
        Err(e) => return failed(StatusCode::SERVICE_UNAVAILABLE, &format!("{e:#}")),
    };
    if let Err(e) = web.reader.audit_view(&authed.viewer, "show", &id) {
        return failed(StatusCode::SERVICE_UNAVAILABLE, &format!("{e:#}"));
    }
    let body = match web.analyses.get(&web, &id, WAIT).await {
        None => html! {
            h1 { "Session " (id) }
            meta http-equiv="refresh" content="2";
            p.busy { "Reading and verifying the recording… this page reloads by itself." }
        },
        Some(Err(why)) => html! {
            h1 { "Session " (id) }
            p.error { "The recording cannot be read: " (why) }
            p { "User " (row.user) " on " (row.login) "@" (row.target) "." }
        },
        Some(Ok(a)) => page(&id, &a, p.ch),
    };
    layout(&format!("Session {id}"), Some(&authed), body).into_response()
}

fn page(id: &str, a: &Analysis, ch: Option<u32>) -> Markup {
    let m = &a.manifest;
    let i = &m.info;
    html! {
        h1 { "Session " (id) }
        section.manifest {
            dl {
                dt { "User" } dd { (i.user) " " span.groups { "(" (i.groups.join(", ")) ")" } }
                dt { "From" } dd { (i.client) }
                dt { "Factors" } dd { (i.factors.join(" + ")) }
                dt { "Target" } dd { (i.login) "@" (i.target) }
                dt { "Started" } dd { (i.started) }
                dt { "Ended" } dd { (m.ended) " (" (format!("{:?}", m.ended_how).to_lowercase()) ")" }
                @if let Some(g) = &m.gap { dt { "Gap" } dd.error { "not recorded from " (g.from) " to " (g.to) } }
                @if let Some(bg) = &i.break_glass {
                    dt { "Break-glass" }
                    dd {
                        span.badge.badge-breakglass { "break-glass" }
                        " grant " span.grant { (bg.grant) }
                        @if let Some(t) = &bg.ticket { " ticket " span.ticket { (t) } }
                        " until " (bg.ends_at)
                        p.reason { "Reason: " (bg.reason) }
                    }
                }
                dt { "Keystrokes" } dd { @if i.record_input { "recorded" } @else { "not recorded" } }
                dt { "Bastion" } dd { (m.bastion) }
            }
        }
        section.verification {
            h2 { "Verification" }
            @if a.report.ok() {
                p { span.badge.badge-ok { "OK" } " signature, hash chain and every chunk check out." }
            } @else {
                p { span.badge.badge-failed { "FAILED" } " what was shown below cannot be trusted:" }
            }
            pre.findings { (recorder::display::escape_lines(&a.report.to_string())) }
        }
        section.players {
            h2 { "Terminal" }
            @let terminals: Vec<_> = a.digest.channels.iter().filter(|c| c.output_bytes > 0).collect();
            @let shown = terminals.iter().find(|c| Some(c.channel) == ch).or(terminals.first());
            @if terminals.len() > 1 {
                p.channels { "Channels: " @for c in &terminals {
                    a href={ "/s/" (id) "?ch=" (c.channel) } { "channel " (c.channel) } " "
                } }
            }
            @match shown {
                None => p { "No terminal output was recorded." },
                Some(c) => div.channel {
                    h3 { "Channel " (c.channel) " · " (c.width) "×" (c.height) " · " (format!("{:.1}", c.duration)) " s · "
                        (c.output_bytes) " bytes"
                        " · " a href={ "/s/" (id) "/export?ch=" (c.channel) } download { "export .cast" } }
                    div id="player"
                        data-cast-url={ "/s/" (id) "/cast?ch=" (c.channel) }
                        data-duration=(format!("{:.3}", c.duration))
                        data-start="0"
                        data-input=(if c.input_recorded { "1" } else { "0" }) {}
                    @if c.input_recorded { h3 { "Recorded input" } ol id="keystrokes" {} }
                },
            }
        }
        section.timeline {
            h2 { "Timeline" }
            @if a.digest.timeline.is_empty() { p { "Nothing but terminal data." } }
            table.timeline {
                thead { tr { th { "+s" } th { "ch" } th { "what" } } }
                tbody { @for ev in &a.digest.timeline { @if let Some(t) = timeline_line(ev) {
                    tr { td { (format!("{:.3}", ev.t)) } td { (ev.ch) } td.what { (t) } }
                } } }
            }
            @if a.digest.timeline_truncated { p { "(the timeline is cut here; export for the rest)" } }
            @for p in &a.digest.problems { p.error { (p) } }
        }
    }
}

/// One timeline row as text; terminal-dangerous characters made visible.
fn timeline_line(ev: &Event) -> Option<String> {
    if let Some(line) = crate::console::text::event_line(ev) {
        return Some(line);
    }
    Some(match &ev.kind {
        EventKind::Open { kind, host, port } => match (host, port) {
            (Some(h), Some(p)) => format!("open {} to {}:{p}", e(kind), e(h)),
            _ => format!("open {}", e(kind)),
        },
        EventKind::Pty { term, cols, rows } => format!("pty {} {cols}x{rows}", e(term)),
        EventKind::Shell {} => "shell".into(),
        EventKind::Signal { name } => format!("signal {}", e(name)),
        EventKind::Exit { status, signal, .. } => match (status, signal) {
            (Some(s), _) => format!("exit status {s}"),
            (_, Some(sig)) => format!("exit signal {}", e(sig)),
            _ => "exit".into(),
        },
        EventKind::Close { bytes_in, bytes_out } => format!("close (in {bytes_in} bytes, out {bytes_out} bytes)"),
        EventKind::Marker { d } => format!("marker {}", e(d)),
        _ => return None,
    })
}
