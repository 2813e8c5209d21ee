//! A store that counts its own failures by operation for the metrics, around any backend.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    Advanced, Compacted, Expired, RegisteredBatch, Store, StoreError, StoreStats, Transitioned,
};
use crate::domain::{ChangeSet, NewInstance, Transition};
use crate::metrics::Metrics;

pub struct Metered {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl Metered {
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }

    /// Counts a failure of `operation`; a compacted revision is an answer, not a failure.
    fn count<T>(&self, operation: &'static str, r: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(e) = &r
            && !matches!(e, StoreError::Compacted { .. })
        {
            self.metrics.store_error(operation);
        }
        r
    }
}

#[async_trait]
impl Store for Metered {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn register_batch(&self, news: Vec<NewInstance>) -> Result<RegisteredBatch, StoreError> {
        self.count("register", self.inner.register_batch(news).await)
    }
    async fn transition(&self, id: Uuid, t: Transition) -> Result<Transitioned, StoreError> {
        self.count("transition", self.inner.transition(id, t).await)
    }
    async fn advance_epoch(&self, namespace: &str) -> Result<Advanced, StoreError> {
        self.count("advance_epoch", self.inner.advance_epoch(namespace).await)
    }
    async fn flush_heartbeats(&self, beats: &[(Uuid, DateTime<Utc>)]) -> Result<u64, StoreError> {
        self.count("flush", self.inner.flush_heartbeats(beats).await)
    }
    async fn expire(&self, candidates: &[Uuid], now: DateTime<Utc>) -> Result<Expired, StoreError> {
        self.count("expire", self.inner.expire(candidates, now).await)
    }
    async fn heartbeats(&self, ids: &[Uuid]) -> Result<Vec<(Uuid, DateTime<Utc>)>, StoreError> {
        self.count("read_heartbeats", self.inner.heartbeats(ids).await)
    }
    async fn compact(&self, retention: Duration) -> Result<Compacted, StoreError> {
        self.count("compact", self.inner.compact(retention).await)
    }
    fn stats(&self) -> &StoreStats {
        self.inner.stats()
    }
    async fn changes_since(&self, after: i64) -> Result<ChangeSet, StoreError> {
        self.count("read_changes", self.inner.changes_since(after).await)
    }
    async fn changes_page(&self, after: i64, limit: i64) -> Result<ChangeSet, StoreError> {
        self.count("read_changes", self.inner.changes_page(after, limit).await)
    }
    async fn snapshot(&self) -> Result<ChangeSet, StoreError> {
        self.count("snapshot", self.inner.snapshot().await)
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.count("ping", self.inner.ping().await)
    }
    async fn close(&self) {
        self.inner.close().await
    }
}
