//! Watching a running session in the browser, and ending it.
//!
//! `GET /s/ID/live` is the page; its player opens `GET /s/ID/live/ws`, a
//! WebSocket speaking asciicast v2 lines (the player's `v2.asciicast`
//! protocol): a header, then every output and resize of the session's
//! terminal channel from its first recorded line — so the current screen is
//! drawn first — then live, each line once, joined by sequence number
//! ([`recorder::sink::Follower`]). The lines are the recorder's own: what
//! the watcher sees is what is recorded. A watcher whose socket stalls
//! only stalls itself: the session's feed never waits (the follower falls
//! behind and catches up from the recording's files).
//!
//! `POST /s/ID/terminate` (terminators, with the CSRF token and a reason)
//! ends the session; its user's client prints who and why.

use std::sync::Arc;

use axum::Form;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::Web;
use super::login::Authed;
use super::pages::{failed, layout, utc};
use crate::console::{Terminal, Viewer, terminal_event};

/// The subprotocol the player asks for that we speak.
const PROTOCOL: &str = "v2.asciicast";

pub async fn page(State(web): State<Arc<Web>>, authed: Authed, Path(id): Path<String>) -> Response {
    if !recorder::format::valid_session_id(&id) {
        return super::pages::not_found().await;
    }
    let running = &web.server.bastion.running;
    let found = crate::console::running_rows(&authed.viewer, running)
        .into_iter()
        .find(|s| s.info.id == id);
    let Some(session) = found else {
        // Ended (or never ran here): the recording's page says the rest.
        return Redirect::to(&format!("/s/{id}")).into_response();
    };
    let i = &session.info;
    let state = session.state();
    let own = i.user == authed.viewer.user;
    let body = html! {
        h1 { "Session " (i.id) " " span.badge.badge-live { "live" } }
        section.manifest {
            dl {
                dt { "User" } dd { (i.user) }
                dt { "From" } dd { (i.client) }
                dt { "Target" } dd { (i.login) "@" (i.target) }
                dt { "Started" } dd { (utc(i.started_at)) }
                @if let Some(g) = &i.grant_id {
                    dt { "Break-glass" }
                    dd {
                        span.badge.badge-breakglass { "break-glass" } " grant " span.grant { (g) }
                        @if let Some(t) = &i.ticket { " ticket " span.ticket { (t) } }
                        @if let Some(r) = &i.reason { p.reason { "Reason: " (r) } }
                    }
                }
                dt { "Watching" }
                dd #watchers {
                    @if state.watchers.is_empty() { "nobody yet" }
                    @for w in &state.watchers { span.watcher { (w.user) " (" (w.door) ")" } " " }
                }
            }
            @if i.needs_watcher && state.watchers.is_empty() {
                p.held { "This break-glass session is held until a second person watches it: opening this page lets it in." }
            }
        }
        @if own {
            p.error { "This is your own session: someone else must watch it." }
        } @else {
            section.players {
                h2 { "Terminal" }
                div #live data-ws-path={ "/s/" (i.id) "/live/ws" } {}
                p #live-status { "connecting…" }
            }
        }
        @if authed.viewer.terminates && !own {
            form.terminate method="post" action={ "/s/" (i.id) "/terminate" } data-confirm="End this session now? Its user reads your name and reason." {
                input type="hidden" name="csrf" value=(authed.csrf);
                label { "Reason (the engineer reads it)" input name="reason" required maxlength=(crate::console::REASON_MAX); }
                button type="submit" { "Terminate session" }
            }
        }
    };
    layout(&format!("Live session {id}"), Some(&authed), body).into_response()
}

/// A WebSocket from our own pages only: a page elsewhere could otherwise
/// open one with the auditor's cookie (cross-site WebSocket hijacking).
fn from_our_pages(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return site.as_bytes() == b"same-origin";
    }
    match (headers.get("origin"), headers.get("host")) {
        (Some(origin), Some(host)) => origin.as_bytes() == [b"https://".as_slice(), host.as_bytes()].concat(),
        _ => false,
    }
}

pub async fn socket(
    State(web): State<Arc<Web>>,
    authed: Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !from_our_pages(&headers) {
        return (StatusCode::FORBIDDEN, "cross-origin request refused\n").into_response();
    }
    let b = &web.server.bastion;
    let watched = match crate::console::watch(&web.reader, &authed.viewer, &b.running, b.sink.as_ref(), &id).await {
        Ok(w) => w,
        Err(e) => return (StatusCode::NOT_FOUND, format!("{e:#}\n")).into_response(),
    };
    upgrade
        .protocols([PROTOCOL])
        .on_upgrade(move |ws| stream(web, authed, id, watched, ws))
}

/// How often a watch checks that its web login still holds.
const LOGIN_CHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// Sends the session's terminal to the socket until the session ends, the
/// watcher goes, or their login ends (logout, expiry).
async fn stream(web: Arc<Web>, authed: Authed, id: String, watched: crate::console::Watched, mut ws: WebSocket) {
    let viewer: &Viewer = &authed.viewer;
    let mut check = tokio::time::interval_at(tokio::time::Instant::now() + LOGIN_CHECK, LOGIN_CHECK);
    let crate::console::Watched {
        mut follower, watching, ..
    } = watched;
    let header = serde_json::json!({"version": 2, "width": 80, "height": 24});
    let mut channel = None;
    let mut ok = ws.send(Message::text(header.to_string())).await.is_ok();
    while ok {
        tokio::select! {
            line = follower.next() => match line {
                Some(Ok(line)) => match terminal_event(&line, &mut channel) {
                    Terminal::Line(event) => ok = ws.send(Message::text(event)).await.is_ok(),
                    Terminal::Nothing => {}
                    Terminal::Closed => break,
                },
                _ => break,
            },
            _ = check.tick() => {
                if !authed.still_valid(&web).await {
                    break;
                }
            }
            got = ws.recv() => match got {
                // The player sends nothing we use; a close or an error ends the watch.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => ok = false,
                Some(Ok(_)) => {}
            },
        }
    }
    drop(watching);
    let _ = web.reader.audit_view(viewer, "watch_end", &id);
    if ok {
        let _ = ws.send(Message::Close(None)).await;
    }
}

#[derive(Deserialize)]
pub struct TerminateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

pub async fn terminate(
    State(web): State<Arc<Web>>,
    authed: Authed,
    Path(id): Path<String>,
    Form(f): Form<TerminateForm>,
) -> Response {
    if let Some(refused) = authed.csrf_refusal(&f.csrf) {
        return refused;
    }
    let b = &web.server.bastion;
    match crate::console::terminate(&web.reader, &authed.viewer, &b.running, &id, &f.reason).await {
        // The id named a running session: a valid one.
        Ok(()) => Redirect::to(&format!("/s/{id}")).into_response(),
        Err(e) if !authed.viewer.terminates => failed(StatusCode::FORBIDDEN, &format!("{e:#}")),
        Err(e) => failed(StatusCode::CONFLICT, &format!("{e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderMap;

    fn with(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_our_own_pages_open_a_socket() {
        assert!(super::from_our_pages(&with(&[("sec-fetch-site", "same-origin")])));
        assert!(super::from_our_pages(&with(&[
            ("origin", "https://b:8443"),
            ("host", "b:8443")
        ])));
        assert!(!super::from_our_pages(&with(&[
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://b:8443"),
            ("host", "b:8443")
        ])));
        assert!(!super::from_our_pages(&with(&[
            ("origin", "https://evil"),
            ("host", "b:8443")
        ])));
        assert!(
            !super::from_our_pages(&with(&[("host", "b:8443")])),
            "a socket without Origin is no browser's"
        );
    }
}
