//! Liveness: in-memory leases renewed by heartbeats, a batched flusher that writes them to the
//! store once per interval, and a sweeper that expires what stopped beating — safely.
//!
//! Heartbeats never touch the store. The lease table is kept in step with state changes by
//! [`Liveness::observe`], which the applier calls for each row the index applies, in revision
//! order, so a death or a drain from any source reaches the instance's open stream at once. The
//! rest of the replica reaches leases, streams and vouching only through `Liveness`'s methods:
//! which beats and streams are admitted ([`Liveness::admit`], [`Liveness::beat`]) is decided
//! here, not by its callers.

mod admission;
mod flusher;
mod leases;
mod progress;
mod streams;
pub mod sweeper;
mod vouching;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::common::lock;
use crate::domain::{DeathReason, Instance, InstanceStatus, StoreClock};
use crate::metrics::Readings;
use crate::storage::{Slack, StoreHealth};

pub use admission::{Attached, Refusal, Renewed};
pub use flusher::{FlushPort, Flusher};
pub use streams::Directive;
pub use sweeper::{ExpiryOutcome, ExpiryPort, SweepReport, Sweeper};
pub use vouching::StreamStop;

use leases::{Lease, LeaseTable};
use progress::Progress;
use streams::StreamTable;
use vouching::Vouching;

/// Tuning of leases, flushing and expiry.
#[derive(Debug, Clone)]
pub struct LivenessConfig {
    pub flush_interval: Duration,
    pub sweep_interval: Duration,
    /// Largest share of a namespace's leases one sweep may expire (self-preservation).
    pub expiry_guard: f64,
    /// A sweep expiring at most this many instances of a namespace is never held back.
    pub expiry_guard_floor: usize,
    /// Expiries within this window count together against the guard.
    pub expiry_guard_window: Duration,
    /// Heartbeats per second above which the advised heartbeat interval is raised.
    pub max_heartbeat_rate: u64,
    /// Share of the shortest lease held that acknowledged beats may stay unpersisted before
    /// this replica stops vouching for them (never less than two flush intervals).
    pub unpersisted_fraction: f64,
    /// Lazy flush: a lease's beat is written once the beat the store holds is this share of
    /// the lease old (0: every new beat at the next flush). At most a third (see `flush_lag`).
    pub lazy_flush_fraction: f64,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        Self {
            flush_interval: Duration::from_secs(1),
            sweep_interval: Duration::from_secs(1),
            expiry_guard: 0.5,
            expiry_guard_floor: 2,
            expiry_guard_window: Duration::from_secs(30),
            max_heartbeat_rate: 200_000,
            unpersisted_fraction: 1.0 / 3.0,
            lazy_flush_fraction: 1.0 / 3.0,
        }
    }
}

/// The largest `lazy_flush_fraction` allowed. With it, the heartbeat interval (a third of the
/// lease, half under back-off) and a flush, a beating agent's stored beat stays younger than
/// its lease, so the SQL views keep counting it live.
pub const MAX_LAZY_FLUSH_FRACTION: f64 = 1.0 / 3.0;

impl LivenessConfig {
    /// How old the stored beat of a lease of `ttl` may get before a newer beat is written: a
    /// beat acknowledged here is in the store at most this plus a flush interval (and the
    /// statement's time) after it was acknowledged.
    pub fn flush_lag(&self, ttl: Duration) -> Duration {
        ttl.mul_f64(self.lazy_flush_fraction)
    }

    /// How long after its stored lease ran out an instance is expired: beats a replica
    /// acknowledged reach the store up to the flush lag plus a flush late, and up to the
    /// unpersisted bound's floor (two flushes) more while flushes fail. The store applies it
    /// per row, as `fixed + ttl × per_lease`.
    pub fn expiry_slack(&self) -> Slack {
        Slack {
            fixed: self.flush_interval * 3,
            per_lease: self.lazy_flush_fraction,
        }
    }
}

/// Counters kept as plain atomics on hot paths; the metrics read them at each scrape.
#[derive(Debug, Default)]
struct Counters {
    heartbeats: AtomicU64,
    /// Heartbeat rows written by flushes (the lazy flush writes a beat only when due).
    beats_written: AtomicU64,
    flush_failures: AtomicU64,
    expiries: AtomicU64,
    guard_trips: AtomicU64,
    /// Times every lease was renewed after an outage of the store.
    graces: AtomicU64,
    /// Expiry transactions committed (each a bounded chunk, one set-based statement).
    expiry_transactions: AtomicU64,
}

/// A replica's leases, open heartbeat streams and whether it vouches for their beats.
pub struct Liveness {
    leases: LeaseTable,
    streams: StreamTable,
    counters: Counters,
    config: LivenessConfig,
    /// Whether this replica's beats reach the store; heartbeat streams follow it.
    vouching: Vouching,
    /// Whether the flusher and the sweeper still finish their rounds (liveness probe).
    progress: Progress,
    /// The store's reachability, from every call made to it.
    store_health: Arc<StoreHealth>,
    /// The store's clock, on which every stored time is.
    clock: Arc<StoreClock>,
    /// Outages of the store whose grace has been granted.
    graces_granted: AtomicU64,
    /// When each namespace lost instances to lease expiry, whoever expired them: what the
    /// self-preservation guard weighs a new sweep against.
    expiries: Mutex<HashMap<Arc<str>, VecDeque<Instant>>>,
    /// The namespaces whose expiries the self-preservation guard holds back now.
    guard_holding: Mutex<Vec<String>>,
    /// Cancelled once, when the server starts shutting down; every stream and watcher waits
    /// on it.
    shutdown: CancellationToken,
    /// Multiplier on the advised heartbeat interval (f64 bits), ≥ 1.
    load_factor: AtomicU64,
}

impl Liveness {
    pub fn new(
        config: LivenessConfig,
        store_health: Arc<StoreHealth>,
        clock: Arc<StoreClock>,
    ) -> Self {
        Self {
            leases: LeaseTable::default(),
            streams: StreamTable::default(),
            counters: Counters::default(),
            vouching: Vouching::new(config.unpersisted_fraction, config.flush_interval),
            progress: Progress::new(config.flush_interval.max(config.sweep_interval)),
            graces_granted: AtomicU64::new(store_health.recoveries()),
            store_health,
            clock,
            config,
            expiries: Mutex::default(),
            guard_holding: Mutex::default(),
            shutdown: CancellationToken::new(),
            load_factor: AtomicU64::new(1f64.to_bits()),
        }
    }

    pub fn config(&self) -> &LivenessConfig {
        &self.config
    }

    /// Start-up: a lease for every non-dead instance, renewed now (the start-up grace).
    pub fn hydrate<'a>(&self, instances: impl Iterator<Item = &'a Instance>) {
        let at = Instant::now();
        for i in instances.filter(|i| i.status != InstanceStatus::Dead) {
            let beat = self.local_beat(i.last_heartbeat);
            self.leases
                .insert(i.instance_id, lease_for(i, at + i.lease_ttl, beat));
        }
    }

    /// The instant on this process's clock that a heartbeat on the store's clock names (its
    /// age by the store's clock, as estimated, subtracted from now).
    fn local_beat(&self, last_heartbeat: chrono::DateTime<chrono::Utc>) -> Instant {
        let now = Instant::now();
        let age = (self.clock.now() - last_heartbeat)
            .to_std()
            .unwrap_or_default();
        now.checked_sub(age).unwrap_or(now)
    }

    /// Follows one committed state change, in revision order: a new instance gets a lease, a
    /// dead one loses it and its stream hears why, a drain is pushed down the stream.
    pub fn observe(&self, i: &Instance) {
        self.follow(i, true);
    }

    /// Like [`Liveness::observe`] for the rows of a snapshot (a rebuild): old deaths in it are
    /// not counted as expiries now, which would trip the self-preservation guard.
    pub fn follow_snapshot(&self, i: &Instance) {
        self.follow(i, false);
    }

    fn follow(&self, i: &Instance, live: bool) {
        let id = i.instance_id;
        if let Some(reason) = i.death_reason {
            self.leases.remove(id);
            if live && reason == DeathReason::LeaseExpired {
                let mut expiries = lock(&self.expiries);
                let ns: Arc<str> = Arc::from(i.namespace.as_str());
                expiries.entry(ns).or_default().push_back(Instant::now());
            }
            let directive = match reason {
                DeathReason::Deregistered => Directive::End,
                other => Directive::Reregister(
                    format!("instance is DEAD ({}); register again", other.as_str()).into(),
                ),
            };
            self.streams.notify(id, directive);
            return;
        }
        match self.leases.follow_status(id, i.status) {
            Some(previous) => {
                if i.status == InstanceStatus::Draining
                    && previous != InstanceStatus::Draining
                    && !self.streams.notify(id, Directive::Drain)
                {
                    // No stream here to tell: a beat without one will be.
                    self.leases.drain_untold(id);
                }
            }
            None => self.ensure_lease(i, i.last_heartbeat),
        }
    }

    /// Gives a non-dead instance a lease if it holds none here, running out when its
    /// heartbeat (`last_heartbeat`, on the store's clock) says: a retry, or an instance first
    /// seen through the store.
    pub fn ensure_lease(&self, i: &Instance, last_heartbeat: chrono::DateTime<chrono::Utc>) {
        if i.status == InstanceStatus::Dead || self.leases.has_entry(i.instance_id) {
            return;
        }
        let beat = self.local_beat(last_heartbeat);
        self.leases
            .insert(i.instance_id, lease_for(i, beat + i.lease_ttl, beat));
    }

    /// Keeps only the leases of `ids` (after a rebuild: the others' instances are gone).
    pub fn retain_leases(&self, ids: &std::collections::HashSet<Uuid>) {
        self.leases.retain(ids);
    }

    /// Forgets the lease of `id` here, as if this replica had never held it (tests).
    pub fn forget_lease(&self, id: Uuid) {
        self.leases.remove(id);
    }

    /// Whether a beat for `id` would renew a lease here now.
    pub fn holds_lease(&self, id: Uuid) -> bool {
        self.leases.renewable(id)
    }

    /// How many instances of `namespace` expired within `window` before `now`.
    fn recent_expiries(&self, namespace: &str, window: Duration, now: Instant) -> usize {
        let mut expiries = lock(&self.expiries);
        let Some(q) = expiries.get_mut(namespace) else {
            return 0;
        };
        while q
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > window)
        {
            q.pop_front();
        }
        q.len()
    }

    /// The heartbeat interval to advise for `lease_ttl`: a third of it, raised under load, but
    /// never beyond half of it so a beat always lands well inside the lease.
    pub fn heartbeat_interval(&self, lease_ttl: Duration) -> Duration {
        let factor = f64::from_bits(self.load_factor.load(Ordering::Relaxed));
        (lease_ttl / 3).mul_f64(factor).min(lease_ttl / 2)
    }

    /// Re-derives the load factor from the heartbeat rate just observed.
    fn observe_rate(&self, beats_per_second: f64) {
        let factor = (beats_per_second / self.config.max_heartbeat_rate.max(1) as f64).max(1.0);
        self.load_factor.store(factor.to_bits(), Ordering::Relaxed);
    }

    /// Tells every heartbeat stream and watcher, open or still opening, that the server is
    /// going away.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
        self.vouching.shut_down();
    }

    /// Resolves once shutdown has begun (at once if it already has).
    pub fn shutting_down(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.shutdown.clone().cancelled_owned()
    }

    /// No failure since the store last answered (expiry waits while it is not).
    pub fn store_reachable(&self) -> bool {
        self.store_health.reachable()
    }

    /// Writes to the store failed in the current failure run (only a write can show they work
    /// again).
    pub fn store_writes_failing(&self) -> bool {
        self.store_health.writes_failing()
    }

    /// Why heartbeat streams are refused now, if they are.
    pub fn streams_stopped(&self) -> Option<StreamStop> {
        self.vouching.stopped()
    }

    /// A loop that stopped making progress (the process should be restarted).
    pub fn wedged(&self) -> Option<&'static str> {
        self.progress.wedged()
    }

    /// Whether the self-preservation guard holds `namespace`'s expiries back now.
    pub fn guard_holds(&self, namespace: &str) -> bool {
        lock(&self.guard_holding).iter().any(|ns| ns == namespace)
    }

    /// Grace: when an outage of the store (not a blip) ended since the last call, every lease
    /// counts as renewed now — agents could not have their beats recorded meanwhile. The
    /// sweeper calls this before it claims anything, so no claim can precede the grace.
    fn grant_grace(&self) -> bool {
        let ended = self.store_health.recoveries();
        if self.graces_granted.swap(ended, Ordering::Relaxed) >= ended {
            return false;
        }
        self.leases.renew_all(Instant::now());
        self.counters.graces.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("store back after an outage: every lease renewed from now (grace)");
        true
    }

    /// Fills in what liveness knows of the replica's readings.
    pub fn read_into(&self, r: &mut Readings) {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        r.heartbeats = load(&c.heartbeats);
        r.heartbeat_rows_written = load(&c.beats_written);
        r.heartbeat_streams = self.streams.open_count();
        r.flush_failures = load(&c.flush_failures);
        r.expiries = load(&c.expiries);
        r.guard_trips = load(&c.guard_trips);
        r.graces = load(&c.graces);
        r.store_reachable = self.store_reachable();
        r.store_outages = self.store_health.recoveries();
        r.store_saturations = self.store_health.saturations();
        r.vouching_lapses = self.vouching.lapses();
        r.expiry_transactions = load(&c.expiry_transactions);
        r.unpersisted_ms = self.vouching.unpersisted_for().as_millis() as i64;
        r.store_clock_offset_ms = self.clock.offset().num_milliseconds();
        r.guard_holding = lock(&self.guard_holding).clone();
    }
}

fn lease_for(i: &Instance, deadline: Instant, beat: Instant) -> Lease {
    Lease {
        namespace: Arc::from(i.namespace.as_str()),
        ttl: i.lease_ttl,
        deadline,
        beat,
        dirty: false,
        // The store holds this beat: it is where the lease came from.
        stored: beat,
        status: i.status,
        claimed: false,
        drain_untold: false,
    }
}
