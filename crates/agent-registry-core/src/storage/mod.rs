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
                slack: $crate::storage::Slack,
            ) -> Result<$crate::storage::Expired, $crate::storage::StoreError> {
                let mut tx = self.begin().await?;
                let done = $crate::storage::ops::expire(&mut tx, candidates, slack).await?;
                tx.commit().await?;
                Ok(done)
            }

            async fn compact(
                &self,
                retention: std::time::Duration,
            ) -> Result<$crate::storage::Compacted, $crate::storage::StoreError> {
                let mut tx = self.begin().await?;
                let raised = $crate::storage::ops::raise_horizon(&mut tx, retention).await?;
                tx.commit().await?;
                let Some((horizon, changes)) = raised else {
                    return Ok($crate::storage::Compacted::default());
                };
                // Outside the revision lock, in small batches: writers are never held up.
                let deleted = self.purge_through(horizon).await?;
                Ok($crate::storage::Compacted {
                    horizon,
                    deleted,
                    changes,
                })
            }

            async fn publish_card(
                &self,
                namespace: &str,
                logical_id: &str,
                card: $crate::domain::card::Card,
            ) -> Result<$crate::storage::Published, $crate::storage::StoreError> {
                let mut tx = self.begin().await?;
                let done =
                    $crate::storage::ops::publish_card(&mut tx, namespace, logical_id, card).await?;
                tx.commit().await?;
                Ok(done)
            }

            $($own)*
        }
    };
}
use impl_store;
mod card_rows;
mod guard;
pub mod health;
mod log;
mod postgres;
mod sqlite;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::time::Instant;
use uuid::Uuid;

use crate::domain::card::Card;
use crate::domain::{
    ChangeSet, Instance, Namespace, NewInstance, RuleError, StoreClock, StoredCard, Transition,
};

pub use guard::Guarded;
pub use health::StoreHealth;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// What went wrong in the store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached (or did not answer in time); the caller may retry.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The database is there but has no capacity for this call (every pooled connection busy,
    /// or the server refuses more connections); the caller may retry.
    #[error("store saturated: {0}")]
    Saturated(String),
    /// No pooled connection came free in time: either every connection is busy (saturation) or
    /// none could be opened (unreachable). [`Guarded`] tells which from the pool's state.
    #[error("no store connection within the acquire timeout")]
    PoolTimedOut,
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
            E::PoolTimedOut => StoreError::PoolTimedOut,
            E::Io(_) | E::Tls(_) | E::PoolClosed | E::WorkerCrashed => {
                StoreError::Unavailable(e.to_string())
            }
            E::Database(db) => {
                let code = db.code().unwrap_or_default();
                // Postgres: connection exception (08…), shutdown (57P0…), a statement cancelled
                // by statement_timeout (57014), insufficient resources such as a full disk or
                // memory (53…), a read-only transaction after a failover to a standby (25006).
                // Too many connections (53300) is saturation: the
                // server answered. Deadlock and serialization failure (40P01, 40001) are
                // conflicts: retryable, but the store is not down.
                // SQLite's codes are numbers (extended ones carry the primary in the low byte):
                // busy, locked, read-only, I/O error, full (5, 6, 8, 10, 13).
                let sqlite = (code.len() < 5)
                    .then(|| code.parse::<u32>().ok())
                    .flatten()
                    .map(|c| c & 0xff);
                let unreachable = code.starts_with("08")
                    || code.starts_with("57P0")
                    || code == "57014"
                    || (code.starts_with("53") && code != "53300")
                    || code == "25006"
                    || matches!(sqlite, Some(5 | 6 | 8 | 10 | 13));
                if code == "40P01" || code == "40001" {
                    StoreError::Conflict(e.to_string())
                } else if code == "53300" {
                    StoreError::Saturated(e.to_string())
                } else if unreachable {
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

/// A stored `last_heartbeat`, with the moment it names on this process's monotonic clock
/// (converted through the age the store measured with its own clock, so no two clocks are
/// compared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredBeat {
    pub instance_id: Uuid,
    /// As stored: the store's clock.
    pub at: DateTime<Utc>,
    /// The same moment here: the read's start minus the age the store measured.
    pub local: Instant,
}

/// How long past its stored lease an instance is still spared by expiry: beats acknowledged by
/// some replica reach the store late by up to this. A row's lease has run out for good once
/// `last_heartbeat + lease_ttl + fixed + lease_ttl × per_lease` is behind the store's clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slack {
    pub fixed: Duration,
    pub per_lease: f64,
}

impl Slack {
    /// The slack for one lease of `ttl`.
    pub fn of(&self, ttl: Duration) -> Duration {
        self.fixed + ttl.mul_f64(self.per_lease)
    }
}

/// Result of a heartbeat flush.
#[derive(Debug, Clone, Copy)]
pub struct Flushed {
    /// Rows whose `last_heartbeat` moved.
    pub rows: u64,
    /// The store's clock when the ages were measured (`measured`, on this process's clock):
    /// a beat at instant `b` was stored as `store_time - (measured - b)`.
    pub store_time: DateTime<Utc>,
    pub measured: Instant,
}

impl Flushed {
    /// What the flush stored for a beat at `beat` (ages travel in whole microseconds).
    pub fn stored(&self, beat: Instant) -> DateTime<Utc> {
        let age = micros_of(self.measured.saturating_duration_since(beat));
        self.store_time - chrono::TimeDelta::microseconds(age)
    }
}

/// Result of an expiry.
#[derive(Debug, Clone)]
pub struct Expired {
    /// The instances marked DEAD (`LEASE_EXPIRED`).
    pub changes: ChangeSet,
    /// Candidates not expired because their stored heartbeat keeps them live (another replica
    /// renewed them), with that heartbeat.
    pub renewed: Vec<StoredBeat>,
}

/// How many times `--store-timeout` a snapshot (every retained row, read at start-up or to
/// rebuild) may take.
pub(crate) const SNAPSHOT_TIMEOUT_FACTOR: u32 = 10;

/// Heartbeats one flush may write within one `--store-timeout`; a bigger batch is allowed as
/// many timeouts as it needs (the benchmark machine writes ~60 000 rows a second).
pub(crate) const FLUSH_ROWS_PER_TIMEOUT: usize = 25_000;

/// How many store timeouts a flush of `rows` beats is allowed.
pub(crate) fn flush_timeout_factor(rows: usize) -> u32 {
    rows.div_ceil(FLUSH_ROWS_PER_TIMEOUT).max(1) as u32
}

/// Change-log rows one catch-up read returns at most; a replica far behind reads several pages.
pub const CATCH_UP_PAGE: i64 = 10_000;

/// Rows one purge statement deletes at most: collection never holds many row locks at once.
pub(crate) const PURGE_BATCH: i64 = 5_000;

pub(crate) use log::Read;

/// Result of a garbage collection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Compacted {
    /// Changes at or below this revision are gone from the log (0: nothing was collected).
    pub horizon: i64,
    /// Dead instance rows deleted.
    pub deleted: u64,
    /// The card versions collected (tombstones, each at its revision).
    pub changes: ChangeSet,
}

/// Result of publishing a card.
#[derive(Debug, Clone)]
pub struct Published {
    /// The version as stored, with its revision.
    pub card: StoredCard,
    pub changes: ChangeSet,
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
    /// The store's clock as this process estimates it (every stored time is on it).
    fn clock(&self) -> &Arc<StoreClock>;
    /// Whether every pooled connection is open and busy (a pool timeout then means saturation,
    /// not an unreachable store).
    fn pool_full(&self) -> bool;
    /// Registers (or idempotently re-returns) each instance of a batch in one transaction;
    /// durable when this returns.
    async fn register_batch(&self, news: Vec<NewInstance>) -> Result<RegisteredBatch, StoreError>;
    /// Moves one instance through the state machine.
    async fn transition(&self, id: Uuid, t: Transition) -> Result<Transitioned, StoreError>;
    /// Makes a new epoch current and fences every non-dead instance of older ones.
    async fn advance_epoch(&self, namespace: &str) -> Result<Advanced, StoreError>;
    /// Writes `last_heartbeat` for every instance in `beats` (the instant of each one's last
    /// beat, on this process's monotonic clock) with ONE statement, as the store's clock minus
    /// each beat's age — never moving a heartbeat backwards, never touching DEAD rows. Not a
    /// state change: no revision.
    async fn flush_heartbeats(&self, beats: &[(Uuid, Instant)]) -> Result<Flushed, StoreError>;
    /// In one transaction and one set-based statement, marks DEAD (`LEASE_EXPIRED`) each
    /// candidate whose stored lease ran out more than `slack` ago by the store's own clock;
    /// candidates the stored heartbeat keeps live are reported. Callers pass bounded chunks.
    async fn expire(&self, candidates: &[Uuid], slack: Slack) -> Result<Expired, StoreError>;
    /// The stored `last_heartbeat` of each of `ids` that is not dead (any replica's flushes).
    async fn heartbeats(&self, ids: &[Uuid]) -> Result<Vec<StoredBeat>, StoreError>;
    /// Moves the compaction horizon to the newest change older than `retention` (by the
    /// database's clock) and collects the card versions no retained instance serves (other
    /// than each agent's latest), then deletes the change log up to it, the dead instances
    /// whose death it held and the card tombstones it passed.
    async fn compact(&self, retention: std::time::Duration) -> Result<Compacted, StoreError>;
    /// Publishes a card for an agent (namespace created if new): stored, or published again,
    /// at a new revision; it is the agent's latest from now on.
    async fn publish_card(
        &self,
        namespace: &str,
        logical_id: &str,
        card: Card,
    ) -> Result<Published, StoreError>;
    /// Counters about this store.
    fn stats(&self) -> &StoreStats;
    /// The changes above revision `after` from the change log — one row per revision, none
    /// skipped, at most `limit` instance rows — and every namespace changed since, as of one
    /// consistent snapshot; `last` is the highest revision committed in it (the last row's
    /// when the page is full) and `horizon` the compaction horizon. An `after` below the
    /// horizon is `Compacted`.
    async fn changes_since(&self, after: i64, limit: i64) -> Result<ChangeSet, StoreError>;
    /// Like `changes_since`, at most `limit` instance rows and no namespaces (for replaying a
    /// Watch); `last` is the last row's revision when the page is full.
    async fn changes_page(&self, after: i64, limit: i64) -> Result<ChangeSet, StoreError>;
    /// The current state: every retained instance and namespace as it is now (no history), as
    /// of one consistent snapshot, covering revisions `1..=last`.
    async fn snapshot(&self) -> Result<ChangeSet, StoreError>;
    /// Cheap round trip, for health.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Cheap write (one row rewritten), for health while writes fail: a read answering does
    /// not prove the store takes writes again.
    async fn probe_write(&self) -> Result<(), StoreError>;
    /// Closes the pools.
    async fn close(&self);
}

/// A duration in whole microseconds, saturating (for ages sent to the store).
pub(crate) fn micros_of(d: Duration) -> i64 {
    d.as_micros().min(i64::MAX as u128) as i64
}

/// The instant on this process's clock that a stored time `at` names, given that the store's
/// clock read `store_now` for a read that started at `read`: only the age, measured by the
/// store alone, crosses between the clocks. (Never later than `read`.)
pub(crate) fn local_instant(read: Instant, store_now: DateTime<Utc>, at: DateTime<Utc>) -> Instant {
    let age = (store_now - at).to_std().unwrap_or_default();
    read.checked_sub(age).unwrap_or(read)
}

/// Whose clock the store's times are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeSource {
    /// The database server's (`statement_timestamp()` on Postgres), so replicas with skewed
    /// clocks write and compare times on one clock. The production setting.
    #[default]
    Database,
    /// This process's ([`crate::domain::now`]). SQLite always uses it (the file has no clock of
    /// its own); on Postgres it is for tests that drive leases through tokio's paused clock,
    /// where virtual time must move the store's time too.
    Process,
}

/// Connection settings shared by both backends.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub max_connections: u32,
    /// The longest one statement, an idle transaction or a wait for a pooled connection may
    /// take (Postgres: `statement_timeout`, `idle_in_transaction_session_timeout`; the pool's
    /// acquire timeout; a wedged connection handed back is dropped after it).
    pub timeout: Duration,
    /// TCP keepalive idle time the database applies to each of our connections, so the
    /// sessions (and locks) of a replica that vanished are reaped.
    pub keepalive: Duration,
    pub time: TimeSource,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            timeout: Duration::from_secs(5),
            keepalive: Duration::from_secs(10),
            time: TimeSource::Database,
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
