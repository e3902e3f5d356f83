//! What the player and the session page need of a recording, without ever
//! loading it whole: one pass over its chunks (keyframes, timeline; see
//! [`recorder::screen`]) plus its verification, computed once per session
//! in the background and kept; then windows of asciicast from the nearest
//! keyframe (`/s/ID/cast?ch=N&from=T`), so a 1 GiB recording opens and
//! seeks in the time of one window.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use recorder::manifest::Manifest;
use recorder::screen::Digest;
use recorder::verify::VerifyReport;
use serde::Deserialize;
use tokio::sync::OnceCell;

use super::Web;
use super::login::Authed;
use crate::console::{Reader, Viewer};

/// Output per window sent to the browser.
pub const WINDOW_BYTES: usize = 1 << 20;
/// Analyses kept; sealed recordings never change, so any kept one is right.
const KEPT: usize = 64;

/// One sealed session, analysed.
pub struct Analysis {
    pub manifest: Manifest,
    pub digest: Digest,
    pub report: VerifyReport,
}

type Slot = Arc<OnceCell<Result<Arc<Analysis>, String>>>;

/// The analyses made so far, by session.
#[derive(Default)]
pub struct Analyses {
    slots: Mutex<HashMap<String, Slot>>,
}

async fn analyse(reader: &Reader, id: &str) -> Result<Arc<Analysis>, String> {
    let store = reader.store.as_ref();
    let bytes = store
        .get(&recorder::format::manifest_key(id))
        .await
        .map_err(|e| format!("the manifest: {e}"))?;
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| format!("the manifest is not readable: {e}"))?;
    let digest = recorder::screen::digest(store, id, &manifest)
        .await
        .map_err(|e| e.to_string())?;
    let report = reader.verified(id).await.map_err(|e| format!("{e:#}"))?;
    Ok(Arc::new(Analysis {
        manifest,
        digest,
        report,
    }))
}

impl Analyses {
    fn slot(&self, id: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if !slots.contains_key(id) && slots.len() >= KEPT {
            let done: Vec<String> = slots
                .iter()
                .filter(|(_, s)| s.initialized())
                .map(|(k, _)| k.clone())
                .take(slots.len() + 1 - KEPT)
                .collect();
            for k in done {
                slots.remove(&k);
            }
        }
        slots.entry(id.to_string()).or_default().clone()
    }

    /// The analysis of a session the viewer may see, waiting at most `wait`
    /// (`None` if it is still being made: it goes on in the background).
    pub async fn get(&self, web: &Arc<Web>, id: &str, wait: Duration) -> Option<Result<Arc<Analysis>, String>> {
        let slot = self.slot(id);
        if let Some(done) = slot.get() {
            return Some(done.clone());
        }
        let (background, web2, id2) = (slot.clone(), web.clone(), id.to_string());
        tokio::spawn(async move {
            background
                .get_or_init(|| async { analyse(&web2.reader, &id2).await })
                .await;
        });
        tokio::time::timeout(wait, slot.get_or_init(|| async { analyse(&web.reader, id).await }))
            .await
            .ok()
            .cloned()
    }
}

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
    let analysis = match web.player.get(&web, &id, Duration::from_secs(30)).await {
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
