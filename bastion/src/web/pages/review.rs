//! Break-glass review, for reviewers: the grants not reviewed yet, the
//! sessions that ran under each, and a note to record the review with. A
//! reviewer's own grant is listed without a form: someone else reviews it
//! (the state store refuses it too).

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::{failed, layout, utc};
use crate::web::Web;
use crate::web::login::Authed;

/// The refusal for someone who is not a reviewer.
fn not_a_reviewer(authed: &Authed) -> Option<Response> {
    (!authed.viewer.role.may_review()).then(|| failed(StatusCode::FORBIDDEN, "Break-glass review is for reviewers."))
}

pub async fn list(State(web): State<Arc<Web>>, authed: Authed) -> Response {
    if let Some(refused) = not_a_reviewer(&authed) {
        return refused;
    }
    let grants = match web.reader.grants(&authed.viewer, true, None) {
        Ok(g) => g,
        Err(e) => return failed(StatusCode::SERVICE_UNAVAILABLE, &format!("{e:#}")),
    };
    let now = crate::time::now();
    let body = html! {
        h1 { "Break-glass review" }
        @if grants.is_empty() { p.empty { "No unreviewed break-glass grants." } }
        @for (g, sessions) in &grants {
            section.grant data-grant=(g.id) {
                h2 { span.grant { (g.id) } " · " (g.user) " · " (g.targets.join(", ")) }
                dl {
                    dt { "Reason" } dd.reason { (g.reason) }
                    @if let Some(t) = &g.ticket { dt { "Ticket" } dd { (t) } }
                    dt { "Time box" } dd { (utc(g.starts_at)) " → " (utc(g.ends_at)) }
                    dt { "From" } dd { (g.client) " (via " (g.source) ")" }
                }
                @if sessions.is_empty() { p { "No session ran under it." } }
                ul { @for s in sessions { li { a href={ "/s/" (s.session_id) } { (s.session_id) } " " (s.login) "@" (s.target) " at " (utc(s.started_at)) } } }
                @if g.user.eq_ignore_ascii_case(&authed.viewer.user) {
                    p.own { "This is your own grant: another reviewer must review it." }
                } @else if now < g.ends_at {
                    p { "Still running: review it once its time box has ended." }
                } @else {
                    form.review method="post" action={ "/review/" (g.id) } data-confirm="Record this review?" {
                        input type="hidden" name="csrf" value=(authed.csrf);
                        label { "What you checked" textarea name="note" required maxlength="2000" {} }
                        button type="submit" { "Record review" }
                    }
                }
            }
        }
    };
    layout("Break-glass review", Some(&authed), body).into_response()
}

#[derive(Deserialize)]
pub struct ReviewForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    note: String,
}

pub async fn submit(
    State(web): State<Arc<Web>>,
    authed: Authed,
    Path(id): Path<String>,
    Form(f): Form<ReviewForm>,
) -> Response {
    if let Some(refused) = authed.csrf_refusal(&f.csrf) {
        return refused;
    }
    if let Some(refused) = not_a_reviewer(&authed) {
        return refused;
    }
    match web.reader.review(&authed.viewer, &id, &f.note) {
        Ok(_) => Redirect::to("/review").into_response(),
        Err(e) => failed(StatusCode::CONFLICT, &format!("{e:#}")),
    }
}
