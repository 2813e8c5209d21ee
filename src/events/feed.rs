//! The change feed: keeps this replica's index, leases and watchers current with changes other
//! replicas commit, by reading the store's change log after the last applied revision.
//!
//! The database is the log, so nothing is ever missed: Redis only shortens the wait (it pokes
//! the feed), and without it every replica still converges within one poll interval.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::registry::Registry;

/// Polls every `every`, or sooner when poked, until `stop` flips.
pub async fn run(registry: Arc<Registry>, every: Duration, mut stop: watch::Receiver<bool>) {
    let followers = registry.followers().clone();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = followers.poke.notified() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match followers.catch_up().await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!(
                    revision = followers.index.revision(),
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
