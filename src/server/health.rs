//! What this replica reports through grpc.health.v1: readiness (the overall entry and one per
//! service), liveness ([`LIVENESS_HEALTH`]) and the Redis bell ([`REDIS_HEALTH`]). The store
//! probe whose outcome feeds them is the registry's (`Registry::run_store_probe`).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use agent_registry_core::liveness::StreamStop;
use agent_registry_core::metrics::Metrics;
use agent_registry_core::registry::Registry;

/// Every service name health reports on, besides the overall "" entry. Together with it they
/// are the readiness entries: SERVING while this replica can serve and persist (the store
/// answers, its heartbeats reach the store, it is not shutting down).
pub(super) const SERVICES: [&str; 4] = [
    "agentregistry.v1.RegistryService",
    "agentregistry.v1.DiscoveryService",
    "agentregistry.v1.AdminService",
    "agentregistry.v1.CatalogService",
];

/// The liveness entry: SERVING while the process makes progress, whatever the store does — a
/// liveness probe on it restarts a wedged process, never one waiting out a database outage
/// (which would lose every lease held in memory).
pub const LIVENESS_HEALTH: &str = "agentregistry.v1.Liveness";

pub(super) async fn set_health(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for name in SERVICES {
        reporter.set_service_status(name, status).await;
    }
}

fn serving(ok: bool) -> ServingStatus {
    if ok {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}

/// How often readiness and liveness are re-judged (no I/O: they read state others keep).
const HEALTH_REVIEW: Duration = Duration::from_millis(250);

/// Mirrors the replica's state into grpc.health.v1: readiness (the overall entry and each
/// service) and liveness ([`LIVENESS_HEALTH`]), until `stop` is cancelled.
pub(super) async fn report_health(
    registry: Arc<Registry>,
    reporter: HealthReporter,
    stop: CancellationToken,
) {
    let (mut ready, mut live) = (true, true);
    let mut tick = tokio::time::interval(HEALTH_REVIEW);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let health = registry.health();
        let now_ready = health.store_reachable && health.streams_stopped.is_none();
        if now_ready != ready {
            match (health.store_reachable, health.streams_stopped) {
                (_, Some(StreamStop::ShuttingDown)) => {}
                (true, None) => tracing::info!("ready: the store answers and heartbeats reach it"),
                (false, _) => tracing::error!("store unreachable; readiness NOT_SERVING"),
                (true, Some(StreamStop::CannotPersist)) => {
                    tracing::error!("heartbeats are not reaching the store; readiness NOT_SERVING")
                }
            }
            set_health(&reporter, serving(now_ready)).await;
            ready = now_ready;
        }
        let now_live = health.wedged.is_none();
        if now_live != live {
            if let Some(what) = health.wedged {
                tracing::error!(
                    loop_ = what,
                    "a loop stopped making progress; liveness NOT_SERVING"
                );
            }
            reporter
                .set_service_status(LIVENESS_HEALTH, serving(now_live))
                .await;
            live = now_live;
        }
    }
}

/// The health entry for the Redis bell: SERVING while Redis is reachable. The overall entry
/// is not touched — without Redis the registry still serves (replicas poll).
pub const REDIS_HEALTH: &str = "agentregistry.v1.ChangeNotifications";

pub(super) async fn report_redis(
    mut up: tokio::sync::watch::Receiver<Option<bool>>,
    reporter: HealthReporter,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    loop {
        let reachable = *up.borrow_and_update() == Some(true);
        metrics.redis_up().set(reachable as i64);
        reporter
            .set_service_status(REDIS_HEALTH, serving(reachable))
            .await;
        tokio::select! {
            changed = up.changed() => if changed.is_err() { return },
            _ = stop.cancelled() => return,
        }
    }
}
