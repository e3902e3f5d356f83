//! The player's routes: windows of asciicast from the nearest keyframe
//! (`/s/ID/cast?ch=N&from=T`, from the session's [`super::analysis`]), so a
//! 1 GiB recording opens and seeks in the time of one window, and the
//! export download.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::Web;
use super::login::Authed;
use crate::console::Viewer;

/// Output per window sent to the browser.
pub const WINDOW_BYTES: usize = 1 << 20;

/// The refusal when this viewer may not see this session: the same as for
/// no such session.
async fn invisible(web: &Web, viewer: &Viewer, id: &str) -> Option<Response> {
    match web.reader.visible(viewer, id).await {
        Ok(Some(_)) => None,
        Ok(None) => Some(super::pages::not_found().await),
        Err(e) => Some(super::pages::failed(StatusCode::SERVICE_UNAVAILABLE, &format!("{e:#}"))),
    }
}

#[derive(Deserialize)]
pub struct CastParams {
    ch: u32,
    #[serde(default)]
    from: f64,
}

/// `GET /s/ID/cast?ch=N&from=T`: one window of asciicast from `T`, as JSON
/// (`cast`, `from`, `until`, `next`, `input`).
pub async fn cast(
    State(web): State<Arc<Web>>,
    authed: Authed,
    Path(id): Path<String>,
    Query(p): Query<CastParams>,
) -> Response {
    if let Some(refused) = invisible(&web, &authed.viewer, &id).await {
        return refused;
    }
    let analysis = match web.analyses.get(&web, &id, Duration::from_secs(30)).await {
        Some(Ok(a)) => a,
        Some(Err(e)) => return (StatusCode::UNPROCESSABLE_ENTITY, e).into_response(),
        None => return (StatusCode::SERVICE_UNAVAILABLE, "still indexing; try again").into_response(),
    };
    let Some(index) = analysis.digest.channels.iter().find(|c| c.channel == p.ch) else {
        return (StatusCode::NOT_FOUND, "no such channel").into_response();
    };
    let from = if p.from.is_finite() { p.from.max(0.0) } else { 0.0 };
    let window = match recorder::screen::window(
        web.reader.store.as_ref(),
        &id,
        &analysis.manifest,
        index,
        from,
        WINDOW_BYTES,
    )
    .await
    {
        Ok(w) => w,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    let body = serde_json::json!({
        "cast": window.cast, "from": window.from, "until": window.until, "next": window.next, "input": window.input,
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(&body).unwrap_or_default(),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct ExportParams {
    ch: Option<u32>,
}

/// `GET /s/ID/export?ch=N`: the asciicast v2 file of a channel, as a download.
pub async fn export(
    State(web): State<Arc<Web>>,
    authed: Authed,
    Path(id): Path<String>,
    Query(p): Query<ExportParams>,
) -> Response {
    let rec = match web.reader.recording(&authed.viewer, "export", &id).await {
        Ok(r) => r,
        Err(_) => return super::pages::not_found().await,
    };
    let cast = recorder::cast::export(&rec, p.ch);
    // The id passed `valid_session_id`: a safe file name.
    let disposition = format!("attachment; filename=\"{id}.cast\"");
    (
        [
            (header::CONTENT_TYPE, "application/x-asciicast".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        cast,
    )
        .into_response()
}
