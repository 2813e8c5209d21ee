//! Durable state behind one trait, with a Postgres and an SQLite backend chosen by URL scheme.
//!
//! Every write runs in one transaction that first locks the registry-wide revision counter, so
//! writes are serialized, revisions are gap-free and commit order equals revision order: a
//! reader that sees revision R can never later see a change with a revision ≤ R appear.

mod ops;

/// Implements `Store` for a backend: the write methods, identical on both backends (open the
/// backend's write transaction, run the shared logic from `ops`, commit), followed by the
/// backend's own methods given in braces. The backend provides `begin()` returning a
/// `WriteTx` with `commit()`.
macro_rules! impl_store {
    ($backend:ty { $($own:tt)* }) => {
        #[async_trait::async_trait]
        impl $crate::storage::Store for $backend {
            async fn register_batch(
                &self,
                news: Vec<$crate::domain::NewInstance>,
            ) -> Result<$crate::storage::RegisteredBatch, $crate::storage::StoreError> {
                let mut tx = self.begin().await?;
                let done = $crate::storage::ops::register_batch(&mut tx, news).await?;
                tx.commit().await?;
                Ok(done)
            }

            async fn transition(
                &self,
                id: uuid::Uuid,
                t: $crate::domain::Transition,
            ) -> Result<$crate::storage::Transitioned, $crate::storage::StoreError> {
                let mut tx = self.begin().await?;
                let done = $crate::storage::ops::transition(&mut tx, id, t).await?;
                tx.commit().await?;
                Ok(done)
            }

            async fn advance_epoch(
                &self,
                namespace: &str,
            ) -> Result<$crate::storage::Advanced, $crate::storage::StoreError> {
                let mut tx = self.begin().await?;
                let done = $crate::storage::ops::advance_epoch(&mut tx, namespace).await?;
                tx.commit().await?;
                Ok(done)
            }

            async fn expire(
                &self,
                candidates: &[uuid::Uuid],
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::storage::Expired, $crate::storage::StoreError> {
                let mut tx = self.begin().await?;
                let done = $crate::storage::ops::expire(&mut tx, candidates, now).await?;
                tx.commit().await?;
                Ok(done)
            }

            async fn compact(
                &self,
                retention: std::time::Duration,
            ) -> Result<$crate::storage::Compacted, $crate::storage::StoreError> {
                let mut tx = self.begin().await?;
                let horizon = $crate::storage::ops::raise_horizon(&mut tx, retention).await?;
                tx.commit().await?;
                let Some(horizon) = horizon else {
                    return Ok($crate::storage::Compacted::default());
                };
                // Outside the revision lock, in small batches: writers are never held up.
                let deleted = self.purge_through(horizon).await?;
                Ok($crate::storage::Compacted { horizon, deleted })
            }

            $($own)*
        }
    };
}
use impl_store;
mod metered;
mod postgres;
mod sqlite;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::{ChangeSet, Instance, Namespace, NewInstance, RuleError, Transition};

pub use metered::Metered;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// What went wrong in the store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached; the caller may retry.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The transaction lost a race (deadlock, serialization failure) and rolled back; a retry
    /// can succeed. Unlike `Unavailable`, the store itself is fine.
    #[error("transaction conflict: {0}")]
    Conflict(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// The change log no longer reaches back to the revision asked for: changes at or below
    /// `horizon` were garbage-collected.
    #[error("revision compacted: the change log starts after revision {horizon}")]
    Compacted { horizon: i64 },
    /// A bug or a corrupt row; details stay in the log.
    #[error("store error: {0}")]
    Internal(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match &e {
            E::Io(_) | E::Tls(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed => {
                StoreError::Unavailable(e.to_string())
            }
            E::Database(db) => {
                let code = db.code().unwrap_or_default();
                // Postgres connection-exception (08…), shutdown (57P0…), too-many-connections
                // (53300); SQLite busy/locked (5, 6). Deadlock and serialization failure
                // (40P01, 40001) are conflicts: retryable, but the store is not down.
                let transient = code.starts_with("08")
                    || code.starts_with("57P0")
                    || code == "53300"
                    || code == "5"
                    || code == "6";
                if code == "40P01" || code == "40001" {
                    StoreError::Conflict(e.to_string())
                } else if transient {
                    StoreError::Unavailable(e.to_string())
                } else {
                    StoreError::Internal(e.to_string())
                }
            }
            _ => StoreError::Internal(e.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Internal(format!("migration failed: {e}"))
    }
}

/// One admitted registration: the stored instance, and whether it was a retry of one.
#[derive(Debug, Clone)]
pub struct Registered {
    pub instance: Instance,
    pub retried: bool,
}

/// Result of a batch of registrations committed together: each one's outcome, in order (a
/// rule may refuse one without touching the others), and everything the batch changed.
#[derive(Debug, Clone)]
pub struct RegisteredBatch {
    pub results: Vec<Result<Registered, RuleError>>,
    pub changes: ChangeSet,
}

/// Result of a status transition.
#[derive(Debug, Clone)]
pub struct Transitioned {
    pub instance: Instance,
    pub changes: ChangeSet,
}

/// Result of an epoch advance.
#[derive(Debug, Clone)]
pub struct Advanced {
    pub namespace: Namespace,
    pub fenced: u64,
    pub changes: ChangeSet,
}

/// Result of an expiry sweep.
#[derive(Debug, Clone)]
pub struct Expired {
    /// The instances marked DEAD (`LEASE_EXPIRED`).
    pub changes: ChangeSet,
    /// Candidates whose stored heartbeat is newer than the caller knew (another replica
    /// renewed them): not expired, with the stored `last_heartbeat`.
    pub renewed: Vec<(Uuid, DateTime<Utc>)>,
}

/// What a backend's change read returns.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Read {
    /// Every current row (no history).
    Snapshot,
    /// The change log after a revision, with namespaces.
    Log,
    /// At most this many change-log rows, without namespaces.
    Page(i64),
}

/// Rows one purge statement deletes at most: collection never holds many row locks at once.
pub(crate) const PURGE_BATCH: i64 = 5_000;

/// Result of a garbage collection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compacted {
    /// Changes at or below this revision are gone from the log (0: nothing was collected).
    pub horizon: i64,
    /// Dead instance rows deleted.
    pub deleted: u64,
}

/// Counters a store keeps about itself, for tests and metrics.
#[derive(Debug, Default)]
pub struct StoreStats {
    flush_statements: AtomicU64,
}

impl StoreStats {
    /// Heartbeat flush statements executed (one per non-empty flush).
    pub fn flush_statements(&self) -> u64 {
        self.flush_statements.load(Ordering::Relaxed)
    }

    fn count_flush(&self) {
        self.flush_statements.fetch_add(1, Ordering::Relaxed);
    }
}

/// The durable registry. Implementations are the only code that speaks SQL.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `postgres` or `sqlite`, for logs.
    fn backend(&self) -> &'static str;
    /// Registers (or idempotently re-returns) each instance of a batch in one transaction;
    /// durable when this returns.
    async fn register_batch(&self, news: Vec<NewInstance>) -> Result<RegisteredBatch, StoreError>;
    /// Moves one instance through the state machine.
    async fn transition(&self, id: Uuid, t: Transition) -> Result<Transitioned, StoreError>;
    /// Makes a new epoch current and fences every non-dead instance of older ones.
    async fn advance_epoch(&self, namespace: &str) -> Result<Advanced, StoreError>;
    /// Writes `last_heartbeat` for every instance in `beats` with ONE statement (never moving
    /// a heartbeat backwards, never touching DEAD rows). Not a state change: no revision.
    async fn flush_heartbeats(&self, beats: &[(Uuid, DateTime<Utc>)]) -> Result<u64, StoreError>;
    /// In one transaction, marks DEAD (`LEASE_EXPIRED`) each candidate whose stored lease has
    /// run out by `now`; candidates renewed meanwhile (per the stored heartbeat) are reported.
    async fn expire(&self, candidates: &[Uuid], now: DateTime<Utc>) -> Result<Expired, StoreError>;
    /// The stored `last_heartbeat` of each of `ids` that is not dead (any replica's flushes).
    async fn heartbeats(&self, ids: &[Uuid]) -> Result<Vec<(Uuid, DateTime<Utc>)>, StoreError>;
    /// Moves the compaction horizon to the newest change older than `retention` (by the
    /// database's clock), then deletes the change log up to it and the dead instances whose
    /// death it held.
    async fn compact(&self, retention: std::time::Duration) -> Result<Compacted, StoreError>;
    /// Counters about this store.
    fn stats(&self) -> &StoreStats;
    /// Every change above revision `after` from the change log — one row per revision, none
    /// skipped — as of one consistent snapshot; `last` is the highest revision committed in it
    /// and `horizon` the compaction horizon. An `after` below the horizon is `Compacted`.
    async fn changes_since(&self, after: i64) -> Result<ChangeSet, StoreError>;
    /// Like `changes_since`, at most `limit` instance rows and no namespaces (for replaying a
    /// Watch); `last` is the last row's revision when the page is full.
    async fn changes_page(&self, after: i64, limit: i64) -> Result<ChangeSet, StoreError>;
    /// The current state: every retained instance and namespace as it is now (no history), as
    /// of one consistent snapshot, covering revisions `1..=last`.
    async fn snapshot(&self) -> Result<ChangeSet, StoreError>;
    /// Cheap round trip, for health.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Closes the pools.
    async fn close(&self);
}

/// Connection settings shared by both backends.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub max_connections: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
        }
    }
}

/// Opens the store named by `url` (`postgres://…` or `sqlite://…`) and runs its migrations.
pub async fn open(url: &str, options: &StoreOptions) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::open(url, options).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url, options).await?))
    } else {
        Err(StoreError::Internal(format!(
            "unsupported database URL scheme {:?}: use postgres:// or sqlite://",
            url.split(':').next().unwrap_or_default()
        )))
    }
}
