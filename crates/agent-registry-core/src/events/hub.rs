//! The replica's fan-out point for instance changes: a bounded history for resuming watchers
//! and a broadcast channel for live ones.
//!
//! Every instance row the index applies is published here by the applier, in revision order,
//! while the index's write lock is held (`Index::apply_observed`); so a watcher that subscribes while holding the index's read lock (a snapshot) or
//! this hub's lock (a resume) sees each later change exactly once, in order.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::domain::Instance;

/// What a watcher receives.
#[derive(Debug, Clone)]
pub enum Item {
    /// One instance row as of its revision.
    Change(Arc<Instance>),
    /// Every change up to this revision has been published.
    Through(i64),
    /// The namespace's agent cards changed at this revision (published or collected), after
    /// the instance rows of the same change set. A hint, kept in no history: a watcher
    /// resuming later learns the revision from its bookmark.
    Catalog { namespace: Arc<str>, revision: i64 },
    /// The index was rebuilt from a snapshot (it fell behind the compaction horizon): changes
    /// were skipped and watchers must re-list.
    Reset,
}

#[derive(Debug)]
struct History {
    rows: VecDeque<Arc<Instance>>,
    /// Every change above this revision that was published is in `rows`.
    complete_after: i64,
}

#[derive(Debug)]
pub struct Hub {
    history: Mutex<History>,
    capacity: usize,
    live: broadcast::Sender<Item>,
}

/// A watcher's place in the feed: what it missed (when the history still holds it) and the
/// live changes from here on.
pub struct Subscription {
    /// Changes after the requested revision, or `None` when the history no longer reaches back
    /// that far (read them from the store's change log).
    pub backlog: Option<Vec<Arc<Instance>>>,
    pub live: broadcast::Receiver<Item>,
}

impl Hub {
    /// `history` changes are kept for resuming watchers; a live watcher may fall `buffer`
    /// items behind before it is cut off.
    pub fn new(history: usize, buffer: usize, revision: i64) -> Self {
        Self {
            history: Mutex::new(History {
                rows: VecDeque::with_capacity(history.min(4096)),
                complete_after: revision,
            }),
            capacity: history.max(1),
            live: broadcast::Sender::new(buffer.max(1)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, History> {
        crate::common::lock(&self.history)
    }

    /// Publishes one applied row. Called by the index in revision order, under its write lock.
    pub fn publish(&self, row: &Arc<Instance>) {
        let mut h = self.lock();
        if h.rows.len() == self.capacity
            && let Some(old) = h.rows.pop_front()
        {
            h.complete_after = old.revision;
        }
        h.rows.push_back(row.clone());
        // No receivers is not an error: nobody is watching.
        let _ = self.live.send(Item::Change(row.clone()));
    }

    /// Announces progress: everything up to `revision` is published.
    pub fn through(&self, revision: i64) {
        let _h = self.lock();
        let _ = self.live.send(Item::Through(revision));
    }

    /// Announces that `namespace`'s cards changed at `revision`.
    pub fn catalog(&self, namespace: &str, revision: i64) {
        let _h = self.lock();
        let _ = self.live.send(Item::Catalog {
            namespace: namespace.into(),
            revision,
        });
    }

    /// Forgets the history after a rebuild at `revision` and tells every watcher to re-list.
    pub fn reset(&self, revision: i64) {
        let mut h = self.lock();
        h.rows.clear();
        h.complete_after = revision;
        let _ = self.live.send(Item::Reset);
    }

    /// Subscribes from `after`: the history's changes above it (if it reaches back that far)
    /// and every change published from now on.
    pub fn subscribe(&self, after: i64) -> Subscription {
        let h = self.lock();
        let backlog = (after >= h.complete_after).then(|| {
            let start = h.rows.partition_point(|r| r.revision <= after);
            h.rows.range(start..).cloned().collect()
        });
        Subscription {
            backlog,
            live: self.live.subscribe(),
        }
    }

    /// Subscribes to live changes only; the caller holds the index's read lock, so nothing is
    /// published between its snapshot and this.
    pub fn subscribe_live(&self) -> broadcast::Receiver<Item> {
        let _h = self.lock();
        self.live.subscribe()
    }

    /// Open watch subscriptions.
    pub fn watchers(&self) -> usize {
        self.live.receiver_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(revision: i64) -> Arc<Instance> {
        Arc::new(Instance {
            instance_id: uuid::Uuid::from_u128(revision as u128),
            revision,
            ..Instance::sample(&format!("a{revision}"))
        })
    }

    #[test]
    fn the_history_serves_resumes_only_as_far_back_as_it_is_complete() {
        let hub = Hub::new(3, 16, 10);
        assert_eq!(hub.subscribe(10).backlog.unwrap().len(), 0);
        assert!(hub.subscribe(9).backlog.is_none(), "before the hub started");
        for r in [11, 13, 14, 15] {
            hub.publish(&row(r));
        }
        // 11 was evicted: 12 (a namespace revision, say) and later are complete.
        assert!(hub.subscribe(10).backlog.is_none());
        let revs = |after| -> Vec<i64> {
            hub.subscribe(after)
                .backlog
                .unwrap()
                .iter()
                .map(|r| r.revision)
                .collect()
        };
        assert_eq!(revs(11), vec![13, 14, 15]);
        assert_eq!(revs(13), vec![14, 15]);
        assert_eq!(revs(15), Vec::<i64>::new());
    }

    #[test]
    fn a_reset_empties_the_history_and_tells_live_watchers() {
        let hub = Hub::new(8, 16, 0);
        let mut live = hub.subscribe_live();
        hub.publish(&row(1));
        hub.reset(5);
        assert!(matches!(live.try_recv(), Ok(Item::Change(_))));
        assert!(matches!(live.try_recv(), Ok(Item::Reset)));
        assert!(hub.subscribe(1).backlog.is_none());
        assert_eq!(hub.subscribe(5).backlog.unwrap().len(), 0);
    }
}
