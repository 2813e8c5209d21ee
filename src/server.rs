//! Assembles the gRPC server: the three services, health, reflection, one span per RPC.
//!
//! `run` takes a bound listener and a shutdown future, so tests start servers on port 0 and stop
//! them without signals.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::api;
use crate::config::ServeArgs;
use crate::events::bell::{self, BellConfig};
use crate::events::{feed, retention};
use crate::liveness::{StreamStop, flusher, sweeper::Sweeper};
use crate::metrics::grpc::GrpcMetricsLayer;
use crate::proto;
use crate::registry::Registry;
use crate::security::tls::ServerTls;
use crate::security::{Access, AccessLayer, TokenTable, conn, reload};
use crate::storage::{self, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("opening the store: {0}")]
    Store(#[from] crate::storage::StoreError),
    #[error("loading the registry: {0}")]
    Registry(#[from] crate::registry::RegistryError),
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("--tls-cert/--tls-key/--tls-client-ca: {0}")]
    Tls(#[from] crate::security::tls::TlsError),
    #[error("--auth-tokens-file: {0}")]
    Tokens(#[from] crate::security::tokens::TokensError),
}

/// Every service name health reports on, besides the overall "" entry. Together with it they
/// are the readiness entries: SERVING while this replica can serve and persist (the store
/// answers, its heartbeats reach the store, it is not shutting down).
const SERVICES: [&str; 3] = [
    "agentregistry.v1.RegistryService",
    "agentregistry.v1.DiscoveryService",
    "agentregistry.v1.AdminService",
];

/// The liveness entry: SERVING while the process makes progress, whatever the store does — a
/// liveness probe on it restarts a wedged process, never one waiting out a database outage
/// (which would lose every lease held in memory).
pub const LIVENESS_HEALTH: &str = "agentregistry.v1.Liveness";

async fn set_health(reporter: &HealthReporter, status: ServingStatus) {
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

/// Pings the store every `every` (every half second while it fails, to time an outage
/// closely; with a write while writes fail). The outcome, like that of every other store call,
/// feeds the store's health.
async fn probe_store(registry: Arc<Registry>, every: Duration) {
    loop {
        let store = registry.store();
        let ok = match registry.liveness().store_health.writes_failing() {
            true => store.probe_write().await.is_ok(),
            false => store.ping().await.is_ok(),
        };
        let wait = if ok && registry.liveness().store_reachable() {
            every
        } else {
            every.min(Duration::from_millis(500))
        };
        tokio::time::sleep(wait).await;
    }
}

/// How often readiness and liveness are re-judged (no I/O: they read state others keep).
const HEALTH_REVIEW: Duration = Duration::from_millis(250);

/// Mirrors the replica's state into grpc.health.v1: readiness (the overall entry and each
/// service) and liveness ([`LIVENESS_HEALTH`]).
async fn report_health(registry: Arc<Registry>, reporter: HealthReporter) {
    let (mut ready, mut live) = (true, true);
    let mut tick = tokio::time::interval(HEALTH_REVIEW);
    loop {
        tick.tick().await;
        let liveness = registry.liveness();
        let reachable = liveness.store_reachable();
        let stopped = liveness.persistence.stopped();
        let now_ready = reachable && stopped.is_none();
        if now_ready != ready {
            match (reachable, stopped) {
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
        let now_live = liveness.progress.wedged().is_none();
        if now_live != live {
            if let Some(what) = liveness.progress.wedged() {
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

async fn report_redis(
    mut up: tokio::sync::watch::Receiver<Option<bool>>,
    reporter: HealthReporter,
    metrics: Arc<crate::metrics::Metrics>,
) {
    loop {
        let reachable = *up.borrow_and_update() == Some(true);
        metrics.redis_up().set(reachable as i64);
        let status = match reachable {
            true => ServingStatus::Serving,
            false => ServingStatus::NotServing,
        };
        reporter.set_service_status(REDIS_HEALTH, status).await;
        if up.changed().await.is_err() {
            return;
        }
    }
}

/// Opens the store named by `args`, hydrates the registry and serves until `shutdown` resolves.
/// A store that cannot be reached yet (Postgres still starting, or down) is waited for, with a
/// log line per attempt; a configuration it refuses ends the process.
pub async fn run(
    args: ServeArgs,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    args.check().map_err(ServerError::Config)?;
    let limits = args.limits().map_err(ServerError::Config)?;
    let liveness = args.liveness().map_err(ServerError::Config)?;
    let watch = args.watch().map_err(ServerError::Config)?;
    let (options, guard) = args.store().map_err(ServerError::Config)?;
    if limits.min_lease_ttl < guard.timeout * 3 {
        tracing::warn!(min_lease_ttl = ?limits.min_lease_ttl, store_timeout = ?guard.timeout,
            "leases shorter than three --store-timeout may lapse on other replicas before this one              notices a silent store and stops vouching for their beats");
    }
    let mut shutdown = Box::pin(shutdown);
    let mut wait = Duration::from_millis(500);
    let (store, registry) = loop {
        let opened = async {
            let store = storage::open(&args.database_url, &options).await?;
            tracing::info!(backend = store.backend(), "store open, migrations applied");
            let registry = Registry::open_with(
                store.clone(),
                limits,
                liveness.clone(),
                watch.clone(),
                guard.clone(),
            )
            .await;
            match registry {
                Ok(r) => Ok((store, r)),
                Err(e) => {
                    store.close().await;
                    Err(ServerError::from(e))
                }
            }
        };
        let attempt = tokio::select! {
            r = opened => r,
            _ = &mut shutdown => return Ok(()),
        };
        match attempt {
            Ok(opened) => break opened,
            Err(e) if retryable(&e) => {
                tracing::warn!(error = %e, retry_in = ?wait, "the store cannot be reached yet; waiting for it");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = &mut shutdown => return Ok(()),
                }
                wait = (wait * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(e),
        }
    };
    let registry = Arc::new(registry);
    tracing::info!(revision = registry.index().revision(), "index hydrated");
    let result = serve(registry, &args, listener, shutdown).await;
    store.close().await;
    result
}

/// Whether opening failed because the store is not there yet (as opposed to being refused).
fn retryable(e: &ServerError) -> bool {
    use crate::registry::RegistryError;
    matches!(
        e,
        ServerError::Store(
            StoreError::Unavailable(_) | StoreError::Saturated(_) | StoreError::PoolTimedOut,
        ) | ServerError::Registry(RegistryError::Unavailable(_))
    )
}

/// Serves an already-open registry (used by `run` and by tests that restart on one store).
pub async fn serve(
    registry: Arc<Registry>,
    args: &ServeArgs,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    // Everything fallible first, so an error leaves no task behind.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let access_limits = args.access_limits().map_err(ServerError::Config)?;
    let tls = match args.tls_files() {
        Some(files) => Some(Arc::new(ServerTls::load(files)?)),
        None => None,
    };
    let tokens = match &args.auth_tokens_file {
        Some(path) => Some(TokenTable::open(path)?),
        None => None,
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let metrics_listener = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .map_err(|e| {
            ServerError::Config(format!("--metrics-listen {}: {e}", args.metrics_listen))
        })?;
    let bell_client = match &args.redis_url {
        Some(url) => Some(
            BellConfig {
                url: url.clone(),
                prefix: args.redis_prefix.clone(),
            }
            .client()
            .map_err(|e| ServerError::Config(format!("--redis-url: {e}")))?,
        ),
        None => None,
    };
    match (&tls, &args.tls_client_ca) {
        (Some(_), Some(_)) => {
            tracing::info!("TLS on; clients must present a certificate (mutual TLS)")
        }
        (Some(_), None) => tracing::info!("TLS on"),
        (None, _) => tracing::warn!(
            "TLS off: traffic, tokens included, crosses the network in clear (--tls-cert, --tls-key)"
        ),
    }
    match &tokens {
        Some(t) => {
            tracing::info!(tokens = t.current().len(), file = %t.path().display(), "bearer tokens required")
        }
        None => tracing::warn!(
            "no --auth-tokens-file: the registry is OPEN; anyone who reaches it may register, read and evict"
        ),
    }
    let (reporter, health) = tonic_health::server::health_reporter();
    set_health(&reporter, ServingStatus::Serving).await;
    reporter
        .set_service_status(LIVENESS_HEALTH, ServingStatus::Serving)
        .await;
    let health_reporter = reporter.clone();
    let health_on_stop = reporter.clone();
    let prober = tokio::spawn(probe_store(registry.clone(), args.health_check_interval));
    let health_task = tokio::spawn(report_health(registry.clone(), reporter));
    let (stop_loops, loops_stopped) = tokio::sync::watch::channel(false);
    let mut redis_health = None;
    let mut loops = Vec::new();
    if let Some(client) = bell_client {
        let bell = bell::start(client, registry.followers().clone(), loops_stopped.clone());
        loops.extend(bell.tasks);
        redis_health = Some(tokio::spawn(report_redis(
            bell.up,
            health_reporter.clone(),
            registry.metrics().clone(),
        )));
        tracing::info!("change notifications through Redis");
    } else {
        tracing::info!(every = ?registry.watch_config().poll_interval,
            "no REDIS_URL: replicas converge by polling the change log");
    }
    let poll = registry.watch_config().poll_interval;
    loops.push(tokio::spawn(feed::run(
        registry.clone(),
        poll,
        loops_stopped.clone(),
    )));
    loops.push(tokio::spawn(retention::run(
        registry.clone(),
        loops_stopped.clone(),
    )));
    if let Some(tls) = &tls {
        let tls = tls.clone();
        loops.push(tokio::spawn(reload::watch(
            "TLS certificates",
            tls.files().paths(),
            args.reload_interval,
            loops_stopped.clone(),
            move || {
                tls.reload()
                    .map(|()| "new handshakes use the new files".into())
                    .map_err(|e| e.to_string())
            },
        )));
    }
    if let Some(table) = &tokens {
        let table = table.clone();
        loops.push(tokio::spawn(reload::watch(
            "tokens file",
            vec![table.path().to_path_buf()],
            args.reload_interval,
            loops_stopped.clone(),
            move || {
                table
                    .reload()
                    .map(|n| format!("{n} tokens"))
                    .map_err(|e| e.to_string())
            },
        )));
    }
    let flusher = tokio::spawn(flusher::run(registry.clone(), loops_stopped.clone()));
    let sweeper = tokio::spawn(Sweeper::new(registry.clone()).run(loops_stopped));
    let services = api::services(registry.clone(), access_limits.max_message_bytes);
    let per_connection = access_limits.max_streams_per_connection;
    let header_list = (access_limits.max_metadata_bytes * 4).max(64 << 10);
    let access = Arc::new(Access::new(tokens, access_limits));
    let metrics = registry.metrics().clone();
    metrics.observe_registry(Arc::downgrade(&registry));
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics_server = tokio::spawn(metrics.clone().serve(metrics_listener, async {
        let _ = metrics_stopped.await;
    }));

    let grace = args.shutdown_grace;
    let health_stop = health_task.abort_handle();
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        tracing::info!("shutting down: no new connections; telling streams, finishing calls");
        // Streams would otherwise hold their connections open for ever.
        registry.liveness().begin_shutdown();
        health_stop.abort();
        set_health(&health_on_stop, ServingStatus::NotServing).await;
        let _ = stopping_tx.send(());
    };
    let (incoming, accepting) = conn::incoming(listener, tls);
    let server = Server::builder()
        .layer(GrpcMetricsLayer(metrics))
        .layer(AccessLayer(access))
        // The access layer refuses calls beyond the per-connection limit with a clear status;
        // HTTP/2 itself stops a client a little above it.
        .max_concurrent_streams(Some(
            per_connection.saturating_add(16).min(u32::MAX as usize) as u32,
        ))
        .http2_max_header_list_size(header_list.min(u32::MAX as usize) as u32)
        .trace_fn(|req| tracing::info_span!("rpc", method = %req.uri().path()))
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(services.registry)
        .add_service(services.discovery)
        .add_service(services.admin)
        .serve_with_incoming_shutdown(incoming, shutdown);
    let mut server = Box::pin(server);
    let result = tokio::select! {
        r = &mut server => r,
        // Once shutdown starts, in-flight calls get `grace` to finish; then they are dropped.
        _ = async {
            let _ = stopping_rx.await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(?grace, "shutdown grace elapsed; closing remaining calls");
            Ok(())
        }
    };
    // The server (and with it the stream of connections) is gone: the accept loop ends and the
    // port is free once this returns, so a restart on the same address can bind it.
    drop(server);
    let _ = accepting.await;
    prober.abort();
    health_task.abort();
    let _ = stop_metrics.send(());
    let _ = metrics_server.await;
    if let Some(h) = redis_health {
        h.abort();
    }
    // The flusher writes what is left of the leases before it returns.
    let _ = stop_loops.send(true);
    let _ = tokio::join!(flusher, sweeper);
    for l in loops {
        let _ = l.await;
    }
    tracing::info!("server stopped");
    Ok(result?)
}
