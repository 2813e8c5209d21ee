//! A registry without gRPC, with its flusher and sweeper running, for paused-clock tests.
//!
//! With tokio's clock paused, a task waiting on real I/O leaves the runtime idle and virtual
//! time would race ahead through every pending timer. So the store is wrapped to count calls in
//! flight, and the test moves time only in small steps taken while no store call is running:
//! a store round trip then costs at most one step of virtual time, as on a fast database.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agent_registry_core::domain::{
    ChangeSet, Instance, InstanceStatus, NewInstance, RegisterInput, StoreClock, Transition,
};
use agent_registry_core::liveness::LivenessConfig;
use agent_registry_core::registry::{Registry, SessionError, Settings, StoreGuard};
use agent_registry_core::storage::{
    self, Advanced, Compacted, Expired, Flushed, RegisteredBatch, Slack, Store, StoreError,
    StoreOptions, StoreStats, StoredBeat, TimeSource, Transitioned,
};
use async_trait::async_trait;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

/// The real store, counting the calls in flight.
struct Tracked {
    inner: Arc<dyn Store>,
    in_flight: Arc<AtomicUsize>,
}

struct Guard(Arc<AtomicUsize>);
impl Drop for Guard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Tracked {
    fn enter(&self) -> Guard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Guard(self.in_flight.clone())
    }
}

#[async_trait]
impl Store for Tracked {
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
        let _g = self.enter();
        self.inner.register_batch(news).await
    }
    async fn transition(&self, id: Uuid, t: Transition) -> Result<Transitioned, StoreError> {
        let _g = self.enter();
        self.inner.transition(id, t).await
    }
    async fn advance_epoch(&self, namespace: &str) -> Result<Advanced, StoreError> {
        let _g = self.enter();
        self.inner.advance_epoch(namespace).await
    }
    async fn flush_heartbeats(&self, beats: &[(Uuid, Instant)]) -> Result<Flushed, StoreError> {
        let _g = self.enter();
        self.inner.flush_heartbeats(beats).await
    }
    async fn expire(&self, candidates: &[Uuid], slack: Slack) -> Result<Expired, StoreError> {
        let _g = self.enter();
        self.inner.expire(candidates, slack).await
    }
    async fn heartbeats(&self, ids: &[Uuid]) -> Result<Vec<StoredBeat>, StoreError> {
        let _g = self.enter();
        self.inner.heartbeats(ids).await
    }
    async fn compact(&self, retention: Duration) -> Result<Compacted, StoreError> {
        let _g = self.enter();
        self.inner.compact(retention).await
    }
    async fn publish_card(
        &self,
        namespace: &str,
        logical_id: &str,
        card: agent_registry_core::domain::card::Card,
    ) -> Result<agent_registry_core::storage::Published, StoreError> {
        let _g = self.enter();
        self.inner.publish_card(namespace, logical_id, card).await
    }
    fn stats(&self) -> &StoreStats {
        self.inner.stats()
    }
    async fn changes_since(&self, after: i64, limit: i64) -> Result<ChangeSet, StoreError> {
        let _g = self.enter();
        self.inner.changes_since(after, limit).await
    }
    async fn changes_page(&self, after: i64, limit: i64) -> Result<ChangeSet, StoreError> {
        let _g = self.enter();
        self.inner.changes_page(after, limit).await
    }
    async fn snapshot(&self) -> Result<ChangeSet, StoreError> {
        let _g = self.enter();
        self.inner.snapshot().await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        let _g = self.enter();
        self.inner.ping().await
    }
    async fn probe_write(&self) -> Result<(), StoreError> {
        let _g = self.enter();
        self.inner.probe_write().await
    }
    async fn close(&self) {
        let _g = self.enter();
        self.inner.close().await
    }
}

/// Runs `f` to completion without letting virtual time move while it waits on I/O.
pub async fn settle<T: Send + 'static>(f: impl Future<Output = T> + Send + 'static) -> T {
    let task = tokio::spawn(f);
    while !task.is_finished() {
        tokio::task::yield_now().await;
    }
    task.await.expect("settled task")
}

pub struct Node {
    pub registry: Arc<Registry>,
    /// The node's store (its calls count as in flight), for reading what is stored.
    pub store: Arc<dyn Store>,
    in_flight: Arc<AtomicUsize>,
    stop: tokio_util::sync::CancellationToken,
    loops: Vec<JoinHandle<()>>,
}

impl Node {
    pub async fn start(url: &str, config: LivenessConfig) -> Node {
        Self::start_guarded(url, config, StoreGuard::default()).await
    }

    /// Like [`Node::start`], with the store's timeout and minimum outage given.
    pub async fn start_guarded(url: &str, config: LivenessConfig, guard: StoreGuard) -> Node {
        Self::start_with(url, config, guard, Arc::new(AtomicUsize::new(0))).await
    }

    /// A second replica on the same store: time advanced through either waits for the store
    /// calls of both.
    pub async fn start_beside(&self, url: &str, config: LivenessConfig) -> Node {
        Self::start_with(url, config, StoreGuard::default(), self.in_flight.clone()).await
    }

    async fn start_with(
        url: &str,
        config: LivenessConfig,
        guard: StoreGuard,
        in_flight: Arc<AtomicUsize>,
    ) -> Node {
        let url = url.to_string();
        let counter = in_flight.clone();
        let (registry, store) = settle(async move {
            // Virtual time must move the store's clock too: the process's clock is its clock.
            let options = StoreOptions {
                time: TimeSource::Process,
                timeout: guard.timeout,
                ..StoreOptions::default()
            };
            let inner = storage::open(&url, &options).await.expect("open store");
            let store: Arc<dyn Store> = Arc::new(Tracked {
                inner,
                in_flight: counter,
            });
            let settings = Settings {
                liveness: config,
                store: guard,
                ..Settings::default()
            };
            let registry = Registry::open(store.clone(), settings).await;
            (Arc::new(registry.expect("hydrate")), store)
        })
        .await;
        let stop = tokio_util::sync::CancellationToken::new();
        let loops = vec![
            tokio::spawn(registry.flusher().run(stop.clone())),
            tokio::spawn(registry.sweeper().run(stop.clone())),
        ];
        Node {
            registry,
            store,
            in_flight,
            stop,
            loops,
        }
    }

    /// A test database on `backend`, a node on it, and tokio's clock paused from here on.
    /// `None` when the backend is unavailable (the skip has been announced).
    pub async fn paused(
        backend: crate::support::Backend,
        config: LivenessConfig,
    ) -> Option<(crate::support::TestDb, Node)> {
        let db = crate::support::TestDb::new(backend).await?;
        let node = Node::start(&db.url, config).await;
        tokio::time::pause();
        Some((db, node))
    }

    /// Whether every one of `instances` is ALIVE.
    pub fn all_alive(&self, instances: &[Instance]) -> bool {
        instances
            .iter()
            .all(|i| self.status(i) == InstanceStatus::Alive)
    }

    pub async fn stop(self) {
        self.stop.cancel();
        let (loops, registry) = (self.loops, self.registry);
        settle(async move {
            for l in loops {
                l.await.unwrap();
            }
            registry.close().await;
        })
        .await;
    }

    /// Ends the node as a killed process would: its loops stop where they are, with no final
    /// flush, and nothing it acknowledged but did not write reaches the store.
    pub async fn kill(self) {
        for l in &self.loops {
            l.abort();
        }
        for l in self.loops {
            let _ = settle(l).await;
        }
    }

    /// Moves virtual time forward by `d`, in steps taken only while the store is idle.
    pub async fn advance(&self, d: Duration) {
        let until = tokio::time::Instant::now() + d;
        loop {
            while self.in_flight.load(Ordering::SeqCst) > 0 {
                tokio::task::yield_now().await;
            }
            let now = tokio::time::Instant::now();
            if now >= until {
                return;
            }
            tokio::time::sleep((until - now).min(Duration::from_millis(20))).await;
        }
    }

    /// Advances until `cond` holds, failing after `within`.
    pub async fn eventually(&self, what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + within;
        while !cond() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: not within {within:?}"
            );
            self.advance(Duration::from_millis(100)).await;
        }
    }

    pub async fn register(&self, namespace: &str, logical_id: &str) -> Instance {
        self.register_leased(namespace, logical_id, None).await
    }

    /// Registers `logical_id` ready, with a lease of `lease` (the server's default if `None`).
    async fn register_leased(
        &self,
        namespace: &str,
        logical_id: &str,
        lease: Option<Duration>,
    ) -> Instance {
        let input = RegisterInput {
            namespace: namespace.into(),
            logical_id: logical_id.into(),
            ready: true,
            lease_ttl: lease.map(Ok),
            ..Default::default()
        };
        let registry = self.registry.clone();
        settle(async move { registry.register(input).await.expect("register") }).await
    }

    /// Registers `count` instances `agent-N` in `namespace`.
    pub async fn fleet(&self, namespace: &str, count: usize) -> Vec<Instance> {
        let mut fleet = Vec::with_capacity(count);
        for n in 0..count {
            fleet.push(self.register(namespace, &format!("agent-{n}")).await);
        }
        fleet
    }

    /// Like [`Node::fleet`], each instance holding a lease of `lease`.
    pub async fn fleet_with_lease(
        &self,
        namespace: &str,
        count: usize,
        lease: Duration,
    ) -> Vec<Instance> {
        let mut fleet = Vec::with_capacity(count);
        for n in 0..count {
            let id = format!("agent-{n}");
            fleet.push(self.register_leased(namespace, &id, Some(lease)).await);
        }
        fleet
    }

    /// The server's store probe (a ping, or a write while writes fail) every `every`, as a
    /// replica runs it beside its loops; it ends with the node.
    pub fn probe_store(&mut self, every: Duration) {
        let probe = self
            .registry
            .clone()
            .run_store_probe(every, self.stop.clone());
        self.loops.push(tokio::spawn(probe));
    }

    pub fn status(&self, i: &Instance) -> InstanceStatus {
        self.registry
            .get_instance(&i.instance_id.to_string())
            .unwrap()
            .status
    }

    /// An agent that beats every `every` and, like a real one, opens a new stream when the
    /// replica refuses one (UNAVAILABLE), until aborted. Counts acknowledged and refused beats.
    pub fn resilient_agent(&self, i: &Instance, every: Duration) -> (JoinHandle<()>, Arc<Beats>) {
        let (registry, id) = (self.registry.clone(), i.instance_id.to_string());
        let beats = Arc::new(Beats::default());
        let counts = beats.clone();
        let task = tokio::spawn(async move {
            let mut seq = 0;
            loop {
                match registry.open_session(&id).await {
                    Ok(mut session) => loop {
                        seq += 1;
                        match session.beat(seq, None).await {
                            Ok(_) => counts.acked.fetch_add(1, Ordering::SeqCst),
                            Err(SessionError::Unavailable(_)) => break,
                            Err(e) => panic!("beat {seq}: {e}"),
                        };
                        tokio::time::sleep(every).await;
                    },
                    Err(SessionError::Unavailable(_)) => {}
                    Err(e) => panic!("opening the stream: {e}"),
                }
                counts.refused.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(every).await;
            }
        });
        (task, beats)
    }

    /// An agent that beats every `every` until aborted; aborting it ends its stream.
    pub fn agent(&self, i: &Instance, every: Duration) -> JoinHandle<()> {
        let (registry, id) = (self.registry.clone(), i.instance_id.to_string());
        tokio::spawn(async move {
            let mut session = registry.open_session(&id).await.expect("open session");
            for seq in 1.. {
                session
                    .beat(seq, None)
                    .await
                    .expect("every beat is acknowledged");
                tokio::time::sleep(every).await;
            }
        })
    }
}

/// What a resilient agent saw.
#[derive(Debug, Default)]
pub struct Beats {
    pub acked: AtomicUsize,
    /// Streams the replica refused or ended with UNAVAILABLE.
    pub refused: AtomicUsize,
}
