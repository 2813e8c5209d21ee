//! Assembles a replica: the gRPC services with health and reflection behind the access and
//! metrics layers, the HTTP API, the background loops, the Redis bell, the reloaders and
//! `/metrics` — then supervises them under one stop signal, and takes them down in order at
//! shutdown.
//!
//! `run` takes a bound listener and a shutdown future, so tests start servers on port 0 and stop
//! them without signals.

mod health;
mod prepare;
mod rest;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::config::ServeArgs;
use crate::events::bell;
use crate::metrics::grpc::GrpcMetricsLayer;
use crate::registry::Registry;
use crate::security::{Access, AccessLayer, conn, reload};
use crate::storage::{self, StoreError};
use crate::{api, web, xds};

pub use health::{LIVENESS_HEALTH, REDIS_HEALTH};
use prepare::Prepared;
use rest::RestServer;

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

/// Opens the store named by `args`, hydrates the registry and serves until `shutdown` resolves.
/// A store that cannot be reached yet (Postgres still starting, or down) is waited for, with a
/// log line per attempt; a configuration it refuses ends the process.
pub async fn run(
    args: ServeArgs,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    args.check().map_err(ServerError::Config)?;
    let settings = args.settings().map_err(ServerError::Config)?;
    let (options, _) = args.store().map_err(ServerError::Config)?;
    let (bounds, guard) = (&settings.lease_bounds, &settings.store);
    if bounds.min_lease_ttl < guard.timeout * 3 {
        tracing::warn!(min_lease_ttl = ?bounds.min_lease_ttl, store_timeout = ?guard.timeout,
            "leases shorter than three --store-timeout may lapse on other replicas before this one              notices a silent store and stops vouching for their beats");
    }
    let mut shutdown = Box::pin(shutdown);
    let mut wait = Duration::from_millis(500);
    let (store, registry) = loop {
        let opened = async {
            let store = storage::open(&args.database_url, &options).await?;
            tracing::info!(backend = store.backend(), "store open, migrations applied");
            let registry = Registry::open(store.clone(), settings.clone()).await;
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
    tracing::info!(revision = registry.revision(), "index hydrated");
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

/// Serves an already-open registry (used by `run` and by tests that restart on one store); the
/// HTTP API on `--http-listen`, if set.
pub async fn serve(
    registry: Arc<Registry>,
    args: &ServeArgs,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let http = match args.http_listen().map_err(ServerError::Config)? {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| ServerError::Config(format!("--http-listen {addr}: {e}")))?,
        ),
        None => None,
    };
    serve_on(registry, args, listener, http, shutdown).await
}

/// `serve`, with the HTTP API on a listener the caller bound (or none).
pub async fn serve_on(
    registry: Arc<Registry>,
    args: &ServeArgs,
    listener: TcpListener,
    http_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    // Everything fallible first, so an error leaves no task behind.
    let mut prepared = Prepared::new(args).await?;
    let xds_anonymous = args.xds_anonymous().map_err(ServerError::Config)?;
    let (reflection_v1, reflection_v1alpha) = prepare::reflection()?;
    prepared.log_security(args);
    let (reporter, health_service) = tonic_health::server::health_reporter();
    health::set_health(&reporter, ServingStatus::Serving).await;
    reporter
        .set_service_status(LIVENESS_HEALTH, ServingStatus::Serving)
        .await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut tasks = Tasks::default();
    tasks.health.push(tokio::spawn(health::probe_store(
        registry.clone(),
        args.health_check_interval,
    )));
    let health_review = tokio::spawn(health::report_health(registry.clone(), reporter.clone()));
    let loops = registry.spawn_loops(stopped.clone());
    let redis = tasks.start_bell(&registry, prepared.bell_client.take(), &reporter, &stopped);
    tasks.start_reloaders(&prepared, args, &stopped, registry.metrics());
    let metrics = registry.metrics().clone();
    let observed: Arc<dyn crate::metrics::Source> = registry.clone();
    metrics.observe(Arc::downgrade(&observed));
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics_server = tokio::spawn(metrics.clone().serve(prepared.metrics_listener, async {
        let _ = metrics_stopped.await;
    }));

    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let (http_stop, http_stopping) = tokio::sync::watch::channel(false);
    let shutdown = {
        let (registry, health_stop) = (registry.clone(), health_review.abort_handle());
        async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections; telling streams, finishing calls");
            // Streams would otherwise hold their connections open for ever.
            registry.begin_shutdown();
            health_stop.abort();
            health::set_health(&reporter, ServingStatus::NotServing).await;
            let _ = stopping_tx.send(());
            let _ = http_stop.send(true);
        }
    };
    let access = &prepared.access_limits;
    let per_connection = access.max_streams_per_connection;
    let header_list = (access.max_metadata_bytes * 4).max(64 << 10);
    let services = api::services(registry.clone(), access.max_message_bytes);
    let xds_config = xds::XdsConfig {
        weight_label: args.xds_weight_label.clone(),
    };
    let xds = xds::XdsApi::new(registry.clone(), xds_config).service(access.max_message_bytes);
    let access = Arc::new(
        Access::new(prepared.tokens, prepared.access_limits).with_xds_anonymous(xds_anonymous),
    );
    let rest = http_listener.map(|listener| {
        let api = web::HttpApi {
            registry,
            access: access.clone(),
            redis,
        };
        RestServer::start(listener, prepared.tls.clone(), api, http_stopping)
    });
    let (incoming, accepting) = conn::incoming(listener, prepared.tls.clone(), conn::GRPC_ALPN);
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
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(services.registry)
        .add_service(services.discovery)
        .add_service(services.admin)
        .add_service(xds)
        .serve_with_incoming_shutdown(incoming, shutdown);
    let grace = args.shutdown_grace;
    let (result, ()) = tokio::join!(serve_until_grace(server, stopping_rx, grace), async {
        if let Some(rest) = rest {
            rest.finish(grace).await;
        }
    });
    // The server (and with it the stream of connections) is gone: the accept loop ends and the
    // port is free once this returns, so a restart on the same address can bind it.
    let _ = accepting.await;
    health_review.abort();
    tasks.abort_health();
    let _ = stop_metrics.send(());
    let _ = metrics_server.await;
    // The flusher writes what is left of the leases before it returns.
    let _ = stop.send(true);
    tasks.stop().await;
    loops.join().await;
    tracing::info!("server stopped");
    Ok(result?)
}

/// Runs the server until it ends, or until `grace` after shutdown began (then in-flight calls
/// are dropped). The server is dropped before this returns.
async fn serve_until_grace(
    server: impl Future<Output = Result<(), tonic::transport::Error>>,
    stopping: tokio::sync::oneshot::Receiver<()>,
    grace: Duration,
) -> Result<(), tonic::transport::Error> {
    tokio::select! {
        r = server => r,
        _ = async {
            let _ = stopping.await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(?grace, "shutdown grace elapsed; closing remaining calls");
            Ok(())
        }
    }
}

/// Tasks beside the registry's own loops: the store probe and Redis health (aborted at
/// shutdown) and the bell and reloaders (they end when the stop signal flips).
#[derive(Default)]
struct Tasks {
    health: Vec<JoinHandle<()>>,
    stoppable: Vec<JoinHandle<()>>,
}

impl Tasks {
    fn start_bell(
        &mut self,
        registry: &Registry,
        client: Option<crate::events::bell::Client>,
        reporter: &tonic_health::server::HealthReporter,
        stopped: &crate::common::Stop,
    ) -> Option<tokio::sync::watch::Receiver<Option<bool>>> {
        let Some(client) = client else {
            tracing::info!(every = ?registry.settings().feed.poll_interval,
                "no REDIS_URL: replicas converge by polling the change log");
            return None;
        };
        let bell = bell::start(client, registry.doorbell(), stopped.clone());
        let up = bell.up.clone();
        self.stoppable.extend(bell.tasks);
        self.health.push(tokio::spawn(health::report_redis(
            bell.up,
            reporter.clone(),
            registry.metrics().clone(),
        )));
        tracing::info!("change notifications through Redis");
        Some(up)
    }

    fn start_reloaders(
        &mut self,
        prepared: &Prepared,
        args: &ServeArgs,
        stopped: &crate::common::Stop,
        metrics: &Arc<crate::metrics::Metrics>,
    ) {
        if let Some(tls) = &prepared.tls {
            let tls = tls.clone();
            self.stoppable.push(tokio::spawn(reload::watch(
                "TLS certificates",
                tls.files().paths(),
                args.reload_interval,
                stopped.clone(),
                metrics.clone(),
                move || {
                    tls.reload()
                        .map(|()| "new handshakes use the new files".into())
                        .map_err(|e| e.to_string())
                },
            )));
        }
        if let Some(table) = &prepared.tokens {
            let table = table.clone();
            self.stoppable.push(tokio::spawn(reload::watch(
                "tokens file",
                vec![table.path().to_path_buf()],
                args.reload_interval,
                stopped.clone(),
                metrics.clone(),
                move || {
                    table
                        .reload()
                        .map(|n| format!("{n} tokens"))
                        .map_err(|e| e.to_string())
                },
            )));
        }
    }

    /// The store probe and Redis health stop first: nothing they report matters any more.
    fn abort_health(&mut self) {
        for h in self.health.drain(..) {
            h.abort();
        }
    }

    async fn stop(self) {
        for t in self.stoppable {
            let _ = t.await;
        }
    }
}
