//! The `/metrics` endpoint: the registry's instruments as Prometheus text, on a listener of its
//! own (`--metrics-listen`), until the replica's cancellation token fires.

use std::sync::Arc;

use agent_registry_core::metrics::Metrics;
use tokio_util::sync::CancellationToken;

/// Serves `/metrics` on `listener` until `stop` is cancelled.
pub(super) async fn serve(
    metrics: Arc<Metrics>,
    listener: tokio::net::TcpListener,
    stop: CancellationToken,
) {
    if let Ok(addr) = listener.local_addr() {
        metrics.serving_at(addr);
        tracing::info!("metrics on http://{addr}/metrics");
    }
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let m = metrics.clone();
            async move {
                (
                    [(
                        http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    m.render(),
                )
            }
        }),
    );
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "the /metrics endpoint stopped");
    }
}
