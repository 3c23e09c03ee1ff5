//! An agent's own `/metrics` listener (`app_config.metrics.port`). A
//! gateway needs none: it serves `/metrics` on its HTTP port.

use std::net::SocketAddr;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// `GET /metrics`: the process's registry in the Prometheus text format.
pub async fn scrape() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)],
        super::metrics::render(),
    )
}

/// A running metrics listener: its address (port 0 picks a free one) and
/// the task that serves it until the shutdown token fires.
pub struct MetricsEndpoint {
    pub addr: SocketAddr,
    pub task: JoinHandle<()>,
}

/// Binds `addr` and serves `/metrics` there until `shutdown`.
pub async fn start(
    addr: SocketAddr,
    shutdown: CancellationToken,
) -> std::io::Result<MetricsEndpoint> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let app = Router::new().route("/metrics", get(scrape));
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::warn!(%addr, error = %e, "metrics listener stopped");
        }
    });
    tracing::info!(%addr, "metrics at http://{addr}/metrics");
    Ok(MetricsEndpoint { addr, task })
}
