//! The sessions page: the index, newest first, filtered (user, target,
//! dates, break-glass, unreviewed) and paged by keyset, so page 2,000 of
//! 100,000 sessions costs what page 1 does.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use super::{duration, failed, layout, utc};
use crate::console::Filter;
use crate::state::IndexedSession;
use crate::web::Web;
use crate::web::login::Authed;

/// Rows per page.
pub const PAGE: u32 = 50;

#[derive(Deserialize, Default, Clone)]
pub struct Params {
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub target: String,
    #[serde(default)]
    pub since: String,
    #[serde(default)]
    pub until: String,
    #[serde(default)]
    pub breakglass: Option<String>,
    #[serde(default)]
    pub unreviewed: Option<String>,
    /// `STARTED.ID` of the last row of the page before.
    #[serde(default)]
    pub after: String,
}

fn some(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty()).then(|| t.to_string())
}

impl Params {
    pub fn filter(&self) -> Result<Filter, String> {
        let now = crate::time::now();
        let when = |t: &str| some(t).map(|t| crate::console::parse_when(&t, now)).transpose();
        Ok(Filter {
            user: some(&self.user),
            target: some(&self.target),
            since: when(&self.since)?,
            until: when(&self.until)?,
            break_glass: self.breakglass.is_some(),
            unreviewed: self.unreviewed.is_some(),
        })
    }

    fn after(&self) -> Option<(i64, String)> {
        let (t, id) = self.after.split_once('.')?;
        Some((t.parse().ok()?, id.to_string()))
    }

    /// This query string with another `after`.
    fn with_after(&self, after: &str) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("user", &self.user),
            ("target", &self.target),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        if self.breakglass.is_some() {
            q.append_pair("breakglass", "1");
        }
        if self.unreviewed.is_some() {
            q.append_pair("unreviewed", "1");
        }
        q.append_pair("after", after);
        q.finish()
    }
}

pub async fn list(State(web): State<Arc<Web>>, authed: Authed, Query(p): Query<Params>) -> Response {
    let filter = match p.filter() {
        Ok(f) => f,
        Err(e) => return failed(StatusCode::BAD_REQUEST, &e),
    };
    // No store listing here: the background indexer adds sealed sessions
    // every few seconds, so a page costs its index query only.
    let started = std::time::Instant::now();
    let rows = match web.reader.page(&authed.viewer, &filter, p.after(), PAGE + 1) {
        Ok(r) => r,
        Err(e) => return failed(StatusCode::SERVICE_UNAVAILABLE, &format!("{e:#}")),
    };
    let more = rows.len() > PAGE as usize;
    let rows = &rows[..rows.len().min(PAGE as usize)];
    let next = more
        .then(|| rows.last().map(|r| format!("{}.{}", r.started_at, r.id)))
        .flatten();
    let running = if p.after.is_empty() {
        crate::console::running_rows(&authed.viewer, &web.server.bastion.running)
    } else {
        Vec::new()
    };
    let body = html! {
        h1 { "Sessions" }
        @if !running.is_empty() {
            section.running {
                h2 { "Running now" }
                table.sessions.live {
                    thead { tr {
                        th { "Started (UTC)" } th { "User" } th { "From" } th { "Target" } th { "Login" }
                        th { "Break-glass" } th { "Watching" }
                    } }
                    tbody { @for r in &running { (live_row(r)) } }
                }
            }
        }
        form.filters method="get" action="/sessions" {
            label { "User" input name="user" value=(p.user); }
            label { "Target" input name="target" value=(p.target); }
            label { "Since" input name="since" value=(p.since) placeholder="2026-12-01 or 2d"; }
            label { "Until" input name="until" value=(p.until) placeholder="2026-12-02"; }
            label.check { input type="checkbox" name="breakglass" value="1" checked[p.breakglass.is_some()]; "break-glass only" }
            label.check { input type="checkbox" name="unreviewed" value="1" checked[p.unreviewed.is_some()]; "unreviewed only" }
            button type="submit" { "Filter" }
        }
        @if rows.is_empty() {
            p.empty { "No recorded sessions match." }
        } @else {
            table.sessions {
                thead { tr {
                    th { "Started (UTC)" } th { "User" } th { "From" } th { "Target" } th { "Login" }
                    th { "Duration" } th { "Factors" } th { "Channels" } th { "Break-glass" } th { "Verified" }
                } }
                tbody { @for s in rows { (row(s)) } }
            }
        }
        @if let Some(n) = next {
            a.next href={ "/sessions?" (p.with_after(&n)) } { "Older sessions →" }
        }
        p.timing { "index query: " (format!("{:.1}", started.elapsed().as_secs_f64() * 1000.0)) " ms" }
    };
    layout("Sessions", Some(&authed), body).into_response()
}

fn live_row(r: &crate::running::RunningSession) -> maud::Markup {
    let (i, st) = (&r.info, r.state());
    html! {
        tr data-session=(i.id) data-live="1" {
            td { a href={ "/s/" (i.id) "/live" } { (utc(i.started_at)) } " " span.badge.badge-live { "live" } }
            td { (i.user) }
            td { (i.client) }
            td { (i.target) }
            td { (i.login) }
            td {
                @if let Some(g) = &i.grant_id {
                    span.badge.badge-breakglass { "break-glass" }
                    " " span.reason { (i.reason.as_deref().unwrap_or("")) }
                    @if let Some(t) = &i.ticket { " " span.ticket { (t) } }
                    " " span.grant { (g) }
                }
            }
            td {
                @if st.watchers.is_empty() {
                    @if i.needs_watcher { span.held { "held: needs a watcher" } } @else { "nobody" }
                }
                @for w in &st.watchers { span.watcher { (w.user) } " " }
            }
        }
    }
}

fn row(s: &IndexedSession) -> maud::Markup {
    let length = s
        .ended_at
        .map(|e| duration(e - s.started_at))
        .unwrap_or_else(|| "running".into());
    html! {
        tr data-session=(s.id) {
            td { a href={ "/s/" (s.id) } { (utc(s.started_at)) } }
            td { (s.user) }
            td { (s.client) }
            td { (s.target) }
            td { (s.login) }
            td { (length) }
            td { (s.factors) }
            td { (s.kinds) }
            td {
                @if let Some(g) = &s.grant_id {
                    span.badge.badge-breakglass title=(s.reason.as_deref().unwrap_or("")) { "break-glass" }
                    " " span.reason { (s.reason.as_deref().unwrap_or("")) }
                    @if let Some(t) = &s.ticket { " " span.ticket { (t) } }
                    " " span.grant { (g) }
                }
            }
            td {
                @match s.verified.as_deref() {
                    Some("ok") => span.badge.badge-ok { "OK" },
                    Some(_) => span.badge.badge-failed { "FAILED" },
                    None => span.badge { "not yet" },
                }
            }
        }
    }
}
