//! A running replica: [`start`] puts every part of it to work, [`Running::shutdown`] takes them
//! down in order. One cancellation token owns every task; its children end the parts that must
//! stop first.
//!
//! ```text
//! root ─── the loops (flusher, sweeper, feed, retention), the Redis bell, the reloaders
//!  ├─ serving ─── gRPC and HTTP accept and calls, the readiness review
//!  └─ reporting ─ the store probe, Redis health, /metrics
//! ```

use std::sync::Arc;
use std::time::Duration;

use agent_registry_core::registry::{Loops, Registry};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use super::prepare::{self, Prepared};
use super::rest::RestServer;
use super::tasks::Tasks;
use super::{ServerError, health};
use crate::api::call_metrics::GrpcMetricsLayer;
use crate::config::ServeArgs;
use crate::security::{Access, AccessLayer, conn};
use crate::{api, web, xds};

type GrpcTask = JoinHandle<Result<(), tonic::transport::Error>>;

/// A replica serving: what [`Running::shutdown`] takes down, in its order. Dropped without it,
/// every task is cancelled at once (no grace, and the flusher's last flush is not awaited).
#[must_use = "a replica is taken down by `Running::shutdown`"]
pub struct Running {
    registry: Arc<Registry>,
    root: CancellationToken,
    serving: CancellationToken,
    reporting: CancellationToken,
    reporter: HealthReporter,
    /// Re-judges readiness and liveness; ends with `reviewing` (a child of `serving`).
    reviewing: CancellationToken,
    health_review: JoinHandle<()>,
    /// The gRPC server; `None` once it ended (its outcome is in `grpc_ended`).
    grpc: Option<GrpcTask>,
    grpc_ended: Option<Result<(), tonic::transport::Error>>,
    /// The gRPC port's accept loop: the port is free once it has ended.
    accepting: JoinHandle<()>,
    http: Option<RestServer>,
    /// The store probe, Redis health and `/metrics` (they end with `reporting`); the bell and
    /// the reloaders (with `root`).
    tasks: Tasks,
    /// The registry's loops; `None` once joined.
    loops: Option<Loops>,
}

/// Starts every part of a replica over an open registry: the gRPC services (with health and
/// reflection) behind the access and metrics layers, the HTTP API on `http_listener`, the
/// registry's loops, the Redis bell, the reloaders and `/metrics`. Everything fallible is done
/// before anything starts, so an error leaves no task behind.
pub async fn start(
    registry: Arc<Registry>,
    args: &ServeArgs,
    listener: TcpListener,
    http_listener: Option<TcpListener>,
) -> Result<Running, ServerError> {
    let mut prepared = Prepared::new(args).await?;
    let xds_anonymous = args.xds_anonymous().map_err(ServerError::Config)?;
    let public_cards = args.public_cards().map_err(ServerError::Config)?;
    let (reflection_v1, reflection_v1alpha) = prepare::reflection()?;
    prepared.log_security(args);

    let root = CancellationToken::new();
    let (serving, reporting) = (root.child_token(), root.child_token());
    let (reporter, health_service) = tonic_health::server::health_reporter();
    health::set_health(&reporter, ServingStatus::Serving).await;
    reporter
        .set_service_status(health::LIVENESS_HEALTH, ServingStatus::Serving)
        .await;
    let reviewing = serving.child_token();
    let health_review = tokio::spawn(health::report_health(
        registry.clone(),
        reporter.clone(),
        reviewing.clone(),
    ));
    let mut tasks = Tasks::default();
    tasks.reports.push(tokio::spawn(
        registry
            .clone()
            .run_store_probe(args.health_check_interval, reporting.clone()),
    ));
    let loops = registry.spawn_loops(root.clone());
    let bell = prepared.bell_client.take();
    let redis = tasks.start_bell(&registry, bell, &reporter, &root, &reporting);
    tasks.start_reloaders(&prepared, args, &root, registry.metrics());
    let metrics = registry.metrics().clone();
    let observed: Arc<dyn agent_registry_core::metrics::Source> = registry.clone();
    metrics.observe(Arc::downgrade(&observed));
    tasks.reports.push(tokio::spawn(super::metrics::serve(
        metrics.clone(),
        prepared.metrics_listener,
        reporting.clone(),
    )));

    let limits = &prepared.access_limits;
    let per_connection = limits.max_streams_per_connection;
    let header_list = (limits.max_metadata_bytes * 4).max(64 << 10);
    let services = api::services(registry.clone(), limits.max_message_bytes);
    let xds_config = xds::XdsConfig {
        weight_label: args.xds_weight_label.clone(),
    };
    let xds = xds::XdsApi::new(registry.clone(), xds_config).service(limits.max_message_bytes);
    let access = Arc::new(
        Access::new(prepared.tokens, prepared.access_limits)
            .with_xds_anonymous(xds_anonymous)
            .with_public_cards(public_cards),
    );
    let http = http_listener.map(|listener| {
        let api = web::HttpApi {
            registry: registry.clone(),
            access: access.clone(),
            redis,
        };
        RestServer::start(listener, prepared.tls.clone(), api, serving.clone())
    });
    let (incoming, accepting) = conn::incoming(listener, prepared.tls.clone(), conn::GRPC_ALPN);
    let grpc = Server::builder()
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
        .add_service(services.catalog)
        .add_service(xds)
        .serve_with_incoming_shutdown(incoming, serving.clone().cancelled_owned());
    Ok(Running {
        registry,
        root,
        serving,
        reporting,
        reporter,
        reviewing,
        health_review,
        grpc: Some(tokio::spawn(grpc)),
        grpc_ended: None,
        accepting,
        http,
        tasks,
        loops: Some(loops),
    })
}

impl Drop for Running {
    fn drop(&mut self) {
        self.registry.begin_shutdown();
        self.root.cancel();
        if let Some(grpc) = &self.grpc {
            grpc.abort();
        }
    }
}

impl Running {
    /// Resolves if the gRPC server ends by itself (it failed); it never does otherwise.
    pub async fn failed(&mut self) {
        match self.grpc.as_mut() {
            Some(task) => {
                let outcome = task.await;
                self.grpc = None;
                self.grpc_ended = Some(joined(outcome));
            }
            None => std::future::pending().await,
        }
    }

    /// Takes the replica down, each step once the one before it is done:
    pub async fn shutdown(mut self, grace: Duration) -> Result<(), ServerError> {
        // 1. Stop taking work: every heartbeat stream and watcher is told to end (agents
        //    reconnect elsewhere with the same id), readiness turns NOT_SERVING, then no new
        //    connection is accepted.
        tracing::info!("shutting down: no new connections; telling streams, finishing calls");
        self.registry.begin_shutdown();
        self.reviewing.cancel();
        let _ = (&mut self.health_review).await;
        health::set_health(&self.reporter, ServingStatus::NotServing).await;
        self.serving.cancel();

        // 2. Let the calls in flight finish, gRPC and HTTP alike, for at most `grace`; then
        //    drop what is left. The ports are closed once the accept loops have ended.
        let grpc = self.grpc.take();
        let (grpc_outcome, ()) = tokio::join!(finish(grpc, grace), async {
            if let Some(http) = self.http.take() {
                http.finish(grace).await;
            }
        });
        let _ = (&mut self.accepting).await;

        // 3. Stop reporting: the store probe, Redis health and /metrics.
        self.reporting.cancel();
        self.tasks.join_reports().await;

        // 4. Stop the loops, the bell and the reloaders; the flusher writes every beat left to
        //    the store before it returns.
        self.root.cancel();
        self.tasks.join_background().await;
        if let Some(loops) = self.loops.take() {
            loops.join().await;
        }
        tracing::info!("server stopped");
        match self.grpc_ended.take().or(grpc_outcome) {
            Some(outcome) => Ok(outcome?),
            None => Ok(()),
        }
    }
}

/// Waits for the gRPC server to end (its calls finished) or for `grace`, whichever is first;
/// then it is dropped, and every connection with it.
async fn finish(
    task: Option<GrpcTask>,
    grace: Duration,
) -> Option<Result<(), tonic::transport::Error>> {
    let mut task = task?;
    tokio::select! {
        outcome = &mut task => Some(joined(outcome)),
        _ = tokio::time::sleep(grace) => {
            tracing::warn!(?grace, "shutdown grace elapsed; closing remaining calls");
            task.abort();
            let _ = task.await;
            Some(Ok(()))
        }
    }
}

/// The gRPC server task's outcome: its own, `Ok` if it was aborted, and a panic in it
/// resumed here (as it would have surfaced when the server ran inline).
fn joined(
    outcome: Result<Result<(), tonic::transport::Error>, tokio::task::JoinError>,
) -> Result<(), tonic::transport::Error> {
    match outcome {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Ok(()),
    }
}
