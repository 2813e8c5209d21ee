//! Open heartbeat streams: at most one per instance, each reachable for server-pushed directives.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;
use uuid::Uuid;

use crate::common::{Shard, ShardedMap};

/// What the server tells an open stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Directive {
    /// An operator drained the instance.
    Drain,
    /// The instance is dead or fenced: register again; the stream ends after this.
    Reregister(Arc<str>),
    /// The instance deregistered: the stream ends quietly.
    End,
    /// A newer stream for the same instance took over: this one ends with ABORTED.
    Superseded,
}

type Slot = (u64, watch::Sender<Option<Directive>>);

/// The open stream of each instance that has one here, by instance id.
pub struct StreamTable {
    map: ShardedMap<Slot>,
    next_generation: AtomicU64,
}

impl Default for StreamTable {
    fn default() -> Self {
        Self {
            map: ShardedMap::default(),
            next_generation: AtomicU64::new(1),
        }
    }
}

impl StreamTable {
    fn shard(&self, id: &Uuid) -> std::sync::MutexGuard<'_, Shard<Slot>> {
        self.map.shard(id)
    }

    /// Makes a new stream the instance's current one; the previous one is superseded.
    pub fn attach(&self, id: Uuid) -> (u64, watch::Receiver<Option<Directive>>) {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(None);
        if let Some((_, old)) = self.shard(&id).insert(id, (generation, tx)) {
            let _ = old.send(Some(Directive::Superseded));
        }
        (generation, rx)
    }

    /// Forgets a stream that ended, unless a newer one already replaced it.
    pub fn detach(&self, id: Uuid, generation: u64) {
        let mut shard = self.shard(&id);
        if shard.get(&id).is_some_and(|(g, _)| *g == generation) {
            shard.remove(&id);
        }
    }

    /// Heartbeat streams open on this replica.
    pub fn open_count(&self) -> usize {
        self.map.len()
    }

    /// Pushes a directive to the instance's stream, if one is open here; whether one was.
    pub fn notify(&self, id: Uuid, directive: Directive) -> bool {
        match self.shard(&id).get(&id) {
            Some((_, tx)) => tx.send(Some(directive)).is_ok(),
            None => false,
        }
    }
}
