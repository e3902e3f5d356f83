//! `bastion serve` wired up: the recording sink and its uploader, the
//! shared context, the SSH servers and the alert sender started in order,
//! and stopped in the reverse order on a signal, so that open sessions end
//! with a manifest and what is sealed gets a last chance to upload. Used by
//! `bastion serve` and `bastion demo`.

use anyhow::Result;

use crate::config::Config;

/// Runs the bastion on an already bound listener until `stop`.
pub async fn serve_on(
    config: Config,
    listener: tokio::net::TcpListener,
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
    let result = crate::server::serve(server, listener, stop).await;
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
