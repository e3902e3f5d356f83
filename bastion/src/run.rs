//! `bastion serve` wired up: the recording sink and its uploader, the
//! shared context, the SSH servers and the alert sender started in order,
//! and stopped in the reverse order on a signal, so that open sessions end
//! with a manifest and what is sealed gets a last chance to upload. Used by
//! `bastion serve` and `bastion demo`.

use anyhow::Result;

use crate::config::Config;

/// Runs the bastion on an already bound SSH listener (and the console's,
/// when `[web]` is set) until `stop`.
pub async fn serve_on(
    config: Config,
    listener: tokio::net::TcpListener,
    web_listener: Option<tokio::net::TcpListener>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let store = crate::recording::open_store(&config).await?;
    let sink = crate::recording::open_sink(&config, store.clone()).await?;
    let (stop_uploads, uploads_stopped) = tokio::sync::watch::channel(false);
    let uploader = sink.spawn_uploader(uploads_stopped);
    let bastion = crate::context::Bastion::open(config, sink.clone(), store)?;
    let server = crate::server::Server::new(bastion.clone())?;
    for finding in crate::admin::rule_findings(&bastion.config, "config") {
        tracing::warn!(%finding, "rule can never match");
    }
    let (stop_alerts, alerts_stopped) = tokio::sync::watch::channel(false);
    let sender = bastion.alerter.spawn_sender(alerts_stopped);
    let (stop_web, web_stopped) = tokio::sync::watch::channel(false);
    let console = match (web_listener, bastion.config.web.clone()) {
        (Some(l), Some(web)) => {
            let addr = l.local_addr()?;
            let web = crate::web::Web::new(server.clone(), web);
            tracing::info!(%addr, "auditor console listening (HTTPS)");
            let mut stopped = web_stopped;
            Some(tokio::spawn(crate::web::serve(web, l, async move {
                let _ = stopped.wait_for(|s| *s).await;
            })))
        }
        _ => None,
    };
    let result = crate::server::serve(server, listener, stop).await;
    let _ = stop_web.send(true);
    if let Some(console) = console
        && let Ok(Ok(Err(e))) = tokio::time::timeout(std::time::Duration::from_secs(10), console).await
    {
        tracing::warn!(error = %e, "auditor console");
    }
    // Sessions still open end with a manifest; what is sealed gets a last
    // chance to upload, and the rest stays in the spool for the next start.
    sink.shutdown();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), sink.drained()).await;
    let _ = stop_uploads.send(true);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), uploader).await;
    let _ = stop_alerts.send(true);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), sender).await;
    result
}

/// Installs the SIGTERM and SIGINT handlers now, and returns a future that
/// resolves at the first of them. Call it before anything a signal should
/// not interrupt (binding, writing files).
/// Binds the console's listener when the config has a `[web]` section.
pub async fn bind_web(config: &Config) -> Result<Option<tokio::net::TcpListener>> {
    use anyhow::Context as _;
    let Some(web) = &config.web else { return Ok(None) };
    // The certificate is checked now, so a wrong file stops the start.
    crate::web::tls::server_config(&web.cert, &web.key)?;
    let l = tokio::net::TcpListener::bind(web.listen)
        .await
        .with_context(|| format!("listening on {} (web.listen)", web.listen))?;
    Ok(Some(l))
}

pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing SIGINT handler");
    async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    }
}
