//! The sweeper: expires leases that ran out, in one transaction per sweep, guarded against
//! wiping a namespace when the registry rather than the agents lost the network.
//!
//! Safe with several replicas: the store re-checks each candidate's stored heartbeat inside the
//! transaction, with the rows locked (another replica may have renewed it), and the state
//! machine makes a second expiry of a dead instance a no-op, so there are no double events; any
//! replica's sweeper expires any instance, so nothing is missed when one replica dies.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use uuid::Uuid;

use super::Lease;
use crate::domain::now;
use crate::registry::Registry;
use crate::storage::StoreError;

/// Most leases whose stored heartbeat one query reads.
const REFRESH_CHUNK: usize = 10_000;

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

    /// Decides, per namespace, which claimed leases may go to the store; the others are
    /// released unchanged (still run out, so the next sweep weighs them again).
    ///
    /// The guard weighs this sweep's candidates together with the namespace's lease expiries
    /// in the window (by any replica), so a loss spread over several sweeps — agents' last
    /// beats are spread over their interval — trips it like a loss in one. The window is at
    /// least the longest lease being judged.
    fn guard(
        &mut self,
        claimed: Vec<(Uuid, Lease)>,
        at: Instant,
        report: &mut SweepReport,
    ) -> Vec<(Uuid, Lease)> {
        let liveness = self.registry.liveness().clone();
        let config = &liveness.config;
        let mut by_ns: HashMap<Arc<str>, Vec<(Uuid, Lease)>> = HashMap::new();
        for (id, lease) in claimed {
            by_ns
                .entry(lease.namespace.clone())
                .or_default()
                .push((id, lease));
        }
        // Claimed leases are still in the table, so they are among the holders.
        let holders = liveness.leases.holders();
        let mut cleared = Vec::new();
        for (ns, leases) in by_ns {
            let longest = leases.iter().map(|(_, l)| l.ttl).max().unwrap_or_default();
            let window = config.expiry_guard_window.max(longest);
            let recent = liveness.recent_expiries(&ns, window, at);
            let lost = recent + leases.len();
            let base = holders.get(&ns).copied().unwrap_or(leases.len()) + recent;
            if lost > config.expiry_guard_floor
                && lost as f64 / base.max(1) as f64 > config.expiry_guard
            {
                liveness
                    .counters
                    .guard_trips
                    .fetch_add(1, Ordering::Relaxed);
                if self.tripped.insert(ns.clone()) {
                    tracing::error!(namespace = %ns, expiring = leases.len(), recently_expired = recent,
                        holding = base, "self-preservation: refusing to expire more than {:.0}% of a \
                        namespace at once; re-evaluating every sweep", config.expiry_guard * 100.0);
                }
                for (id, lease) in leases {
                    liveness.leases.release(id, lease.deadline, None);
                }
                report.guarded.push(ns.to_string());
                continue;
            }
            cleared.extend(leases);
        }
        let guarded: HashSet<&str> = report.guarded.iter().map(String::as_str).collect();
        self.tripped.retain(|ns| {
            let still = guarded.contains(&**ns);
            if !still {
                tracing::warn!(namespace = %ns, "self-preservation released");
            }
            still
        });
        cleared
    }

    /// Leases about to run out here may be kept alive by beats on another replica, which reach
    /// this one only through the store: read their stored heartbeats first, so Discover's LIVE
    /// view stays true on every replica and only leases that really lapsed are claimed.
    async fn refresh(&mut self, at: Instant) -> Result<(), StoreError> {
        let liveness = self.registry.liveness().clone();
        let config = &liveness.config;
        let lookahead = config.sweep_interval * 2 + config.flush_interval;
        let mut due = Vec::new();
        // Leases already run out are read too: one the guard held back would otherwise never
        // learn of another replica's beats again.
        liveness.leases.due(at + lookahead, &mut due);
        if due.is_empty() {
            return Ok(());
        }
        let known: HashMap<Uuid, _> = due.iter().map(|(id, b, ttl)| (*id, (*b, *ttl))).collect();
        for chunk in due.chunks(REFRESH_CHUNK) {
            let ids: Vec<Uuid> = chunk.iter().map(|(id, _, _)| *id).collect();
            let stored = self.registry.store().heartbeats(&ids).await?;
            // Applied per chunk, so what was read stands even if a later chunk fails.
            let mut renewed = Vec::new();
            let wall = now();
            for (id, beat_at) in stored {
                let Some((known_beat, ttl)) = known.get(&id) else {
                    continue;
                };
                if beat_at <= *known_beat {
                    continue;
                }
                // The same slack as the expiry re-check: another replica's beats reach the
                // store up to one flush interval late.
                let left = (beat_at + *ttl + config.flush_interval - wall)
                    .to_std()
                    .unwrap_or_default();
                if liveness.leases.extend(id, beat_at, Instant::now() + left) {
                    renewed.push((id, beat_at));
                }
            }
            self.registry.index().renew_many(&renewed);
        }
        Ok(())
    }

    pub async fn sweep_once(&mut self) -> Result<SweepReport, StoreError> {
        let liveness = self.registry.liveness().clone();
        let mut report = SweepReport::default();
        if !liveness.store_reachable() {
            report.skipped = true;
            return Ok(report);
        }
        // A store that cannot be reached for this read is not asked to expire anything either:
        // a claim made now would wait for a connection, and if the store came back meanwhile it
        // would commit at once, ahead of the grace the recovery grants every lease (SPEC §4.3).
        // Any other failure of this read (it is only an optimisation; the expiry re-checks the
        // store) is logged and the sweep goes on, so a bad row cannot stop expiry for good.
        match self.refresh(Instant::now()).await {
            Err(e @ StoreError::Unavailable(_)) => {
                liveness.set_store_reachable(false);
                return Err(e);
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading stored heartbeats before the sweep failed")
            }
            Ok(()) => {}
        }
        let (at, wall) = (Instant::now(), now());
        let mut claimed = Vec::new();
        liveness.leases.claim_expired(at, &mut claimed);
        if claimed.is_empty() && self.tripped.is_empty() {
            return Ok(report);
        }
        let mut candidates = self.guard(claimed, at, &mut report);
        // The flusher or the health check may have seen the store go while this sweep read it.
        if !liveness.store_reachable() {
            for (id, lease) in candidates.drain(..) {
                liveness.leases.release(id, lease.deadline, None);
            }
            report.skipped = true;
        }
        if candidates.is_empty() {
            return Ok(report);
        }
        let ids: Vec<Uuid> = candidates.iter().map(|(id, _)| *id).collect();
        // Another replica's beats reach the store up to one flush interval late: a stored
        // lease counts as run out only that much after its end.
        let slack = liveness.config.flush_interval;
        let outcome = match self.registry.store().expire(&ids, wall - slack).await {
            Ok(o) => o,
            Err(e) => {
                // Nothing was decided: the claims end unchanged, for the next sweep.
                for (id, lease) in candidates {
                    liveness.leases.release(id, lease.deadline, None);
                }
                if matches!(e, StoreError::Unavailable(_)) {
                    liveness.set_store_reachable(false);
                }
                return Err(e);
            }
        };
        report.expired = outcome.changes.instances.len();
        liveness
            .counters
            .expiries
            .fetch_add(report.expired as u64, Ordering::Relaxed);
        for dead in &outcome.changes.instances {
            tracing::info!(instance_id = %dead.instance_id, namespace = %dead.namespace,
                logical_id = %dead.logical_id, "lease expired");
        }
        // The deaths remove their (claimed) entries as the index applies them.
        self.registry.apply_committed(outcome.changes);
        // Renewed elsewhere (the stored heartbeat is newer): released, running from that beat.
        // Whatever else was claimed is dead or gone in the store: its entry goes too.
        // The stored beats are news for LIVE here too.
        self.registry.index().renew_many(&outcome.renewed);
        let renewed: HashMap<Uuid, _> = outcome.renewed.iter().copied().collect();
        for (id, lease) in candidates {
            match renewed.get(&id) {
                Some(beat_at) => {
                    let left = (*beat_at + lease.ttl + slack - wall)
                        .to_std()
                        .unwrap_or_default();
                    liveness.leases.release(id, at + left, Some(*beat_at));
                }
                None => liveness.leases.drop_claimed(id),
            }
        }
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
