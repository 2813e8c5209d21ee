//! Liveness: in-memory leases renewed by heartbeat streams, a batched flusher that writes them
//! to the store once per interval, and a sweeper that expires what stopped beating — safely.
//!
//! Heartbeats never touch the store. The lease table is kept in step with state changes by
//! [`Liveness::observe`], which the index calls for each row it applies, in revision order, so
//! a death or a drain from any source reaches the instance's open stream at once.

pub mod flusher;
mod leases;
pub mod session;
mod streams;
pub mod sweeper;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

use crate::domain::{DeathReason, Instance, InstanceStatus, now};

pub use leases::{Lease, LeaseTable};
pub use streams::{Directive, StreamRegistry};

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
        }
    }
}

/// Internal counters (metrics will export them).
#[derive(Debug, Default)]
pub struct Counters {
    pub heartbeats: AtomicU64,
    pub flushes: AtomicU64,
    pub flushed_rows: AtomicU64,
    pub flush_failures: AtomicU64,
    pub largest_flush: AtomicU64,
    pub expiries: AtomicU64,
    pub guard_trips: AtomicU64,
}

pub struct Liveness {
    pub leases: LeaseTable,
    pub streams: StreamRegistry,
    pub counters: Counters,
    pub config: LivenessConfig,
    store_reachable: AtomicBool,
    /// When each namespace lost instances to lease expiry, whoever expired them: what the
    /// self-preservation guard weighs a new sweep against.
    expiries: Mutex<HashMap<Arc<str>, VecDeque<Instant>>>,
    /// Flips once when the server starts shutting down; every stream watches it.
    shutdown: tokio::sync::watch::Sender<bool>,
    /// Multiplier on the advised heartbeat interval (f64 bits), ≥ 1.
    load_factor: AtomicU64,
}

impl Liveness {
    pub fn new(config: LivenessConfig) -> Self {
        Self {
            leases: LeaseTable::default(),
            streams: StreamRegistry::default(),
            counters: Counters::default(),
            config,
            store_reachable: AtomicBool::new(true),
            expiries: Mutex::default(),
            shutdown: tokio::sync::watch::Sender::new(false),
            load_factor: AtomicU64::new(1f64.to_bits()),
        }
    }

    /// Start-up: a lease for every non-dead instance, renewed now (the start-up grace).
    pub fn hydrate<'a>(&self, instances: impl Iterator<Item = &'a Instance>) {
        let at = Instant::now();
        for i in instances.filter(|i| i.status != InstanceStatus::Dead) {
            self.leases
                .insert(i.instance_id, lease_for(i, at + i.lease_ttl));
        }
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
                let mut expiries = self.expiries.lock().unwrap_or_else(|p| p.into_inner());
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
        match self.leases.set_status(id, i.status) {
            Some(previous) => {
                if i.status == InstanceStatus::Draining && previous != InstanceStatus::Draining {
                    self.streams.notify(id, Directive::Drain);
                }
            }
            None => self.ensure_lease(i),
        }
    }

    /// Gives a non-dead instance a lease if it holds none here, running out when its stored
    /// heartbeat says (a retry, or an instance first seen through the store).
    pub fn ensure_lease(&self, i: &Instance) {
        if i.status == InstanceStatus::Dead || self.leases.knows(i.instance_id) {
            return;
        }
        let left = (i.lease_expires_at() - now()).to_std().unwrap_or_default();
        self.leases
            .insert(i.instance_id, lease_for(i, Instant::now() + left));
    }

    /// How many instances of `namespace` expired within `window` before `now`.
    pub fn recent_expiries(&self, namespace: &str, window: Duration, now: Instant) -> usize {
        let mut expiries = self.expiries.lock().unwrap_or_else(|p| p.into_inner());
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

    /// Renews a lease from a heartbeat: the new expiry and the lease's length, or `None` when
    /// the instance holds no lease here.
    pub fn renew(&self, id: Uuid) -> Option<(chrono::DateTime<chrono::Utc>, Duration)> {
        self.counters.heartbeats.fetch_add(1, Ordering::Relaxed);
        self.leases.renew(id, Instant::now(), now())
    }

    /// The heartbeat interval to advise for `lease_ttl`: a third of it, raised under load, but
    /// never beyond half of it so a beat always lands well inside the lease.
    pub fn heartbeat_interval(&self, lease_ttl: Duration) -> Duration {
        let factor = f64::from_bits(self.load_factor.load(Ordering::Relaxed));
        (lease_ttl / 3).mul_f64(factor).min(lease_ttl / 2)
    }

    /// Re-derives the load factor from the heartbeat rate just observed.
    pub fn observe_rate(&self, beats_per_second: f64) {
        let factor = (beats_per_second / self.config.max_heartbeat_rate.max(1) as f64).max(1.0);
        self.load_factor.store(factor.to_bits(), Ordering::Relaxed);
    }

    /// Tells every heartbeat stream, open or still opening, that the server is going away.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Resolves once shutdown has begun (at once if it already has).
    pub fn shutting_down(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.shutdown.subscribe();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }

    pub fn store_reachable(&self) -> bool {
        self.store_reachable.load(Ordering::Relaxed)
    }

    /// Records whether the store answered. Coming back from an outage renews every lease
    /// (grace): agents could not have their beats recorded meanwhile.
    pub fn set_store_reachable(&self, ok: bool) {
        let was = self.store_reachable.swap(ok, Ordering::Relaxed);
        match (was, ok) {
            (true, false) => {
                tracing::error!("store unreachable: leases are held in memory, nothing expires")
            }
            (false, true) => {
                self.leases.renew_all(Instant::now());
                tracing::warn!("store reachable again: every lease renewed from now (grace)");
            }
            _ => {}
        }
    }
}

fn lease_for(i: &Instance, deadline: Instant) -> Lease {
    Lease {
        namespace: Arc::from(i.namespace.as_str()),
        ttl: i.lease_ttl,
        deadline,
        beat_at: i.last_heartbeat,
        dirty: false,
        status: i.status,
        claimed: false,
    }
}
