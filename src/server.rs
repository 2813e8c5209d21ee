//! Assembles the gRPC server: the three services, health, reflection, one span per RPC.
//!
//! `run` takes a bound listener and a shutdown future, so tests start servers on port 0 and stop
//! them without signals.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::api;
use crate::config::ServeArgs;
use crate::events::bell::{self, BellConfig};
use crate::events::{feed, retention};
use crate::liveness::{flusher, sweeper::Sweeper};
use crate::metrics::grpc::GrpcMetricsLayer;
use crate::proto;
use crate::registry::Registry;
use crate::security::tls::ServerTls;
use crate::security::{Access, AccessLayer, TokenTable, conn, reload};
use crate::storage::{self, StoreOptions};

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

/// Every service name health reports on, besides the overall "" entry.
const SERVICES: [&str; 3] = [
    "agentregistry.v1.RegistryService",
    "agentregistry.v1.DiscoveryService",
    "agentregistry.v1.AdminService",
];

async fn set_health(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for name in SERVICES {
        reporter.set_service_status(name, status).await;
    }
}

/// Probes the store and mirrors its reachability into grpc.health.v1 and the liveness layer
/// (which holds expiry while the store is away and grants grace when it returns).
async fn watch_store_health(
    registry: Arc<Registry>,
    reporter: HealthReporter,
    every: std::time::Duration,
) {
    let mut tick = tokio::time::interval(every);
    let mut healthy = true;
    loop {
        tick.tick().await;
        let ok = registry.store().ping().await.is_ok();
        registry.liveness().set_store_reachable(ok);
        if ok != healthy {
            match ok {
                true => tracing::info!("store reachable again; health SERVING"),
                false => tracing::error!("store unreachable; health NOT_SERVING"),
            }
            let status = if ok {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            set_health(&reporter, status).await;
            healthy = ok;
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
pub async fn run(
    args: ServeArgs,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let limits = args.limits().map_err(ServerError::Config)?;
    args.access_limits().map_err(ServerError::Config)?;
    let liveness = args.liveness().map_err(ServerError::Config)?;
    let watch = args.watch().map_err(ServerError::Config)?;
    let store = storage::open(
        &args.database_url,
        &StoreOptions {
            max_connections: args.db_max_connections,
        },
    )
    .await?;
    tracing::info!(backend = store.backend(), "store open, migrations applied");
    let registry = Arc::new(Registry::open_with(store.clone(), limits, liveness, watch).await?);
    tracing::info!(revision = registry.index().revision(), "index hydrated");
    let result = serve(registry, &args, listener, shutdown).await;
    store.close().await;
    result
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
    let health_reporter = reporter.clone();
    let health_on_stop = reporter.clone();
    let prober = tokio::spawn(watch_store_health(
        registry.clone(),
        reporter,
        args.health_check_interval,
    ));
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
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        tracing::info!("shutting down: no new connections; telling streams, finishing calls");
        // Streams would otherwise hold their connections open for ever.
        registry.liveness().begin_shutdown();
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
