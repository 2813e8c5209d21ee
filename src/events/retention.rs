//! Dead-instance retention: dead instances and the change log are kept for `dead_retention`,
//! then deleted together, which moves the compaction horizon that Watch resumes are held to.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::registry::Registry;
use crate::storage::{Compacted, StoreError};

/// Collects once: everything changed longer than `dead_retention` ago.
pub async fn collect_once(registry: &Registry) -> Result<Compacted, StoreError> {
    // The store measures age by its own clock, so replicas with skewed clocks agree.
    let done = registry
        .store()
        .compact(registry.watch_config().dead_retention)
        .await?;
    if done.horizon > 0 {
        if done.deleted > 0 {
            tracing::info!(
                horizon = done.horizon,
                deleted = done.deleted,
                "dead instances collected"
            );
        }
        // The index forgets them too (other replicas learn the horizon from their feed).
        registry.followers().apply(crate::domain::ChangeSet {
            horizon: done.horizon,
            ..crate::domain::ChangeSet::after(registry.index().revision())
        });
    }
    Ok(done)
}

/// How often to collect: a tenth of the retention, between 1 s and 1 min.
pub fn interval(retention: Duration) -> Duration {
    (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Collects every [`interval`] until `stop` flips. Every replica runs it; the store serializes
/// them, and a second collection of the same range deletes nothing.
pub async fn run(registry: Arc<Registry>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(interval(registry.watch_config().dead_retention));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if let Err(e) = collect_once(&registry).await {
            tracing::warn!(error = %e, "collecting dead instances failed; will retry");
        }
    }
}
