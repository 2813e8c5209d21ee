//! The store every part of a replica uses: any backend, with each call bounded in time, its
//! failures counted by operation for the metrics, and its outcome reported to [`StoreHealth`].
//!
//! A call that does not finish within the timeout is abandoned and counts as the store being
//! unreachable (its connection is tested when handed back and dropped if it stays silent). A
//! pool timeout is saturation when every pooled connection is open and busy, an unreachable
//! store otherwise.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use uuid::Uuid;

use super::health::{Outcome, StoreHealth};
use super::{
    Advanced, Compacted, Expired, Flushed, RegisteredBatch, Slack, Store, StoreError, StoreStats,
    StoredBeat, Transitioned,
};
use crate::domain::{ChangeSet, NewInstance, StoreClock, Transition};
use crate::metrics::Metrics;

pub struct Guarded {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    health: Arc<StoreHealth>,
    timeout: Duration,
}

impl Guarded {
    pub fn new(
        inner: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        health: Arc<StoreHealth>,
        timeout: Duration,
    ) -> Self {
        Self {
            inner,
            metrics,
            health,
            timeout,
        }
    }

    /// Runs one call within the timeout; counts and reports what it told about the store.
    async fn call<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.call_within(operation, self.timeout, call).await
    }

    async fn call_within<T>(
        &self,
        operation: &'static str,
        limit: Duration,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = match tokio::time::timeout(limit, call).await {
            Ok(Err(StoreError::PoolTimedOut)) if self.inner.pool_full() => Err(
                StoreError::Saturated("every pooled connection is busy".into()),
            ),
            Ok(Err(StoreError::PoolTimedOut)) => Err(StoreError::Unavailable(
                "no connection to the store could be opened in time".into(),
            )),
            Ok(r) => r,
            Err(_) => Err(StoreError::Unavailable(format!(
                "{operation} did not finish within {limit:?} (--store-timeout)"
            ))),
        };
        let outcome = match &result {
            Ok(_) => Outcome::Answered,
            Err(StoreError::Unavailable(_)) => Outcome::Unreachable,
            Err(StoreError::Saturated(_)) => Outcome::Saturated,
            // Beats that cannot be persisted, for whatever reason, are an outage of the store
            // as far as agents are concerned (a read-only or full database is no better).
            Err(StoreError::Internal(_)) if operation == "flush" => Outcome::Unreachable,
            Err(StoreError::Internal(_) | StoreError::PoolTimedOut) => Outcome::Unknown,
            Err(
                StoreError::Conflict(_)
                | StoreError::NotFound(_)
                | StoreError::Rule(_)
                | StoreError::Compacted { .. },
            ) => Outcome::Answered,
        };
        // Any failed write makes the run one of failed writes; only the flush and the write
        // probe, which always write, prove writes work again (a Register refused by a rule, or
        // an expiry that found nothing to change, may commit without writing anything).
        let write = match (&result, operation) {
            (Ok(_), "flush" | "probe_write") => true,
            (Ok(_), _) => false,
            (Err(_), "register" | "transition" | "advance_epoch" | "flush" | "expire") => true,
            (Err(_), op) => op == "probe_write",
        };
        self.health.report(started, outcome, write);
        // A compacted revision is an answer, not a failure.
        if let Err(e) = &result
            && !matches!(e, StoreError::Compacted { .. })
        {
            self.metrics.store_error(operation);
        }
        result
    }

    pub fn health(&self) -> &Arc<StoreHealth> {
        &self.health
    }
}

#[async_trait]
impl Store for Guarded {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn clock(&self) -> &Arc<StoreClock> {
        self.inner.clock()
    }
    fn pool_full(&self) -> bool {
        self.inner.pool_full()
    }
    async fn register_batch(&self, news: Vec<NewInstance>) -> Result<RegisteredBatch, StoreError> {
        self.call("register", self.inner.register_batch(news)).await
    }
    async fn transition(&self, id: Uuid, t: Transition) -> Result<Transitioned, StoreError> {
        self.call("transition", self.inner.transition(id, t)).await
    }
    async fn advance_epoch(&self, namespace: &str) -> Result<Advanced, StoreError> {
        self.call("advance_epoch", self.inner.advance_epoch(namespace))
            .await
    }
    async fn flush_heartbeats(&self, beats: &[(Uuid, Instant)]) -> Result<Flushed, StoreError> {
        let limit = self.timeout * super::flush_timeout_factor(beats.len());
        self.call_within("flush", limit, self.inner.flush_heartbeats(beats))
            .await
    }
    async fn expire(&self, candidates: &[Uuid], slack: Slack) -> Result<Expired, StoreError> {
        self.call("expire", self.inner.expire(candidates, slack))
            .await
    }
    async fn heartbeats(&self, ids: &[Uuid]) -> Result<Vec<StoredBeat>, StoreError> {
        self.call("read_heartbeats", self.inner.heartbeats(ids))
            .await
    }
    async fn compact(&self, retention: Duration) -> Result<Compacted, StoreError> {
        self.call("compact", self.inner.compact(retention)).await
    }
    async fn publish_card(
        &self,
        namespace: &str,
        logical_id: &str,
        card: crate::domain::card::Card,
    ) -> Result<crate::storage::Published, StoreError> {
        self.call(
            "publish_card",
            self.inner.publish_card(namespace, logical_id, card),
        )
        .await
    }
    fn stats(&self) -> &StoreStats {
        self.inner.stats()
    }
    async fn changes_since(&self, after: i64, limit: i64) -> Result<ChangeSet, StoreError> {
        self.call("read_changes", self.inner.changes_since(after, limit))
            .await
    }
    async fn changes_page(&self, after: i64, limit: i64) -> Result<ChangeSet, StoreError> {
        self.call("read_changes", self.inner.changes_page(after, limit))
            .await
    }
    async fn snapshot(&self) -> Result<ChangeSet, StoreError> {
        // Every retained row at once: the one read allowed longer (the backends raise the
        // statement timeout for it by the same factor).
        let limit = self.timeout * super::SNAPSHOT_TIMEOUT_FACTOR;
        self.call_within("snapshot", limit, self.inner.snapshot())
            .await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.call("ping", self.inner.ping()).await
    }
    async fn probe_write(&self) -> Result<(), StoreError> {
        self.call("probe_write", self.inner.probe_write()).await
    }
    async fn close(&self) {
        self.inner.close().await
    }
}
