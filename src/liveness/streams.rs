//! Open heartbeat streams: at most one per instance, each reachable for server-pushed directives.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;
use uuid::Uuid;

const SHARDS: usize = 64;

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

pub struct StreamRegistry {
    shards: Box<[Mutex<HashMap<Uuid, Slot>>]>,
    next_generation: AtomicU64,
}

impl Default for StreamRegistry {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            next_generation: AtomicU64::new(1),
        }
    }
}

impl StreamRegistry {
    fn shard(&self, id: &Uuid) -> MutexGuard<'_, HashMap<Uuid, Slot>> {
        let i = (id.as_u64_pair().1 % SHARDS as u64) as usize;
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
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
    pub fn open(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    /// Pushes a directive to the instance's stream, if one is open here.
    pub fn notify(&self, id: Uuid, directive: Directive) {
        if let Some((_, tx)) = self.shard(&id).get(&id) {
            let _ = tx.send(Some(directive));
        }
    }
}
