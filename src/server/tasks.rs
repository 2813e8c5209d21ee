//! The tasks a replica runs beside the registry's own loops: the Redis bell (and the report of
//! its health) and the reloaders of the TLS and tokens files.

use std::sync::Arc;

use agent_registry_core::events::bell;
use agent_registry_core::metrics::Metrics;
use agent_registry_core::registry::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic_health::server::HealthReporter;

use super::health;
use super::prepare::Prepared;
use crate::config::ServeArgs;
use crate::security::reload;

/// A replica's tasks besides its servers and the registry's loops, in two groups by when they
/// end: reports (the store probe, Redis health, `/metrics`: with the reporting token) and
/// background tasks (the bell, the reloaders: with the root token).
#[derive(Default)]
pub(super) struct Tasks {
    pub reports: Vec<JoinHandle<()>>,
    pub background: Vec<JoinHandle<()>>,
}

impl Tasks {
    /// Starts the Redis bell if Redis is configured (its tasks end with `stop`, the report of
    /// its health with `reporting`); its state, for the HTTP API's `/v1/status`.
    pub fn start_bell(
        &mut self,
        registry: &Registry,
        client: Option<bell::Client>,
        reporter: &HealthReporter,
        stop: &CancellationToken,
        reporting: &CancellationToken,
    ) -> Option<watch::Receiver<Option<bool>>> {
        let Some(client) = client else {
            tracing::info!(every = ?registry.settings().feed.poll_interval,
                "no REDIS_URL: replicas converge by polling the change log");
            return None;
        };
        let bell = bell::start(client, registry.doorbell(), stop.clone());
        let up = bell.up.clone();
        self.background.extend(bell.tasks);
        self.reports.push(tokio::spawn(health::report_redis(
            bell.up,
            reporter.clone(),
            registry.metrics().clone(),
            reporting.clone(),
        )));
        tracing::info!("change notifications through Redis");
        Some(up)
    }

    /// Watches the TLS files and the tokens file, if configured, until `stop` is cancelled.
    pub fn start_reloaders(
        &mut self,
        prepared: &Prepared,
        args: &ServeArgs,
        stop: &CancellationToken,
        metrics: &Arc<Metrics>,
    ) {
        if let Some(tls) = &prepared.tls {
            let tls = tls.clone();
            self.background.push(tokio::spawn(reload::watch(
                "TLS certificates",
                tls.files().paths(),
                args.reload_interval,
                stop.clone(),
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
            self.background.push(tokio::spawn(reload::watch(
                "tokens file",
                vec![table.path().to_path_buf()],
                args.reload_interval,
                stop.clone(),
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

    /// Waits for the reports to end (after the reporting token was cancelled).
    pub async fn join_reports(&mut self) {
        for task in self.reports.drain(..) {
            let _ = task.await;
        }
    }

    /// Waits for the background tasks to end (after the root token was cancelled).
    pub async fn join_background(&mut self) {
        for task in self.background.drain(..) {
            let _ = task.await;
        }
    }
}
