//! The in-memory lease table: one entry per non-dead instance this replica knows.
//!
//! Sharded by instance id, so a heartbeat takes one small lock for a hash-map update and
//! allocates nothing; no lock is ever held across an await.

use std::collections::HashMap;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

use crate::common::{Shard, ShardedMap};
use crate::domain::InstanceStatus;

#[derive(Debug, Clone)]
pub struct Lease {
    pub namespace: Arc<str>,
    pub ttl: Duration,
    /// When the lease runs out, on tokio's monotonic clock.
    pub deadline: Instant,
    /// The last beat known here — from a stream of this replica's, or another replica's as the
    /// store holds it — on the same clock. The flusher writes its age; no wall clock involved.
    pub beat: Instant,
    /// Renewed since the last flush (Discover's LIVE view has not seen this beat yet).
    pub dirty: bool,
    /// The newest beat the store is known to hold for the instance (written by this replica or
    /// read from the store), on the same clock. The lazy flush writes a beat only once this one
    /// is old enough; it never moves backwards.
    pub stored: Instant,
    pub status: InstanceStatus,
    /// Claimed by a sweep that is asking the store: it cannot be renewed until released.
    pub claimed: bool,
    /// An operator drained the instance while no stream of this replica carried it: the next
    /// beat without a stream (the HTTP API's) is told DRAIN.
    pub drain_untold: bool,
}

#[derive(Default)]
pub struct LeaseTable {
    map: ShardedMap<Lease>,
}

impl LeaseTable {
    fn shard(&self, id: &Uuid) -> MutexGuard<'_, Shard<Lease>> {
        self.map.shard(id)
    }

    fn each_shard(&self) -> impl Iterator<Item = MutexGuard<'_, Shard<Lease>>> {
        self.map.each_shard()
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

    /// Holds a lease a beat can renew (present and not claimed by a sweep).
    pub fn renewable(&self, id: Uuid) -> bool {
        self.shard(&id).get(&id).is_some_and(|l| !l.claimed)
    }

    /// Holds an entry at all, claimed or not.
    pub fn has_entry(&self, id: Uuid) -> bool {
        self.shard(&id).contains_key(&id)
    }

    /// The heartbeat hot path: renews and returns the lease's length, or `None` if the
    /// instance holds no lease here. One lock, no allocation.
    pub fn renew(&self, id: Uuid, now: Instant) -> Option<Duration> {
        let mut shard = self.shard(&id);
        let lease = shard.get_mut(&id).filter(|l| !l.claimed)?;
        lease.deadline = now + lease.ttl;
        lease.beat = now;
        lease.dirty = true;
        Some(lease.ttl)
    }

    /// Records the status a lease's instance now has; returns the previous one.
    pub fn set_status(&self, id: Uuid, status: InstanceStatus) -> Option<InstanceStatus> {
        let mut shard = self.shard(&id);
        let lease = shard.get_mut(&id)?;
        Some(std::mem::replace(&mut lease.status, status))
    }

    /// A committed status, as the index applied it: like `set_status`, and a status other
    /// than DRAINING settles a drain not yet told.
    pub fn follow_status(&self, id: Uuid, status: InstanceStatus) -> Option<InstanceStatus> {
        let mut shard = self.shard(&id);
        let lease = shard.get_mut(&id)?;
        lease.drain_untold &= status == InstanceStatus::Draining;
        Some(std::mem::replace(&mut lease.status, status))
    }

    /// Remembers a drain no stream here was told of.
    pub fn drain_untold(&self, id: Uuid) {
        if let Some(lease) = self.shard(&id).get_mut(&id) {
            lease.drain_untold = true;
        }
    }

    /// Whether a drain is still to be told; it counts as told from now on.
    pub fn take_drain_untold(&self, id: Uuid) -> bool {
        self.shard(&id)
            .get_mut(&id)
            .is_some_and(|lease| std::mem::take(&mut lease.drain_untold))
    }

    /// Grace: every lease counts as renewed `now` (start-up, store recovery).
    pub fn renew_all(&self, now: Instant) {
        for mut shard in self.each_shard() {
            for lease in shard.values_mut() {
                lease.deadline = lease.deadline.max(now + lease.ttl);
            }
        }
    }

    /// One flush's pass over the table. Every renewal since the last pass goes into `renewed`
    /// (for Discover's LIVE view) and its mark is cleared. Every lease whose newest beat is not
    /// in the store, and whose stored beat is at least `lag(ttl)` old at `now`, goes into `due`:
    /// the beats to write now (the lazy flush; a zero lag writes every new beat). Returns the
    /// shortest lease held (what bounds how long beats may go unpersisted).
    pub fn take(
        &self,
        now: Instant,
        lag: impl Fn(Duration) -> Duration,
        renewed: &mut Vec<(Uuid, Instant)>,
        due: &mut Vec<(Uuid, Instant)>,
    ) -> Option<Duration> {
        let mut shortest: Option<Duration> = None;
        for mut shard in self.each_shard() {
            for (id, lease) in shard.iter_mut() {
                shortest = Some(shortest.map_or(lease.ttl, |s| s.min(lease.ttl)));
                if lease.dirty {
                    lease.dirty = false;
                    renewed.push((*id, lease.beat));
                }
                if lease.beat > lease.stored
                    && now.saturating_duration_since(lease.stored) >= lag(lease.ttl)
                {
                    due.push((*id, lease.beat));
                }
            }
        }
        shortest
    }

    /// Records beats the store now holds (a flush of them committed).
    pub fn mark_stored(&self, beats: &[(Uuid, Instant)]) {
        for (id, beat) in beats {
            if let Some(lease) = self.shard(id).get_mut(id) {
                lease.stored = lease.stored.max(*beat);
            }
        }
    }

    /// Claims every unclaimed lease run out by `now` and returns copies. A claimed lease stays
    /// in place, so a death or drain observed meanwhile still finds and updates it, but cannot
    /// be renewed: a beat racing the sweep is refused (retryable) rather than acknowledged for
    /// an instance about to be expired. Each claim ends with [`LeaseTable::release`] or with
    /// the entry's removal.
    pub fn claim_expired(&self, now: Instant, out: &mut Vec<(Uuid, Lease)>) {
        for mut shard in self.each_shard() {
            for (id, lease) in shard.iter_mut() {
                if !lease.claimed && lease.deadline <= now {
                    lease.claimed = true;
                    out.push((*id, lease.clone()));
                }
            }
        }
    }

    /// Unclaimed leases running out by `by` — by their deadline, or by their last beat plus
    /// their length (what LIVE goes by; the deadline may carry slack beyond it): (id, last beat
    /// known here, lease length).
    pub fn due(&self, by: Instant, out: &mut Vec<(Uuid, Instant, Duration)>) {
        for shard in self.each_shard() {
            for (id, lease) in shard.iter() {
                if !lease.claimed && lease.deadline.min(lease.beat + lease.ttl) <= by {
                    out.push((*id, lease.beat, lease.ttl));
                }
            }
        }
    }

    /// Keeps only the leases of `ids` (after a rebuild: the others' instances are gone).
    pub fn retain(&self, ids: &std::collections::HashSet<Uuid>) {
        for mut shard in self.each_shard() {
            shard.retain(|id, _| ids.contains(id));
        }
    }

    /// Moves an unclaimed lease forward to a newer beat another replica stored; never moves a
    /// lease backwards. True when it moved.
    pub fn extend(&self, id: Uuid, beat: Instant, deadline: Instant) -> bool {
        match self.shard(&id).get_mut(&id) {
            Some(lease) if !lease.claimed && beat > lease.beat => {
                lease.beat = beat;
                lease.stored = lease.stored.max(beat);
                lease.deadline = lease.deadline.max(deadline);
                true
            }
            _ => false,
        }
    }

    /// Ends a claim, if the entry still exists (a death observed meanwhile removed it), with
    /// the deadline the sweep settled on.
    pub fn release(&self, id: Uuid, deadline: Instant, beat: Option<Instant>) {
        if let Some(lease) = self.shard(&id).get_mut(&id).filter(|l| l.claimed) {
            lease.claimed = false;
            lease.deadline = deadline;
            if let Some(at) = beat {
                lease.beat = lease.beat.max(at);
                lease.stored = lease.stored.max(at);
            }
        }
    }

    /// Removes an entry that is still claimed (the store found it dead or gone).
    pub fn drop_claimed(&self, id: Uuid) {
        let mut shard = self.shard(&id);
        if shard.get(&id).is_some_and(|l| l.claimed) {
            shard.remove(&id);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(deadline: Instant) -> Lease {
        Lease {
            namespace: Arc::from("ns"),
            ttl: Duration::from_secs(15),
            deadline,
            beat: deadline - Duration::from_secs(15),
            dirty: false,
            stored: deadline - Duration::from_secs(15),
            status: InstanceStatus::Alive,
            claimed: false,
            drain_untold: false,
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
        table.claim_expired(now, &mut claimed);
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].0, gone);
        assert!(table.renew(gone, now).is_none(), "told to re-register");
        assert!(!table.renewable(gone) && table.has_entry(gone));
        assert!(table.renew(kept, now).is_some());
        let mut again = Vec::new();
        table.claim_expired(now, &mut again);
        assert!(again.is_empty(), "claimed once");
        table.release(gone, now + Duration::from_secs(5), None);
        let renewed = table.renew(gone, now);
        assert!(renewed.is_some(), "released");
        // A claim whose entry was removed meanwhile (a death) is not brought back.
        table.claim_expired(now + Duration::from_secs(100), &mut again);
        table.remove(gone);
        table.release(gone, now, None);
        assert!(!table.has_entry(gone));
    }

    #[test]
    fn renewals_are_taken_once_and_written_once_old_enough() {
        let table = LeaseTable::default();
        let (id, start) = (Uuid::now_v7(), Instant::now());
        table.insert(id, lease(start + Duration::from_secs(15)));
        let lag = |ttl: Duration| ttl / 3;
        let pass = |at: Instant| {
            let (mut renewed, mut due) = (Vec::new(), Vec::new());
            table.take(at, lag, &mut renewed, &mut due);
            (renewed, due)
        };
        // Stored at registration (`start`); a beat 1 s later is not due until 5 s after it.
        let beat = start + Duration::from_secs(1);
        table.renew(id, beat);
        let (renewed, due) = pass(beat);
        assert_eq!(renewed, vec![(id, beat)], "LIVE follows every renewal");
        assert!(due.is_empty(), "the stored beat is fresh enough");
        assert!(pass(beat).0.is_empty(), "a renewal is taken once");
        let (_, due) = pass(start + Duration::from_secs(5));
        assert_eq!(
            due,
            vec![(id, beat)],
            "written once the stored one is a third of the lease old"
        );
        // Not recorded as stored (the flush failed): due again at the next pass.
        assert_eq!(pass(start + Duration::from_secs(6)).1, vec![(id, beat)]);
        table.mark_stored(&due);
        assert!(pass(start + Duration::from_secs(7)).1.is_empty(), "stored");
        // A beat no newer than the stored one is never due, however old.
        assert!(pass(start + Duration::from_secs(60)).1.is_empty());
        // A zero lag writes every new beat at the next pass.
        let later = start + Duration::from_secs(61);
        table.renew(id, later);
        let (mut renewed, mut due) = (Vec::new(), Vec::new());
        table.take(later, |_| Duration::ZERO, &mut renewed, &mut due);
        assert_eq!(due, vec![(id, later)]);
    }
}
