//! The registry's use cases: validate input, write through the store, keep the index in step.
//!
//! Every write runs in a task of its own — registrations in the group-commit task
//! (`batcher`), other writes in one spawned per call — so a client that hangs up mid-call cannot
//! leave a committed change unapplied; the caller then waits until the index has caught up to
//! its own revision, which gives read-your-writes on this replica.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

pub use followers::Followers;

use crate::domain::{
    ChangeSet, DeathReason, Instance, InstanceFilter, Limits, NamespaceSummary, RegisterInput,
    RuleError, Transition, ValidationError, normalize_namespace, parse_uuid, validate_page_size,
    validate_register,
};
use crate::events::{Hub, WatchConfig};
use crate::index::{Index, Listed, Page, View};
use crate::liveness::{Liveness, LivenessConfig};
use crate::metrics::Metrics;
use crate::storage::{Guarded, Store, StoreError, StoreHealth};

/// Why a use case failed; mapped to a gRPC status in exactly one place (`api::status`).
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("{0} not found")]
    NotFound(String),
    #[error(transparent)]
    FailedPrecondition(#[from] RuleError),
    /// The store cannot be reached; safe to retry.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A watch cannot start (or go on) from the revision asked: re-list.
    #[error("{0}")]
    OutOfRange(String),
    /// A limit was hit (a watcher that fell too far behind).
    #[error("{0}")]
    ResourceExhausted(String),
    /// Details for the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for RegistryError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) | StoreError::Saturated(m) | StoreError::Conflict(m) => {
                Self::Unavailable(m)
            }
            StoreError::PoolTimedOut => Self::Unavailable(StoreError::PoolTimedOut.to_string()),
            StoreError::NotFound(m) => Self::NotFound(m),
            StoreError::Rule(r) => Self::FailedPrecondition(r),
            StoreError::Internal(m) => Self::Internal(m),
            StoreError::Compacted { horizon } => Self::OutOfRange(format!(
                "revision compacted: changes at or below {horizon} are no longer kept; re-list"
            )),
        }
    }
}

/// Discover's input after the API layer read it.
#[derive(Debug, Clone)]
pub struct DiscoverQuery {
    pub filter: InstanceFilter,
    pub view: View,
    pub page_size: i32,
    pub page_token: String,
}

mod batcher;
mod followers;

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

pub struct Registry {
    store: Arc<dyn Store>,
    /// Registrations go through the group-commit task.
    registrations: mpsc::Sender<batcher::Request>,
    followers: Arc<Followers>,
    index: Arc<Index>,
    liveness: Arc<Liveness>,
    limits: Limits,
    watch: WatchConfig,
}

impl Registry {
    /// Hydrates the index and the lease table from the store; every lease starts renewed now
    /// (the start-up grace).
    pub async fn open(
        store: Arc<dyn Store>,
        limits: Limits,
        liveness: LivenessConfig,
    ) -> Result<Self, RegistryError> {
        let watch = WatchConfig::default();
        Self::open_with(store, limits, liveness, watch, StoreGuard::default()).await
    }

    /// Like [`Registry::open`], with the watch and store settings given.
    pub async fn open_with(
        store: Arc<dyn Store>,
        limits: Limits,
        liveness: LivenessConfig,
        watch: WatchConfig,
        guard: StoreGuard,
    ) -> Result<Self, RegistryError> {
        let metrics = Arc::new(Metrics::default());
        let health = Arc::new(StoreHealth::new(guard.min_outage));
        let clock = store.clock().clone();
        let store: Arc<dyn Store> = Arc::new(Guarded::new(
            store,
            metrics.clone(),
            health.clone(),
            guard.timeout,
        ));
        let snapshot = store.snapshot().await?;
        let liveness = Arc::new(Liveness::new(liveness, health, clock));
        liveness.hydrate(snapshot.instances.iter());
        let index = Arc::new(Index::default());
        let revision = index.apply(snapshot);
        let hub = Arc::new(Hub::new(watch.history, watch.buffer, revision));
        let followers = Arc::new(Followers {
            store: store.clone(),
            index: index.clone(),
            liveness: liveness.clone(),
            hub,
            poke: tokio::sync::Notify::new(),
            committed: tokio::sync::watch::Sender::new(revision),
            rung: Default::default(),
            catching_up: Default::default(),
            catch_ups_started: Default::default(),
            catch_up_done: Default::default(),
            caught_up_at: std::sync::Mutex::new(tokio::time::Instant::now()),
            metrics,
        });
        let (registrations, queue) = mpsc::channel(4 * 1024);
        tokio::spawn(batcher::run(store.clone(), followers.clone(), queue));
        Ok(Self {
            registrations,
            store,
            followers,
            index,
            liveness,
            limits,
            watch,
        })
    }

    pub fn followers(&self) -> &Arc<Followers> {
        &self.followers
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.followers.metrics
    }

    pub fn watch_config(&self) -> &WatchConfig {
        &self.watch
    }

    pub fn liveness(&self) -> &Arc<Liveness> {
        &self.liveness
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn index(&self) -> &Arc<Index> {
        &self.index
    }

    /// What an agent should use: a third of its lease (SPEC §4.2), raised under load.
    pub fn heartbeat_interval(&self, lease_ttl: Duration) -> Duration {
        self.liveness.heartbeat_interval(lease_ttl)
    }

    /// Runs a store write in its own task, applies its changes, then waits for read-your-writes.
    async fn write<T, F>(&self, op: F) -> Result<T, RegistryError>
    where
        T: Send + 'static,
        F: Future<Output = Result<(T, ChangeSet), StoreError>> + Send + 'static,
    {
        let followers = self.followers.clone();
        let task = tokio::spawn(tracing::Instrument::in_current_span(async move {
            let (out, changes) = op.await?;
            let last = changes.last;
            followers.committed(changes);
            Ok::<_, StoreError>((out, last))
        }));
        let (out, last) = task
            .await
            .map_err(|e| RegistryError::Internal(format!("write task failed: {e}")))??;
        self.read_your_writes(last).await;
        Ok(out)
    }

    /// Read-your-writes: waits until the index holds `revision` (best effort).
    async fn read_your_writes(&self, revision: i64) {
        self.followers.catch_up_to(revision).await;
    }

    /// Applies every change the store holds beyond the index.
    pub async fn catch_up(&self) -> Result<(), RegistryError> {
        Ok(self.followers.catch_up().await?)
    }

    /// Applies the outcome of a sweep (already committed by the store).
    pub(crate) fn apply_committed(&self, changes: ChangeSet) {
        self.followers.committed(changes);
    }

    pub async fn register(&self, input: RegisterInput) -> Result<Instance, RegistryError> {
        let new = validate_register(input, &self.limits)?;
        let (reply, answer) = oneshot::channel();
        let request = batcher::Request { new, reply };
        let gone = || RegistryError::Internal("the registration queue is closed".into());
        self.registrations.send(request).await.map_err(|_| gone())?;
        let (admitted, last) = answer.await.map_err(|_| gone())??;
        let done = admitted?;
        self.read_your_writes(last).await;
        if done.retried {
            self.index
                .renew(done.instance.instance_id, done.instance.last_heartbeat);
            // The lease may be missing here (first seen through the store): a retry must leave
            // the agent a lease — judged on the index's current row, under its lock, so a death
            // applied meanwhile is never undone.
            self.index.with_current(done.instance.instance_id, |now| {
                self.liveness.ensure_lease(&now.row, now.last_heartbeat)
            });
            self.liveness.renew(done.instance.instance_id);
        }
        Ok(done.instance)
    }

    async fn transition(
        &self,
        id: &str,
        t: Transition,
        reason: &str,
    ) -> Result<Instance, RegistryError> {
        let id = parse_uuid("instance_id", id)?;
        self.transition_id(id, t, reason).await
    }

    /// A status change an agent reported on its heartbeat stream; durable when this returns.
    pub async fn report_status(&self, id: Uuid, t: Transition) -> Result<Instance, RegistryError> {
        self.transition_id(id, t, "reported by the agent").await
    }

    async fn transition_id(
        &self,
        id: Uuid,
        t: Transition,
        reason: &str,
    ) -> Result<Instance, RegistryError> {
        let store = self.store.clone();
        let done = self
            .write(async move {
                let r = store.transition(id, t).await?;
                Ok((r.instance, r.changes))
            })
            .await?;
        tracing::info!(instance_id = %id, transition = ?t, reason, "instance transition");
        Ok(done)
    }

    pub async fn deregister(&self, id: &str, reason: &str) -> Result<Instance, RegistryError> {
        self.transition(id, Transition::Kill(DeathReason::Deregistered), reason)
            .await
    }

    pub async fn drain(&self, id: &str, reason: &str) -> Result<Instance, RegistryError> {
        self.transition(id, Transition::Drain, reason).await
    }

    pub async fn evict(&self, id: &str, reason: &str) -> Result<Instance, RegistryError> {
        self.transition(id, Transition::Kill(DeathReason::Evicted), reason)
            .await
    }

    /// Advances the epoch; returns the namespace as it now is and how many instances were fenced.
    pub async fn advance_epoch(
        &self,
        namespace: &str,
    ) -> Result<(NamespaceSummary, u64), RegistryError> {
        let name = required_namespace("namespace", namespace)?;
        let store = self.store.clone();
        let target = name.clone();
        let fenced = self
            .write(async move {
                let r = store.advance_epoch(&target).await?;
                Ok((r.fenced, r.changes))
            })
            .await?;
        tracing::warn!(namespace = %name, fenced, "epoch advanced");
        Ok((self.namespace("namespace", &name)?, fenced))
    }

    /// The instance `id` names as this replica knows it, or after catching up with the store's
    /// log (one registered a moment ago through another replica); `None` if no replica has it.
    /// Access checks use it: an instance's namespace and owner never change.
    pub async fn locate(&self, id: &str) -> Result<Option<Listed>, RegistryError> {
        let id: Uuid = parse_uuid("instance_id", id)?;
        if let Some(found) = self.index.get(id) {
            return Ok(Some(found));
        }
        self.catch_up().await?;
        Ok(self.index.get(id))
    }

    pub fn get_instance(&self, id: &str) -> Result<Listed, RegistryError> {
        let id: Uuid = parse_uuid("instance_id", id)?;
        self.index
            .get(id)
            .ok_or_else(|| RegistryError::NotFound(format!("instance_id {id}")))
    }

    pub fn discover(&self, q: &DiscoverQuery) -> Result<Page<Listed>, RegistryError> {
        let size = validate_page_size(q.page_size)?;
        // Stored times are the store's: LIVE is judged on its clock, as the SQL views do.
        let now = self.store.clock().now();
        Ok(self
            .index
            .discover(&q.filter, q.view, size, &q.page_token, now)?)
    }

    /// One namespace; `field` names the request field that carried its name.
    pub fn namespace(&self, field: &str, name: &str) -> Result<NamespaceSummary, RegistryError> {
        let name = required_namespace(field, name)?;
        self.index
            .namespace(&name, self.store.clock().now())
            .ok_or_else(|| RegistryError::NotFound(format!("namespace {name}")))
    }

    pub fn namespaces(
        &self,
        page_size: i32,
        page_token: &str,
        visible: &dyn Fn(&str) -> bool,
    ) -> Result<Page<NamespaceSummary>, RegistryError> {
        let size = validate_page_size(page_size)?;
        let now = self.store.clock().now();
        Ok(self.index.namespaces(size, page_token, now, visible)?)
    }
}

/// Admin calls name their namespace explicitly: an empty one is not silently `default`.
fn required_namespace(field: &str, name: &str) -> Result<String, ValidationError> {
    if name.is_empty() {
        return Err(ValidationError {
            field: field.into(),
            message: "is required".into(),
        });
    }
    normalize_namespace(field, name)
}
