//! The applier: the one place that feeds committed changes, in revision order, to everything on
//! this replica that follows them — the index, the leases and their streams, the watch hub —
//! whether a change was committed here or read back from the store's change log (catch-up).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::common::lock;
use crate::domain::ChangeSet;
use crate::events::{Doorbell, Hub};
use crate::index::Index;
use crate::liveness::Liveness;
use crate::metrics::Metrics;
use crate::storage::{CATCH_UP_PAGE, Store, StoreError};

/// How long a writer waits for an earlier revision (another replica's, or a concurrent write
/// here) before it reads the gap back from the store itself.
const GAP_WAIT: Duration = Duration::from_millis(500);

pub struct Applier {
    pub(super) store: Arc<dyn Store>,
    pub(super) index: Arc<Index>,
    pub(super) liveness: Arc<Liveness>,
    pub(super) hub: Arc<Hub>,
    /// Shared with the change feed and the Redis bell.
    pub(super) doorbell: Arc<Doorbell>,
    /// One catch-up at a time: concurrent callers would read the same changes twice, and two
    /// rebuilds could race each other.
    catching_up: tokio::sync::Mutex<()>,
    /// Catch-ups begun (each takes the next number when it starts reading)…
    catch_ups_started: AtomicU64,
    /// …and the number of the last one that succeeded: callers waiting on the lock while a
    /// catch-up that began after they asked succeeded need not read again (lookups of unknown
    /// ids coalesce instead of queueing one store read each).
    catch_up_done: AtomicU64,
    /// When a catch-up last found this replica current (for the feed-lag metric).
    caught_up_at: std::sync::Mutex<tokio::time::Instant>,
    pub(super) metrics: Arc<Metrics>,
}

impl Applier {
    pub(super) fn new(
        store: Arc<dyn Store>,
        index: Arc<Index>,
        liveness: Arc<Liveness>,
        hub: Arc<Hub>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let doorbell = Arc::new(Doorbell::new(index.clone(), index.revision()));
        Self {
            store,
            index,
            liveness,
            hub,
            doorbell,
            catching_up: Default::default(),
            catch_ups_started: Default::default(),
            catch_up_done: Default::default(),
            caught_up_at: std::sync::Mutex::new(tokio::time::Instant::now()),
            metrics,
        }
    }

    /// Applies changes in revision order: leases and streams follow each row, watchers hear it.
    pub fn apply(&self, changes: ChangeSet) {
        if changes.is_empty() && changes.horizon == 0 {
            return;
        }
        // The last card revision of each namespace the set touches, announced once applied.
        let mut cards: Vec<(&str, i64)> = Vec::new();
        for c in &changes.cards {
            match cards.iter_mut().find(|(ns, _)| *ns == c.namespace) {
                Some(seen) => seen.1 = seen.1.max(c.revision),
                None => cards.push((&c.namespace, c.revision)),
            }
        }
        let cards: Vec<(String, i64)> = cards.into_iter().map(|(n, r)| (n.to_owned(), r)).collect();
        let through = self.index.apply_observed(changes, &mut |row| {
            self.liveness.observe(row);
            self.hub.publish(row);
        });
        for (namespace, revision) in cards {
            self.hub.catalog(&namespace, revision);
        }
        self.hub.through(through);
    }

    /// Applies changes this replica committed, and lets other replicas know.
    pub fn committed(&self, changes: ChangeSet) {
        if changes.is_empty() {
            return;
        }
        let last = changes.last;
        self.apply(changes);
        self.doorbell.note_committed(last);
    }

    /// Reads and applies every change the store holds beyond the index (a page at a time). A
    /// replica that fell behind the compaction horizon rebuilds from a snapshot and cuts its
    /// watchers off (they must re-list: the changes in between are gone).
    pub async fn catch_up(&self) -> Result<(), StoreError> {
        let asked = self.catch_ups_started.load(Ordering::SeqCst);
        let _one = self.catching_up.lock().await;
        if self.catch_up_done.load(Ordering::SeqCst) > asked {
            // One that began after this call asked has read everything committed before.
            return Ok(());
        }
        let ticket = self.catch_ups_started.fetch_add(1, Ordering::SeqCst) + 1;
        loop {
            match self
                .store
                .changes_since(self.index.revision(), CATCH_UP_PAGE)
                .await
            {
                Ok(changes) => {
                    let full = changes.instances.len() as i64 >= CATCH_UP_PAGE;
                    self.apply(changes);
                    if !full {
                        break;
                    }
                }
                Err(StoreError::Compacted { horizon }) => {
                    self.rebuild(horizon).await?;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        self.catch_up_done.fetch_max(ticket, Ordering::SeqCst);
        *lock(&self.caught_up_at) = tokio::time::Instant::now();
        Ok(())
    }

    async fn rebuild(&self, horizon: i64) -> Result<(), StoreError> {
        tracing::error!(
            horizon,
            applied = self.index.revision(),
            "this replica fell behind the change log's horizon; rebuilding from a snapshot"
        );
        let snapshot = self.store.snapshot().await?;
        let living: std::collections::HashSet<_> = snapshot
            .instances
            .iter()
            .filter(|i| i.death_reason.is_none())
            .map(|i| i.instance_id)
            .collect();
        // Under the index lock, before anything newer is applied: watchers are cut off, and
        // leases of instances collected meanwhile go (the guard would otherwise count them as
        // losses for ever).
        self.index.reset(
            snapshot,
            &mut |row| self.liveness.follow_snapshot(row),
            &mut |revision| {
                self.liveness.retain_leases(&living);
                self.hub.reset(revision);
            },
        );
        Ok(())
    }

    /// How long since a catch-up last found this replica current (0 right after one).
    pub fn lag(&self) -> Duration {
        lock(&self.caught_up_at).elapsed()
    }

    /// Waits until the index holds `revision`: the change feed is woken at once, and if the gap
    /// stays open the store is read here. Best effort — the write is committed, so a failure
    /// here must not fail the call.
    pub async fn catch_up_to(&self, revision: i64) {
        if self.index.revision() >= revision {
            return;
        }
        self.doorbell.poke.notify_one();
        if !self.index.wait_for(revision, GAP_WAIT).await
            && let Err(e) = self.catch_up().await
        {
            tracing::warn!(error = %e, "catching the index up after a write failed");
        }
    }
}
