//! A level-triggered signal that this replica's index moved, for front ends that recompute
//! their answer from the index (xDS) instead of replaying each change (Watch).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;

use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

use super::Registry;
use crate::events::Item;

/// What moved since the last wake-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// Instances of these logical ids changed, by namespace.
    Instances(HashMap<String, HashSet<String>>),
    /// Changes were missed (the holder fell behind, or the index was rebuilt): anything may
    /// have moved.
    Everything,
}

impl Changed {
    pub fn touches(&self, namespace: &str, logical_id: &str) -> bool {
        match self {
            Changed::Everything => true,
            Changed::Instances(by_ns) => by_ns
                .get(namespace)
                .is_some_and(|ids| ids.contains(logical_id)),
        }
    }

    fn add(&mut self, item: Result<Item, ()>) {
        match (self, item) {
            (Changed::Instances(by_ns), Ok(Item::Change(row))) => {
                let ids = by_ns.entry(row.namespace.clone()).or_default();
                ids.insert(row.logical_id.clone());
            }
            // xDS serves instances: a card changes none of its resources.
            (_, Ok(Item::Through(_) | Item::Catalog { .. })) => {}
            (this, Ok(Item::Reset) | Err(())) => *this = Changed::Everything,
            (Changed::Everything, Ok(Item::Change(_))) => {}
        }
    }
}

/// Wakes its holder when instances were applied here. It holds no history: falling behind
/// the feed costs a recomputation of everything, so its memory is one broadcast cursor.
pub struct Changes {
    live: broadcast::Receiver<Item>,
    shutdown: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Changes {
    /// Waits until instances changed (every change already queued coalesced into one answer);
    /// `None` once the registry is shutting down.
    pub async fn changed(&mut self) -> Option<Changed> {
        let mut changed = Changed::Instances(HashMap::new());
        loop {
            let first = tokio::select! {
                first = self.live.recv() => first,
                _ = &mut self.shutdown => return None,
            };
            match first {
                Ok(item) => changed.add(Ok(item)),
                Err(RecvError::Lagged(_)) => changed.add(Err(())),
                Err(RecvError::Closed) => return None,
            }
            loop {
                match self.live.try_recv() {
                    Ok(item) => changed.add(Ok(item)),
                    Err(TryRecvError::Lagged(_)) => changed.add(Err(())),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Closed) => return None,
                }
            }
            // Progress marks alone are no change.
            if changed != Changed::Instances(HashMap::new()) {
                return Some(changed);
            }
        }
    }
}

impl Registry {
    /// A signal for every later change applied on this replica (from any replica's writes).
    pub fn changes(&self) -> Changes {
        Changes {
            live: self.applier.hub.subscribe_live(),
            shutdown: Box::pin(self.liveness.shutting_down()),
        }
    }

    /// Whether leases in `namespace` cannot be judged here now: the store is unreachable (beats
    /// through other replicas are not seen), or the self-preservation guard holds the
    /// namespace's expiries back (the registry, not the agents, is the likely fault).
    pub fn leases_in_doubt(&self, namespace: &str) -> bool {
        !self.liveness.store_reachable() || self.liveness.guard_holds(namespace)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::domain::Instance;

    fn row(ns: &str, id: &str) -> Result<Item, ()> {
        Ok(Item::Change(Arc::new(Instance {
            namespace: ns.into(),
            ..Instance::sample(id)
        })))
    }

    #[test]
    fn changes_name_what_moved_and_a_gap_means_everything() {
        let mut c = Changed::Instances(HashMap::new());
        c.add(row("prod", "planner"));
        c.add(Ok(Item::Through(7)));
        assert!(c.touches("prod", "planner"));
        assert!(!c.touches("prod", "other") && !c.touches("dev", "planner"));
        c.add(Err(()));
        assert_eq!(c, Changed::Everything);
        c.add(row("prod", "x"));
        assert!(c.touches("any", "thing"));
        let mut reset = Changed::Instances(HashMap::new());
        reset.add(Ok(Item::Reset));
        assert_eq!(reset, Changed::Everything);
    }
}
