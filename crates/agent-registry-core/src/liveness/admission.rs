//! The rules a heartbeat and a heartbeat stream are taken by: this replica must vouch for its
//! beats (they reach the store in time), and hold a lease for the instance that a sweep has not
//! claimed. A beat renews the lease; a status the agent sets itself is recorded before it is
//! persisted, so it is never echoed back as a directive.

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use super::{Directive, Liveness, StreamStop};
use crate::domain::InstanceStatus;

/// Why a beat or a stream for an instance is not taken here now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// This replica does not vouch for beats now: it is shutting down, or its beats are not
    /// reaching the store. The agent retries, here later or on another replica.
    NotVouching(StreamStop),
    /// A sweep holds the lease while the store decides whether it ran out: the store may find
    /// it renewed through another replica. The agent retries with the same id.
    Claimed,
    /// No lease here: the instance is unknown to this replica, or dead.
    NoLease,
}

/// A renewed lease: when it now runs out (on the store's clock), its length, and the
/// heartbeat interval to advise.
#[derive(Debug, Clone, PartialEq)]
pub struct Renewed {
    pub expires_at: DateTime<Utc>,
    pub ttl: Duration,
    pub heartbeat_interval: Duration,
}

/// A stream attached to an instance: its generation (to detach exactly it) and the directives
/// the server pushes to it.
pub struct Attached {
    pub generation: u64,
    pub directives: watch::Receiver<Option<Directive>>,
}

impl Liveness {
    /// Whether a beat or a stream for `id` may be taken here now.
    pub fn admit(&self, id: Uuid) -> Result<(), Refusal> {
        self.vouch()?;
        self.held(id)
    }

    /// One beat: renews the lease and says when it now runs out. The heartbeat hot path: one
    /// shard lock, no allocation.
    pub fn beat(&self, id: Uuid) -> Result<Renewed, Refusal> {
        self.vouch()?;
        self.counters.heartbeats.fetch_add(1, Ordering::Relaxed);
        match self.leases.renew(id, Instant::now()) {
            Some(ttl) => Ok(Renewed {
                expires_at: self.clock.after(ttl),
                ttl,
                heartbeat_interval: self.heartbeat_interval(ttl),
            }),
            None => Err(self.held(id).err().unwrap_or(Refusal::NoLease)),
        }
    }

    /// Renews the lease of a registration retried (the same id, alive): as a beat, without the
    /// vouching rule (the registration itself was written to the store).
    pub fn renew_registered(&self, id: Uuid) {
        self.counters.heartbeats.fetch_add(1, Ordering::Relaxed);
        self.leases.renew(id, Instant::now());
    }

    /// Beats are acknowledged only while they reach the store (see `vouching.rs`).
    fn vouch(&self) -> Result<(), Refusal> {
        match self.vouching.stopped() {
            None => Ok(()),
            Some(stop) => Err(Refusal::NotVouching(stop)),
        }
    }

    /// A lease is held here for `id`, and no sweep has claimed it.
    fn held(&self, id: Uuid) -> Result<(), Refusal> {
        match (self.leases.has_entry(id), self.leases.renewable(id)) {
            (_, true) => Ok(()),
            (true, false) => Err(Refusal::Claimed),
            (false, _) => Err(Refusal::NoLease),
        }
    }

    /// Makes a new stream the instance's current one (the previous one is superseded); a
    /// drain observed while no stream was here is pushed to it at once.
    pub fn attach(&self, id: Uuid) -> Attached {
        let (generation, directives) = self.streams.attach(id);
        if self.leases.take_drain_untold(id) {
            self.streams.notify(id, Directive::Drain);
        }
        Attached {
            generation,
            directives,
        }
    }

    /// Forgets a stream that ended (unless a newer one replaced it); the lease runs on.
    pub fn detach(&self, id: Uuid, generation: u64) {
        self.streams.detach(id, generation);
    }

    /// Records a status the agent set itself, before it is persisted, so the change is not
    /// echoed back to it as a directive; the previous status, to put back if the write fails.
    pub fn record_own_status(&self, id: Uuid, status: InstanceStatus) -> Option<InstanceStatus> {
        self.leases.set_status(id, status)
    }

    /// Puts back the status [`Liveness::record_own_status`] replaced.
    pub fn restore_status(&self, id: Uuid, previous: InstanceStatus) {
        self.leases.set_status(id, previous);
    }

    /// Whether an operator drained the instance and no stream here was told; it counts as told
    /// from now on (a beat without a stream carries it instead).
    pub fn take_untold_drain(&self, id: Uuid) -> bool {
        self.leases.take_drain_untold(id)
    }

    /// When the lease of `id` runs out (on the store's clock), for directive messages that
    /// acknowledge no beat.
    pub fn lease_expires_at(&self, id: Uuid) -> Option<DateTime<Utc>> {
        let lease = self.leases.get(id)?;
        let left = lease.deadline.saturating_duration_since(Instant::now());
        Some(self.clock.now() + chrono::TimeDelta::from_std(left).unwrap_or_default())
    }

    /// Resolves, with the reason, once every heartbeat stream must end (shutdown, or this
    /// replica's beats stopped reaching the store).
    pub fn streams_must_end(
        &self,
    ) -> impl std::future::Future<Output = StreamStop> + Send + 'static {
        self.vouching.must_end()
    }
}
