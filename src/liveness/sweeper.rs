//! The sweeper: expires leases that ran out, in one transaction per sweep, guarded against
//! wiping a namespace when the registry rather than the agents lost the network.
//!
//! Safe with several replicas: the store re-checks each candidate's stored heartbeat inside the
//! transaction (another replica may have renewed it) and the state machine makes a second
//! expiry of a dead instance a no-op, so there are no double events; any replica's sweeper
//! expires any instance, so nothing is missed when one replica dies.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use uuid::Uuid;

use crate::domain::now;
use crate::registry::Registry;
use crate::storage::StoreError;

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    pub expired: usize,
    /// Namespaces held back by the self-preservation guard.
    pub guarded: Vec<String>,
    /// Skipped entirely because the store is unreachable.
    pub skipped: bool,
}

pub struct Sweeper {
    registry: Arc<Registry>,
    /// Namespaces currently held back, to log entering and leaving once each.
    tripped: HashSet<Arc<str>>,
}

impl Sweeper {
    pub fn new(registry: Arc<Registry>) -> Self {
        Self {
            registry,
            tripped: HashSet::new(),
        }
    }

    pub async fn sweep_once(&mut self) -> Result<SweepReport, StoreError> {
        let liveness = self.registry.liveness().clone();
        if !liveness.store_reachable() {
            return Ok(SweepReport {
                skipped: true,
                ..Default::default()
            });
        }
        let (at, wall) = (Instant::now(), now());
        let mut expired = Vec::new();
        liveness.leases.expired(at, &mut expired);
        if expired.is_empty() && self.tripped.is_empty() {
            return Ok(SweepReport::default());
        }
        let mut by_namespace: HashMap<Arc<str>, Vec<Uuid>> = HashMap::new();
        for (id, ns) in expired {
            by_namespace.entry(ns).or_default().push(id);
        }
        let holders = liveness.leases.holders();
        let config = &liveness.config;
        let mut report = SweepReport::default();
        let mut candidates = Vec::new();
        for (ns, ids) in by_namespace {
            let held = holders.get(&ns).copied().unwrap_or(ids.len());
            let share = ids.len() as f64 / held.max(1) as f64;
            if ids.len() > config.expiry_guard_floor && share > config.expiry_guard {
                liveness
                    .counters
                    .guard_trips
                    .fetch_add(1, Ordering::Relaxed);
                if self.tripped.insert(ns.clone()) {
                    tracing::error!(namespace = %ns, expiring = ids.len(), holding = held,
                        "self-preservation: refusing to expire more than {:.0}% of a namespace at once; \
                         re-evaluating every sweep", config.expiry_guard * 100.0);
                }
                report.guarded.push(ns.to_string());
                continue;
            }
            candidates.extend(ids);
        }
        let guarded: HashSet<&str> = report.guarded.iter().map(String::as_str).collect();
        self.tripped.retain(|ns| {
            let still = guarded.contains(&**ns);
            if !still {
                tracing::warn!(namespace = %ns, "self-preservation released");
            }
            still
        });
        if candidates.is_empty() {
            return Ok(report);
        }
        let outcome = match self.registry.store().expire(&candidates, wall).await {
            Ok(o) => o,
            Err(e) => {
                if matches!(e, StoreError::Unavailable(_)) {
                    liveness.set_store_reachable(false);
                }
                return Err(e);
            }
        };
        for (id, beat_at) in &outcome.renewed {
            liveness.leases.renew_from_store(*id, *beat_at, at, wall);
        }
        report.expired = outcome.changes.instances.len();
        liveness
            .counters
            .expiries
            .fetch_add(report.expired as u64, Ordering::Relaxed);
        for dead in &outcome.changes.instances {
            tracing::info!(instance_id = %dead.instance_id, namespace = %dead.namespace,
                logical_id = %dead.logical_id, "lease expired");
        }
        self.registry.apply_committed(outcome.changes);
        Ok(report)
    }

    /// Sweeps every `sweep_interval` until `stop` flips.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.registry.liveness().config.sweep_interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            if let Err(e) = self.sweep_once().await {
                tracing::warn!(error = %e, "sweep failed; will retry");
            }
        }
    }
}
