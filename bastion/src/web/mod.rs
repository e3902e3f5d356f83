//! The browser console: auditors and reviewers on the bastion's HTTPS
//! listener (`[web]`), with their own directory password and TOTP.
//!
//! axum on hyper (HTTP/1.1) over rustls. Every page is rendered on the
//! server with maud, which escapes every value spliced in; the only script
//! is our own `console.js` and the bundled player, served from the binary
//! (`assets`), under a CSP of `default-src 'self'`. A login is a row in the
//! state store behind a `__Host-` cookie; every POST carries the login's
//! CSRF token and must come from our own origin. The console reads what
//! [`crate::console`] gives every door, with the viewer's role.

mod analysis;
pub mod assets;
mod guard;
mod live;
mod login;
mod pages;
mod player;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::config::WebConfig;
use crate::console::Reader;
use crate::server::Server;

/// The most connections the console serves at once; more wait in the
/// kernel's backlog.
const MAX_CONNECTIONS: usize = 256;
/// A TLS handshake and a request's headers must arrive within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What every handler shares.
pub struct Web {
    /// For logins: the same per-user queue as SSH.
    server: Arc<Server>,
    reader: Reader,
    config: WebConfig,
    analyses: analysis::Analyses,
}

/// The client's address, set per connection.
#[derive(Debug, Clone, Copy)]
struct Peer(SocketAddr);

impl Web {
    pub fn new(server: Arc<Server>, config: WebConfig) -> Arc<Web> {
        let reader = Reader::of(&server.bastion);
        let state_dir = server
            .bastion
            .config
            .state
            .db
            .parent()
            .unwrap_or(std::path::Path::new("."));
        let digests = state_dir.join("digests");
        Arc::new(Web {
            server,
            reader,
            config,
            analyses: analysis::Analyses::new(digests),
        })
    }
}

/// Every route of the console.
fn router(web: Arc<Web>) -> Router {
    Router::new()
        .route("/", get(pages::home))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/sessions", get(pages::sessions::list))
        .route("/s/{id}", get(pages::session::show))
        .route("/s/{id}/cast", get(player::cast))
        .route("/s/{id}/export", get(player::export))
        .route("/s/{id}/live", get(live::page))
        .route("/s/{id}/live/ws", get(live::socket))
        .route("/s/{id}/terminate", post(live::terminate))
        .route("/search", get(pages::search::search))
        .route("/review", get(pages::review::list))
        .route("/review/{id}", post(pages::review::submit))
        .route("/assets/{name}", get(assets_route))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn(guard::headers))
        .with_state(web)
}

async fn assets_route(axum::extract::Path(name): axum::extract::Path<String>) -> axum::response::Response {
    use axum::response::IntoResponse;
    match assets::asset(&name) {
        Some(a) => (
            [
                (axum::http::header::CONTENT_TYPE, a.content_type),
                (axum::http::header::ETAG, a.etag),
                (axum::http::header::CACHE_CONTROL, "private, max-age=3600"),
            ],
            a.body,
        )
            .into_response(),
        None => pages::not_found().await.into_response(),
    }
}

/// Serves the console on `listener` until `stop`.
pub async fn serve(web: Arc<Web>, listener: TcpListener, stop: impl std::future::Future<Output = ()>) -> Result<()> {
    let tls = tokio_rustls::TlsAcceptor::from(tls::server_config(&web.config.cert, &web.config.key)?);
    let app = router(web.clone());
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let (stopping, _) = tokio::sync::broadcast::channel::<()>(1);
    tokio::pin!(stop);
    let pruner = tokio::spawn(prune_logins(web.clone()));
    let indexer = tokio::spawn(analysis::preindex(web.clone()));
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "console accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let (tls, app, mut stopping) = (tls.clone(), app.clone(), stopping.subscribe());
        tokio::spawn(async move {
            let _slot = slot;
            let Ok(Ok(stream)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app.layer(axum::Extension(Peer(peer))));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HANDSHAKE_TIMEOUT)
                .max_buf_size(64 * 1024)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                // The live view's WebSocket.
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stopping.recv() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
                }
            }
        });
    }
    let _ = stopping.send(());
    pruner.abort();
    indexer.abort();
    Ok(())
}

/// Forgets ended logins now and then (each request checks its own anyway).
async fn prune_logins(web: Arc<Web>) {
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
        let idle = web.config.idle_timeout.as_secs() as i64;
        let _ = web.reader.state.prune_web_logins(crate::time::now(), idle);
    }
}
