//! Full-text search across the recordings the viewer may see (what was on
//! screen and what was typed), each hit linking to the player at its moment.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use super::{failed, layout, utc};
use crate::web::Web;
use crate::web::login::Authed;

#[derive(Deserialize, Default)]
pub struct Params {
    #[serde(default)]
    q: String,
    #[serde(default)]
    i: Option<String>,
    #[serde(flatten)]
    filters: super::sessions::Params,
}

/// Longest query taken.
const MAX_QUERY: usize = 256;

pub async fn search(State(web): State<Arc<Web>>, authed: Authed, Query(p): Query<Params>) -> Response {
    let query = p.q.trim();
    let mut results = None;
    if !query.is_empty() {
        if query.len() > MAX_QUERY {
            return failed(StatusCode::BAD_REQUEST, "the query is too long");
        }
        let filter = match p.filters.filter() {
            Ok(f) => f,
            Err(e) => return failed(StatusCode::BAD_REQUEST, &e),
        };
        match web.reader.search(&authed.viewer, query, &filter, p.i.is_some()).await {
            Ok(r) => results = Some(r),
            Err(e) => return failed(StatusCode::SERVICE_UNAVAILABLE, &format!("{e:#}")),
        }
    }
    let body = html! {
        h1 { "Search" }
        form.search method="get" action="/search" {
            input name="q" value=(p.q) placeholder="text seen on screen or typed" autofocus;
            label.check { input type="checkbox" name="i" value="1" checked[p.i.is_some()]; "ignore case" }
            label { "User" input name="user" value=(p.filters.user); }
            label { "Target" input name="target" value=(p.filters.target); }
            label { "Since" input name="since" value=(p.filters.since) placeholder="2d"; }
            button type="submit" { "Search" }
        }
        @if let Some((hits, sessions)) = &results {
            @if hits.is_empty() {
                p.empty { "No match in " (sessions) " sessions." }
            } @else {
                p { (hits.len()) " matches in " (sessions) " sessions." }
                ol.hits {
                    @for h in hits {
                        li {
                            a href={ "/s/" (h.session.id) "?ch=" (h.channel) "#t=" (format!("{:.1}", h.hit.time)) } {
                                (h.session.id) " · " (h.session.user) " → " (h.session.login) "@" (h.session.target)
                                " · " (utc(h.session.started_at)) " +" (format!("{:.1}", h.hit.time)) "s"
                            }
                            " "
                            span.source { (match h.hit.source { recorder::search::Source::Screen => "screen", recorder::search::Source::Input => "typed" }) }
                            pre.hit { (recorder::display::escape(h.hit.line.trim_end())) }
                        }
                    }
                }
            }
        }
    };
    layout("Search", Some(&authed), body).into_response()
}
