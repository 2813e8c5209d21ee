//! The replica's in-memory registry: what Discover, GetInstance and the Admin reads answer from.
//!
//! It is driven only by change sets applied in revision order — this replica's own commits and
//! change sets read back from the store — so a reader never sees revision R and later a change
//! at or below R. A change set that arrives ahead of a gap waits in `pending` until the gap is
//! filled by the commit that owns it or by a read-back from the store.

mod agent_query;
mod agents;
mod catalog;
mod cursor;
mod docset;
pub(crate) mod page;
mod postings;
mod query;
mod search;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use uuid::Uuid;

use crate::domain::{ChangeSet, Instance, InstanceFilter, InstanceStatus, Namespace};
use postings::{Key, Postings};

pub use agent_query::AgentQuery;
pub use agents::{AgentHit, AgentPage};
pub use catalog::{AgentView, CardVersion};
pub use query::{Page, View};

use catalog::Catalog;

/// One namespace and its retained instances, ordered by (logical id, instance id). Logical
/// ids are shared `Arc<str>`s so a lookup by key costs a reference count, not an allocation.
#[derive(Debug)]
struct NamespaceEntry {
    namespace: Namespace,
    instances: BTreeMap<Key, Held>,
    /// The same keys by agent type, capability and label pair (for filtered Discover pages).
    postings: Postings,
    /// The agents' cards and their text index.
    catalog: Catalog,
}

impl NamespaceEntry {
    fn new(namespace: Namespace) -> Self {
        Self {
            namespace,
            instances: BTreeMap::new(),
            postings: Postings::default(),
            catalog: Catalog::default(),
        }
    }

    fn insert(&mut self, key: Key, held: Held) {
        if let Some(old) = self.instances.get(&key) {
            self.postings.remove(&key, &old.row);
        }
        self.postings.add(&key, &held.row);
        self.instances.insert(key, held);
    }

    fn remove(&mut self, key: &Key) {
        if let Some(old) = self.instances.remove(key) {
            self.postings.remove(key, &old.row);
        }
    }
}

/// One retained instance: its row as of its last state change, and beside it the latest
/// heartbeat known here. A renewal is no state change, so it is kept out of the shared row: it
/// never copies a row a watcher (or the hub's history) still holds, and it needs no write lock.
#[derive(Debug)]
struct Held {
    row: Arc<Instance>,
    /// Microseconds since the Unix epoch on the store's clock; never behind the row's own.
    beat_us: AtomicI64,
}

impl Held {
    fn new(row: Arc<Instance>, known: Option<i64>) -> Held {
        let beat = row
            .last_heartbeat
            .timestamp_micros()
            .max(known.unwrap_or(i64::MIN));
        Held {
            row,
            beat_us: AtomicI64::new(beat),
        }
    }

    fn beat(&self) -> DateTime<Utc> {
        let us = self.beat_us.load(Ordering::Relaxed);
        DateTime::from_timestamp_micros(us).unwrap_or(self.row.last_heartbeat)
    }

    /// Live by the latest beat known here (SPEC §1).
    fn is_live(&self, current_epoch: Uuid, now: DateTime<Utc>) -> bool {
        let i = &self.row;
        i.status == InstanceStatus::Alive
            && i.epoch == current_epoch
            && self.beat() + i.lease_ttl > now
    }

    fn listed(&self) -> Listed {
        Listed {
            row: self.row.clone(),
            last_heartbeat: self.beat(),
        }
    }
}

/// An instance as a read returns it: the row of its last state change and the latest heartbeat
/// known here (which `last_heartbeat` gives; every other field reads through to the row).
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub row: Arc<Instance>,
    pub last_heartbeat: DateTime<Utc>,
}

impl Listed {
    /// When the lease runs out unless renewed, by the latest beat known.
    pub fn lease_expires_at(&self) -> DateTime<Utc> {
        self.last_heartbeat + self.row.lease_ttl
    }

    /// Live by the latest beat known here (SPEC §1), as the LIVE view selects.
    pub fn is_live(&self, current_epoch: Uuid, now: DateTime<Utc>) -> bool {
        self.row.status == InstanceStatus::Alive
            && self.row.epoch == current_epoch
            && self.lease_expires_at() > now
    }
}

impl std::ops::Deref for Listed {
    type Target = Instance;
    fn deref(&self) -> &Instance {
        &self.row
    }
}

#[derive(Debug, Default)]
struct Contents {
    /// Every change up to and including this revision is applied.
    revision: i64,
    /// Dead instances at or below this revision are gone from the store, and from here.
    horizon: i64,
    /// Change sets that arrived ahead of a gap, by their first revision.
    pending: BTreeMap<i64, ChangeSet>,
    namespaces: BTreeMap<String, NamespaceEntry>,
    /// Where each instance lives: (namespace, logical id).
    locations: HashMap<Uuid, (String, Arc<str>)>,
    /// The agents that have a version of each card digest: (namespace, logical id).
    by_digest: HashMap<String, Vec<(String, Arc<str>)>>,
}

/// The index. Locks are never held across an await.
#[derive(Debug)]
pub struct Index {
    state: RwLock<Contents>,
    applied: watch::Sender<i64>,
}

impl Default for Index {
    fn default() -> Self {
        Self {
            state: RwLock::default(),
            applied: watch::Sender::new(0),
        }
    }
}

impl Index {
    fn read(&self) -> RwLockReadGuard<'_, Contents> {
        crate::common::read(&self.state)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Contents> {
        crate::common::write(&self.state)
    }

    /// The current epoch of `namespace`, if it exists.
    pub fn current_epoch(&self, namespace: &str) -> Option<Uuid> {
        self.read()
            .namespaces
            .get(namespace)
            .map(|e| e.namespace.current_epoch)
    }

    /// The highest revision applied with everything below it.
    pub fn revision(&self) -> i64 {
        self.read().revision
    }

    /// Dead instances at or below this revision are collected; so is the change log.
    pub fn horizon(&self) -> i64 {
        self.read().horizon
    }

    /// Offers a change set; it is applied now if it continues the applied revisions, or kept
    /// until the gap before it closes. Returns the applied revision afterwards.
    pub fn apply(&self, changes: ChangeSet) -> i64 {
        self.apply_observed(changes, &mut |_| {})
    }

    /// Like [`Index::apply`], calling `observe` for every instance row as it is applied — in
    /// revision order, under the index lock — so whatever follows state changes (leases,
    /// streams, watchers) sees them in the same order as readers do.
    pub fn apply_observed(
        &self,
        changes: ChangeSet,
        observe: &mut dyn FnMut(&Arc<Instance>),
    ) -> i64 {
        let revision = {
            let mut st = self.write();
            st.offer(changes, observe);
            st.revision
        };
        self.announce(revision);
        revision
    }

    /// Replaces everything with a snapshot (`Store::snapshot`), for a replica that fell behind
    /// the compaction horizon; `observe` sees every row of it and `then` runs with the new
    /// revision before the lock is released. A snapshot no newer than what is applied is
    /// refused (`None`): the index never moves backwards.
    pub fn reset(
        &self,
        snapshot: ChangeSet,
        observe: &mut dyn FnMut(&Arc<Instance>),
        then: &mut dyn FnMut(i64),
    ) -> Option<i64> {
        let revision = {
            let mut st = self.write();
            if snapshot.last <= st.revision {
                return None;
            }
            *st = Contents::default();
            st.offer(snapshot, observe);
            then(st.revision);
            st.revision
        };
        self.announce(revision);
        Some(revision)
    }

    /// The instances of `filter`'s namespace that match it and are not dead, with the revision
    /// they were read at; `during` runs under the same lock, so nothing is applied in between.
    pub fn snapshot<T>(
        &self,
        filter: &InstanceFilter,
        during: impl FnOnce() -> T,
    ) -> (Vec<Arc<Instance>>, i64, T) {
        let st = self.read();
        let rows = st
            .namespaces
            .get(&filter.namespace)
            .map(|e| {
                e.instances
                    .values()
                    .map(|h| &h.row)
                    .filter(|i| i.status != InstanceStatus::Dead && filter.matches(i))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        (rows, st.revision, during())
    }

    fn announce(&self, revision: i64) {
        self.applied.send_if_modified(|r| {
            let moved = *r < revision;
            if moved {
                *r = revision;
            }
            moved
        });
    }

    /// Waits until `revision` is applied; false if that took longer than `limit`.
    pub async fn wait_for(&self, revision: i64, limit: Duration) -> bool {
        let mut rx = self.applied.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|r| *r >= revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Records a lease renewal that is not a state change (no new revision).
    pub fn renew(&self, id: Uuid, at: DateTime<Utc>) {
        self.renew_many(&[(id, at)]);
    }

    /// Records a batch of renewals (each flush, times on the store's clock), so LIVE follows
    /// the leases held in memory. Readers go on meanwhile: a beat is one atomic per instance.
    pub fn renew_many(&self, beats: &[(Uuid, DateTime<Utc>)]) {
        let st = self.read();
        for (id, at) in beats {
            if let Some(held) = st.held(*id) {
                held.beat_us
                    .fetch_max(at.timestamp_micros(), Ordering::Relaxed);
            }
        }
    }

    /// Runs `f` on the instance as it now is, while no change can be applied.
    pub fn with_current(&self, id: Uuid, f: impl FnOnce(&Listed)) {
        let st = self.read();
        if let Some(held) = st.held(id) {
            f(&held.listed());
        }
    }

    pub fn get(&self, id: Uuid) -> Option<Listed> {
        self.read().held(id).map(Held::listed)
    }
}

impl Contents {
    fn held(&self, id: Uuid) -> Option<&Held> {
        let (ns, lid) = self.locations.get(&id)?;
        self.namespaces.get(ns)?.instances.get(&(lid.clone(), id))
    }

    fn offer(&mut self, changes: ChangeSet, observe: &mut dyn FnMut(&Arc<Instance>)) {
        if changes.horizon > self.horizon {
            self.prune(changes.horizon);
        }
        if changes.last <= self.revision {
            return;
        }
        if changes.first > self.revision + 1 {
            self.pending.insert(changes.first, changes);
            return;
        }
        self.apply_rows(changes, observe);
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > self.revision + 1 {
                break;
            }
            let next = entry.remove();
            if next.last > self.revision {
                self.apply_rows(next, observe);
            }
        }
    }

    /// Rows are applied only when newer than what is held, so overlapping sets are harmless.
    /// Forgets the dead instances the store garbage-collected (those dead at or below `horizon`).
    fn prune(&mut self, horizon: i64) {
        self.horizon = horizon;
        let locations = &mut self.locations;
        for entry in self.namespaces.values_mut() {
            let NamespaceEntry {
                instances,
                postings,
                ..
            } = entry;
            instances.retain(|key, h| {
                let gone = h.row.status == InstanceStatus::Dead && h.row.revision <= horizon;
                if gone {
                    locations.remove(&key.1);
                    postings.remove(key, &h.row);
                }
                !gone
            });
        }
    }

    fn apply_rows(&mut self, mut changes: ChangeSet, observe: &mut dyn FnMut(&Arc<Instance>)) {
        // Observers (watchers above all) must see rows in revision order.
        changes.instances.sort_unstable_by_key(|i| i.revision);
        for ns in changes.namespaces {
            match self.namespaces.get_mut(&ns.name) {
                Some(e) if e.namespace.revision >= ns.revision => {}
                Some(e) => e.namespace = ns,
                None => {
                    let entry = NamespaceEntry::new(ns);
                    self.namespaces.insert(entry.namespace.name.clone(), entry);
                }
            }
        }
        let applied = self.revision;
        for inst in changes.instances {
            // Everything at or below the applied revision is already here (sets overlap).
            if inst.revision <= applied {
                continue;
            }
            let Some(entry) = self.namespaces.get_mut(&inst.namespace) else {
                tracing::error!(instance_id = %inst.instance_id, namespace = %inst.namespace,
                    "change for an instance of an unknown namespace; skipped");
                continue;
            };
            let logical: Arc<str> = match self.locations.get(&inst.instance_id) {
                Some((_, held)) => held.clone(),
                None => Arc::from(inst.logical_id.as_str()),
            };
            let key = (logical.clone(), inst.instance_id);
            let known = match entry.instances.get(&key) {
                Some(held) if held.row.revision >= inst.revision => continue,
                Some(held) => Some(held.beat_us.load(Ordering::Relaxed)),
                None => None,
            };
            let inst = Arc::new(inst);
            observe(&inst);
            if inst.status == InstanceStatus::Dead && inst.revision <= self.horizon {
                // Already collected in the store: announced, not retained.
                entry.remove(&key);
                self.locations.remove(&inst.instance_id);
                continue;
            }
            self.locations
                .insert(inst.instance_id, (inst.namespace.clone(), logical));
            entry.insert(key, Held::new(inst, known));
        }
        for card in changes.cards {
            if card.revision <= applied {
                continue;
            }
            match self.namespaces.get_mut(&card.namespace) {
                Some(entry) => entry.catalog.apply(card, &mut self.by_digest),
                None => tracing::error!(namespace = %card.namespace, logical_id = %card.logical_id,
                    "card of an unknown namespace; skipped"),
            }
        }
        self.revision = self.revision.max(changes.last);
    }
}

#[cfg(test)]
mod agents_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
