//! What the change feed and the Redis bell share on one replica: a poke that makes the feed
//! read the store's log at once, the latest revision committed here (for the bell to announce),
//! and how many announcements from other replicas were heard.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Notify, watch};

use crate::index::Index;

pub struct Doorbell {
    /// Wakes the change feed before its next poll.
    pub poke: Notify,
    /// The latest revision committed by this replica.
    pub committed: watch::Sender<i64>,
    /// Times another replica's announcement was heard.
    rung: AtomicU64,
    /// What this replica has applied: an announcement at or below it needs no read.
    index: Arc<Index>,
}

impl Doorbell {
    pub fn new(index: Arc<Index>, committed: i64) -> Self {
        Self {
            poke: Notify::new(),
            committed: watch::Sender::new(committed),
            rung: AtomicU64::new(0),
            index,
        }
    }

    /// Records a revision committed here (never moves back).
    pub fn note_committed(&self, last: i64) {
        self.committed.send_if_modified(|r| {
            let moved = *r < last;
            *r = (*r).max(last);
            moved
        });
    }

    /// Another replica announced `revision`: wake the feed if this replica lacks it.
    pub fn heard(&self, revision: i64) {
        self.rung.fetch_add(1, Ordering::Relaxed);
        if revision > self.index.revision() {
            self.poke.notify_one();
        }
    }

    pub fn rings_heard(&self) -> u64 {
        self.rung.load(Ordering::Relaxed)
    }
}
