//! The ports the liveness loops run through, provided by the applier: the flusher's
//! ([`FlushPort`]: write beats, move the LIVE view) and the sweeper's ([`ExpiryPort`]: read
//! stored heartbeats, expire through the store, and apply what was committed on this replica).

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use uuid::Uuid;

use super::Applier;
use crate::liveness::{ExpiryOutcome, ExpiryPort, FlushPort};
use crate::storage::{Slack, StoreError, StoredBeat};

impl FlushPort for Applier {
    fn renew_listed(&self, beats: &[(Uuid, DateTime<Utc>)]) {
        self.index.renew_many(beats);
    }

    async fn write_beats(&self, beats: &[(Uuid, Instant)]) -> Result<(), StoreError> {
        let started = Instant::now();
        self.store.flush_heartbeats(beats).await?;
        self.metrics
            .flush_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.flush_rows.observe(beats.len() as f64);
        Ok(())
    }
}

impl ExpiryPort for Applier {
    async fn stored_beats(&self, ids: &[Uuid]) -> Result<Vec<StoredBeat>, StoreError> {
        self.store.heartbeats(ids).await
    }

    async fn expire(&self, ids: &[Uuid], slack: Slack) -> Result<ExpiryOutcome, StoreError> {
        let outcome = self.store.expire(ids, slack).await?;
        let expired = outcome.changes.instances.len();
        for dead in &outcome.changes.instances {
            tracing::info!(instance_id = %dead.instance_id, namespace = %dead.namespace,
                logical_id = %dead.logical_id, "lease expired");
        }
        // The deaths remove their (claimed) leases as the index applies them.
        self.committed(outcome.changes);
        let stored: Vec<_> = outcome
            .renewed
            .iter()
            .map(|b| (b.instance_id, b.at))
            .collect();
        self.index.renew_many(&stored);
        Ok(ExpiryOutcome {
            expired,
            renewed: outcome.renewed,
        })
    }
}
