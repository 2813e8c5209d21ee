//! Dead-instance retention: dead instances and the change log are kept for `dead_retention`,
//! then deleted together, which moves the compaction horizon that Watch resumes are held to.

use std::sync::Arc;
use std::time::Duration;

use super::Applier;
use tokio_util::sync::CancellationToken;

use crate::common::Every;
use crate::domain::ChangeSet;
use crate::storage::{Compacted, StoreError};

/// The retention loop, with what it writes through and applies to.
pub struct Retention {
    pub(super) applier: Arc<Applier>,
    pub(super) retention: Duration,
}

impl Retention {
    /// Collects once: everything changed longer than the retention ago.
    pub async fn collect_once(&self) -> Result<Compacted, StoreError> {
        let applier = &self.applier;
        // The store measures age by its own clock, so replicas with skewed clocks agree.
        let done = applier.store.compact(self.retention).await?;
        if done.horizon > 0 {
            if done.deleted > 0 {
                tracing::info!(
                    horizon = done.horizon,
                    deleted = done.deleted,
                    "dead instances collected"
                );
            }
            // The index forgets them too (other replicas learn the horizon from their feed), and
            // the card versions collected, at their revisions.
            let collected = done.changes.cards.len();
            if collected > 0 {
                tracing::info!(horizon = done.horizon, collected, "card versions collected");
                applier.committed(ChangeSet {
                    horizon: done.horizon,
                    ..done.changes.clone()
                });
            } else {
                applier.apply(ChangeSet {
                    horizon: done.horizon,
                    ..ChangeSet::after(applier.index.revision())
                });
            }
        }
        Ok(done)
    }

    /// Collects every tenth of the retention (1 s to 1 min) until `stop` is cancelled. Every
    /// replica runs it; the store serializes them, and a second collection of the same range
    /// deletes nothing.
    pub async fn run(self, stop: CancellationToken) {
        let mut rounds = Every::new(interval(self.retention), stop);
        while rounds.next().await {
            if let Err(e) = self.collect_once().await {
                tracing::warn!(error = %e, "collecting dead instances failed; will retry");
            }
        }
    }
}

/// How often to collect: a tenth of the retention, between 1 s and 1 min.
pub fn interval(retention: Duration) -> Duration {
    (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
}
