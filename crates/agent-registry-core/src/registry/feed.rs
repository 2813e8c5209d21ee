//! The change feed: keeps this replica's index, leases and watchers current with changes other
//! replicas commit, by reading the store's change log after the last applied revision.
//!
//! The database is the log, so nothing is ever missed: Redis only shortens the wait (it rings
//! the doorbell), and without it every replica still converges within one poll interval.

use std::sync::Arc;
use std::time::Duration;

use super::Applier;
use tokio_util::sync::CancellationToken;

use crate::common::Every;

/// Tuning of the change feed and of dead-instance retention.
#[derive(Debug, Clone)]
pub struct FeedConfig {
    /// How often the change log is polled (Redis, when configured, wakes it sooner).
    pub poll_interval: Duration,
    /// How long dead instances (and the change log) are kept.
    pub dead_retention: Duration,
}

impl Default for FeedConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
            dead_retention: Duration::from_secs(3600),
        }
    }
}

/// The feed's loop, with the applier it reads into.
pub struct Feed {
    pub(super) applier: Arc<Applier>,
    pub(super) every: Duration,
}

impl Feed {
    /// Polls every interval, or sooner when the doorbell is poked, until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        let applier = &self.applier;
        let mut rounds = Every::new(self.every, stop);
        let mut failing = false;
        while rounds.next_or(applier.doorbell.poke.notified()).await {
            match applier.catch_up().await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!(
                        revision = applier.index.revision(),
                        "change feed reading again"
                    );
                }
                Ok(()) => {}
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "change feed cannot read the store; retrying");
                    }
                    // (The store's guard has recorded the failure for health and liveness.)
                    failing = true;
                }
            }
        }
    }
}
