//! The in-memory lease table: one entry per non-dead instance this replica knows.
//!
//! Sharded by instance id, so a heartbeat takes one small lock for a hash-map update and
//! allocates nothing; no lock is ever held across an await.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use uuid::Uuid;

use crate::domain::InstanceStatus;

const SHARDS: usize = 64;

#[derive(Debug, Clone)]
pub struct Lease {
    pub namespace: Arc<str>,
    pub ttl: Duration,
    /// When the lease runs out, on tokio's monotonic clock.
    pub deadline: Instant,
    /// Wall time of the last renewal: what the flusher writes as `last_heartbeat`.
    pub beat_at: DateTime<Utc>,
    /// Renewed since the last flush.
    pub dirty: bool,
    pub status: InstanceStatus,
}

pub struct LeaseTable {
    shards: Box<[Mutex<HashMap<Uuid, Lease>>]>,
}

impl Default for LeaseTable {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl LeaseTable {
    fn shard(&self, id: &Uuid) -> MutexGuard<'_, HashMap<Uuid, Lease>> {
        // The low half of a UUIDv7 (or v4) is random: a fair spread.
        let i = (id.as_u64_pair().1 % SHARDS as u64) as usize;
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn each_shard(&self) -> impl Iterator<Item = MutexGuard<'_, HashMap<Uuid, Lease>>> {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn insert(&self, id: Uuid, lease: Lease) {
        self.shard(&id).insert(id, lease);
    }

    pub fn remove(&self, id: Uuid) -> Option<Lease> {
        self.shard(&id).remove(&id)
    }

    pub fn get(&self, id: Uuid) -> Option<Lease> {
        self.shard(&id).get(&id).cloned()
    }

    pub fn contains(&self, id: Uuid) -> bool {
        self.shard(&id).contains_key(&id)
    }

    /// The heartbeat hot path: renews and returns the new expiry and the lease's length, or
    /// `None` if the instance holds no lease here. One lock, no allocation.
    pub fn renew(
        &self,
        id: Uuid,
        now: Instant,
        wall: DateTime<Utc>,
    ) -> Option<(DateTime<Utc>, Duration)> {
        let mut shard = self.shard(&id);
        let lease = shard.get_mut(&id)?;
        lease.deadline = now + lease.ttl;
        lease.beat_at = wall;
        lease.dirty = true;
        Some((wall + lease.ttl, lease.ttl))
    }

    /// Records the status a lease's instance now has; returns the previous one.
    pub fn set_status(&self, id: Uuid, status: InstanceStatus) -> Option<InstanceStatus> {
        let mut shard = self.shard(&id);
        let lease = shard.get_mut(&id)?;
        Some(std::mem::replace(&mut lease.status, status))
    }

    /// Grace: every lease counts as renewed `now` (start-up, store recovery).
    pub fn renew_all(&self, now: Instant) {
        for mut shard in self.each_shard() {
            for lease in shard.values_mut() {
                lease.deadline = lease.deadline.max(now + lease.ttl);
            }
        }
    }

    /// Moves every renewal since the last call into `out` and clears the marks.
    pub fn take_dirty(&self, out: &mut Vec<(Uuid, DateTime<Utc>)>) {
        for mut shard in self.each_shard() {
            for (id, lease) in shard.iter_mut().filter(|(_, l)| l.dirty) {
                lease.dirty = false;
                out.push((*id, lease.beat_at));
            }
        }
    }

    /// Puts renewals back after a failed flush, so the next flush retries them.
    pub fn mark_dirty(&self, beats: &[(Uuid, DateTime<Utc>)]) {
        for (id, _) in beats {
            if let Some(lease) = self.shard(id).get_mut(id) {
                lease.dirty = true;
            }
        }
    }

    /// Removes and returns every lease run out by `now`. Claiming them under the shard lock
    /// means a beat racing the sweep finds no lease (and is told to re-register) rather than
    /// being acknowledged for an instance about to be expired.
    pub fn take_expired(&self, now: Instant, out: &mut Vec<(Uuid, Lease)>) {
        for mut shard in self.each_shard() {
            let ids: Vec<Uuid> = shard
                .iter()
                .filter(|(_, l)| l.deadline <= now)
                .map(|(id, _)| *id)
                .collect();
            out.extend(
                ids.into_iter()
                    .filter_map(|id| shard.remove(&id).map(|l| (id, l))),
            );
        }
    }

    /// How many leases each namespace holds.
    pub fn holders(&self) -> HashMap<Arc<str>, usize> {
        let mut out: HashMap<Arc<str>, usize> = HashMap::new();
        for shard in self.each_shard() {
            for lease in shard.values() {
                *out.entry(lease.namespace.clone()).or_default() += 1;
            }
        }
        out
    }

    pub fn len(&self) -> usize {
        self.each_shard().map(|s| s.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(deadline: Instant) -> Lease {
        Lease {
            namespace: Arc::from("ns"),
            ttl: Duration::from_secs(15),
            deadline,
            beat_at: crate::domain::now(),
            dirty: false,
            status: InstanceStatus::Alive,
        }
    }

    #[test]
    fn a_lease_claimed_for_expiry_cannot_be_renewed() {
        let table = LeaseTable::default();
        let now = Instant::now();
        let (gone, kept) = (Uuid::now_v7(), Uuid::now_v7());
        table.insert(gone, lease(now));
        table.insert(kept, lease(now + Duration::from_secs(1)));
        let mut claimed = Vec::new();
        table.take_expired(now, &mut claimed);
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].0, gone);
        assert!(
            table.renew(gone, now, crate::domain::now()).is_none(),
            "told to re-register"
        );
        assert!(table.renew(kept, now, crate::domain::now()).is_some());
    }

    #[test]
    fn renewals_are_taken_once_and_can_be_put_back() {
        let table = LeaseTable::default();
        let id = Uuid::now_v7();
        table.insert(id, lease(Instant::now()));
        table.renew(id, Instant::now(), crate::domain::now());
        let mut batch = Vec::new();
        table.take_dirty(&mut batch);
        assert_eq!(batch.len(), 1);
        let mut again = Vec::new();
        table.take_dirty(&mut again);
        assert!(again.is_empty(), "a flushed renewal is not flushed twice");
        table.mark_dirty(&batch);
        table.take_dirty(&mut again);
        assert_eq!(again, batch, "a failed flush is retried");
    }
}
