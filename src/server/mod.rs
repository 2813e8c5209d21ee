//! Assembles and supervises a replica: [`run`] waits for the store and opens the registry;
//! [`start`] starts the gRPC services, the HTTP API, the background loops, the Redis bell, the
//! reloaders and `/metrics` under one cancellation token, and returns the [`Running`] replica,
//! whose [`Running::shutdown`] takes them down in order.
//!
//! `run`, `serve` and `serve_on` take a bound listener and a shutdown future, so tests start
//! servers on port 0 and stop them without signals.

mod health;
mod metrics;
mod prepare;
mod replica;
mod rest;
mod tasks;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use agent_registry_core::registry::{Registry, RegistryError};
use agent_registry_core::storage::{self, StoreError};
use tokio::net::TcpListener;

use crate::config::ServeArgs;

pub use health::{LIVENESS_HEALTH, REDIS_HEALTH};
pub use replica::{Running, start};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("opening the store: {0}")]
    Store(#[from] StoreError),
    #[error("loading the registry: {0}")]
    Registry(#[from] RegistryError),
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
            "leases shorter than three --store-timeout may lapse on other replicas before this \
             one notices a silent store and stops vouching for their beats");
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

/// `serve`, with the HTTP API on a listener the caller bound (or none): starts the replica,
/// waits for `shutdown` (or for the gRPC server to fail), then shuts it down within
/// `--shutdown-grace`.
pub async fn serve_on(
    registry: Arc<Registry>,
    args: &ServeArgs,
    listener: TcpListener,
    http_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let mut replica = start(registry, args, listener, http_listener).await?;
    tokio::select! {
        _ = shutdown => {}
        _ = replica.failed() => {}
    }
    replica.shutdown(args.shutdown_grace).await
}
