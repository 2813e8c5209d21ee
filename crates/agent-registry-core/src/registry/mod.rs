//! The registry's use cases — what every front end calls: register, report a status, drain,
//! evict, deregister, advance an epoch, hold a heartbeat stream, discover, watch — and the
//! narrow handles its background loops run on. It validates input, writes through the store and
//! keeps everything that follows committed changes in step (the [`Applier`]).
//!
//! Every write runs in a task of its own — registrations in the group-commit task
//! (`batcher`), other writes in one spawned per call — so a client that hangs up mid-call cannot
//! leave a committed change unapplied; the caller then waits until the index has caught up to
//! its own revision, which gives read-your-writes on this replica.

mod applier;
mod batcher;
mod catalog;
mod changes;
mod error;
mod expiry;
mod feed;
mod outbox;
mod reads;
mod replica;
mod retention;
mod session;
mod watch;
mod writes;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::domain::LeaseBounds;
use crate::events::Hub;
use crate::index::Index;
use crate::liveness::{Liveness, LivenessConfig};
use crate::metrics::Metrics;
use crate::storage::{Guarded, Store, StoreHealth};

/// What front ends name in their answers, from the layers below.
pub use crate::index::{
    AgentHit, AgentPage, AgentQuery, AgentView, CardVersion, Listed, Page, View,
};
pub use crate::liveness::{Directive, StreamStop};
pub use crate::metrics::{Readings, Source};
pub use applier::Applier;
pub use changes::{Changed, Changes};
pub use error::RegistryError;
pub use feed::{Feed, FeedConfig};
pub use outbox::Outbox;
pub use reads::{DiscoverQuery, Serving};
pub use replica::{Loops, ReplicaHealth};
pub use retention::Retention;
pub use session::{Ack, Directives, Session, SessionError};
pub use watch::{Output, WatchConfig, Watcher};

/// How the registry reaches its store: every call bounded by `timeout`; failure runs shorter
/// than `min_outage` are blips (no grace).
#[derive(Debug, Clone)]
pub struct StoreGuard {
    pub timeout: Duration,
    pub min_outage: Duration,
}

impl Default for StoreGuard {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            min_outage: Duration::from_secs(3),
        }
    }
}

/// Everything the use cases and loops are tuned by (`ServeArgs::settings` reads it from flags).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub lease_bounds: LeaseBounds,
    pub liveness: LivenessConfig,
    pub watch: WatchConfig,
    pub feed: FeedConfig,
    pub store: StoreGuard,
    pub catalog: CatalogConfig,
}

/// How cards are taken.
#[derive(Debug, Clone)]
pub struct CatalogConfig {
    /// The largest card accepted, in bytes (`--max-card-size`).
    pub max_card_bytes: usize,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            max_card_bytes: crate::domain::card::DEFAULT_MAX_CARD_BYTES,
        }
    }
}

pub struct Registry {
    /// The store behind its guard: every call bounded, every outcome reported to its health.
    store: Arc<dyn Store>,
    /// Registrations go through the group-commit task.
    registrations: mpsc::Sender<batcher::Request>,
    applier: Arc<Applier>,
    index: Arc<Index>,
    liveness: Arc<Liveness>,
    metrics: Arc<Metrics>,
    settings: Settings,
}

impl Registry {
    /// Hydrates the index and the lease table from the store; every lease starts renewed now
    /// (the start-up grace).
    pub async fn open(store: Arc<dyn Store>, settings: Settings) -> Result<Self, RegistryError> {
        let metrics = Arc::new(Metrics::default());
        let health = Arc::new(StoreHealth::new(settings.store.min_outage));
        let clock = store.clock().clone();
        let store: Arc<dyn Store> = Arc::new(Guarded::new(
            store,
            metrics.clone(),
            health.clone(),
            settings.store.timeout,
        ));
        let snapshot = store.snapshot().await?;
        let liveness = Arc::new(Liveness::new(settings.liveness.clone(), health, clock));
        liveness.hydrate(snapshot.instances.iter());
        let index = Arc::new(Index::default());
        let revision = index.apply(snapshot);
        let hub = Arc::new(Hub::new(
            settings.watch.history,
            settings.watch.buffer,
            revision,
        ));
        let applier = Arc::new(Applier::new(
            store.clone(),
            index.clone(),
            liveness.clone(),
            hub,
            metrics.clone(),
        ));
        let (registrations, queue) = mpsc::channel(4 * 1024);
        tokio::spawn(batcher::run(store.clone(), applier.clone(), queue));
        Ok(Self {
            store,
            registrations,
            applier,
            index,
            liveness,
            metrics,
            settings,
        })
    }

    /// The instruments front ends record into (gRPC calls) and `/metrics` serves.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}
