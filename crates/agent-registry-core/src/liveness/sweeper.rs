//! The sweeper: expires leases that ran out, a bounded chunk per transaction (one set-based
//! statement each), guarded against wiping a namespace when the registry rather than the agents
//! lost the network.
//!
//! Safe with several replicas: the store re-checks each candidate's stored heartbeat against
//! its own clock inside the transaction, with the rows locked (another replica may have renewed
//! it), and a dead row is never expired again, so there are no double events; any replica's
//! sweeper expires any instance, so nothing is missed when one replica dies.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::time::Instant;
use uuid::Uuid;

use super::{FlushPort, Lease, Liveness};
use tokio_util::sync::CancellationToken;

use crate::common::Every;
use crate::storage::{Slack, StoreError, StoredBeat};

/// Most leases whose stored heartbeat one query reads.
const REFRESH_CHUNK: usize = 10_000;

/// Most candidates one expiry transaction (one set-based statement) judges: a mass expiry is a
/// few short transactions, so the revision lock is never held long and other writers interleave.
pub const EXPIRE_CHUNK: usize = 1_000;

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    pub expired: usize,
    /// Namespaces held back by the self-preservation guard.
    pub guarded: Vec<String>,
    /// Skipped entirely because the store is unreachable.
    pub skipped: bool,
}

/// What the sweeper needs from the rest of the replica (the registry provides it): what the
/// flusher needs (the LIVE view to move), stored heartbeats, and the expiry use case itself.
pub trait ExpiryPort: FlushPort {
    /// The stored heartbeats of those of `ids` that are not dead.
    fn stored_beats(
        &self,
        ids: &[Uuid],
    ) -> impl Future<Output = Result<Vec<StoredBeat>, StoreError>> + Send;

    /// In one transaction, expires those of `ids` whose stored lease ran out more than `slack`
    /// ago, and applies the deaths on this replica; returns how many died and the stored beats
    /// of the candidates found renewed (another replica kept them alive).
    fn expire(
        &self,
        ids: &[Uuid],
        slack: Slack,
    ) -> impl Future<Output = Result<ExpiryOutcome, StoreError>> + Send;
}

/// What the store decided about one chunk of candidates.
#[derive(Debug, Default)]
pub struct ExpiryOutcome {
    pub expired: usize,
    pub renewed: Vec<StoredBeat>,
}

pub struct Sweeper<P> {
    liveness: Arc<Liveness>,
    port: Arc<P>,
    /// Namespaces currently held back, to log entering and leaving once each.
    tripped: HashSet<Arc<str>>,
}

impl<P: ExpiryPort> Sweeper<P> {
    pub fn new(liveness: Arc<Liveness>, port: Arc<P>) -> Self {
        Self {
            liveness,
            port,
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
        let liveness = self.liveness.clone();
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
        *crate::common::lock(&liveness.guard_holding) =
            self.tripped.iter().map(|ns| ns.to_string()).collect();
        cleared
    }

    /// Leases about to run out here may be kept alive by beats on another replica, which reach
    /// this one only through the store: read their stored heartbeats first, so Discover's LIVE
    /// view stays true on every replica and only leases that really lapsed are claimed.
    async fn refresh(&mut self, at: Instant) -> Result<(), StoreError> {
        let liveness = self.liveness.clone();
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
        let slack = config.expiry_slack();
        for chunk in due.chunks(REFRESH_CHUNK) {
            let ids: Vec<Uuid> = chunk.iter().map(|(id, _, _)| *id).collect();
            let stored = self.port.stored_beats(&ids).await?;
            // Each store call is bounded: one finished is progress (for the liveness probe).
            liveness.progress.sweeper_round();
            // Applied per chunk, so what was read stands even if a later chunk fails.
            let mut renewed = Vec::new();
            for beat in stored {
                let Some((known_beat, ttl)) = known.get(&beat.instance_id) else {
                    continue;
                };
                // Compared on this process's clock: the stored beat's age was measured by the
                // store's clock alone.
                if beat.local <= *known_beat {
                    continue;
                }
                // The same slack as the expiry re-check: another replica's beats reach the
                // store late by up to that much.
                let deadline = beat.local + *ttl + slack.of(*ttl);
                if liveness
                    .leases
                    .extend(beat.instance_id, beat.local, deadline)
                {
                    renewed.push((beat.instance_id, beat.at));
                }
            }
            self.port.renew_listed(&renewed);
        }
        Ok(())
    }

    /// One sweep: leases about to run out are refreshed from the store, those run out are
    /// claimed, weighed by the self-preservation guard, and sent to the store in chunks.
    pub async fn sweep_once(&mut self) -> Result<SweepReport, StoreError> {
        let liveness = self.liveness.clone();
        let mut report = SweepReport::default();
        if !liveness.store_reachable() {
            report.skipped = true;
            return Ok(report);
        }
        // An outage that ended since the last sweep renews every lease before anything is
        // claimed (SPEC §4.3); one that ends while this sweep runs calls it off.
        // (Counted first: an outage that ends in between is granted, and calls the sweep off.)
        let outages = liveness.store_health.recoveries();
        liveness.grant_grace();
        // A store that cannot be reached for this read is not asked to expire anything either.
        // Any other failure of this read (it is only an optimisation; the expiry re-checks the
        // store) is logged and the sweep goes on, so a bad row cannot stop expiry for good.
        match self.refresh(Instant::now()).await {
            Err(e @ (StoreError::Unavailable(_) | StoreError::Saturated(_))) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "reading stored heartbeats before the sweep failed")
            }
            Ok(()) => {}
        }
        let at = Instant::now();
        let mut claimed = Vec::new();
        liveness.leases.claim_expired(at, &mut claimed);
        if claimed.is_empty() && self.tripped.is_empty() {
            return Ok(report);
        }
        let mut candidates = self.guard(claimed, at, &mut report);
        // The store may have failed another caller while this sweep read it.
        if !liveness.store_reachable() {
            self.release_all(candidates.drain(..));
            report.skipped = true;
        }
        // Oldest first, so a sweep cut short by a failure has expired the longest-dead.
        candidates.sort_unstable_by_key(|(_, l)| l.deadline);
        self.expire_in_chunks(candidates, outages, &mut report)
            .await?;
        Ok(report)
    }

    /// Sends the candidates to the store a chunk per transaction, until done or until the
    /// store fails or an outage ends (the rest are released unchanged, for the next sweep).
    async fn expire_in_chunks(
        &mut self,
        candidates: Vec<(Uuid, Lease)>,
        outages: u64,
        report: &mut SweepReport,
    ) -> Result<(), StoreError> {
        let liveness = self.liveness.clone();
        let slack = liveness.config.expiry_slack();
        let mut rest = candidates.into_iter();
        loop {
            let chunk: Vec<(Uuid, Lease)> = rest.by_ref().take(EXPIRE_CHUNK).collect();
            if chunk.is_empty() {
                return Ok(());
            }
            if liveness.store_health.recoveries() != outages || !liveness.store_reachable() {
                self.release_all(chunk.into_iter().chain(rest));
                report.skipped = true;
                return Ok(());
            }
            let ids: Vec<Uuid> = chunk.iter().map(|(id, _)| *id).collect();
            let outcome = match self.port.expire(&ids, slack).await {
                Ok(o) => o,
                Err(e) => {
                    // Nothing of this chunk or the rest was decided: the claims end unchanged.
                    self.release_all(chunk.into_iter().chain(rest));
                    return Err(e);
                }
            };
            liveness
                .counters
                .expiry_transactions
                .fetch_add(1, Ordering::Relaxed);
            liveness.progress.sweeper_round();
            self.settle(chunk, outcome, report);
        }
    }

    /// Ends claims with nothing decided: each lease keeps its deadline.
    fn release_all(&self, claims: impl Iterator<Item = (Uuid, Lease)>) {
        for (id, lease) in claims {
            self.liveness.leases.release(id, lease.deadline, None);
        }
    }

    /// Settles one committed expiry chunk (the deaths are applied already): the claims of the
    /// others are released (renewed elsewhere: from the stored beat) or dropped (dead or gone
    /// in the store).
    fn settle(
        &mut self,
        chunk: Vec<(Uuid, Lease)>,
        outcome: ExpiryOutcome,
        report: &mut SweepReport,
    ) {
        let liveness = &self.liveness;
        report.expired += outcome.expired;
        liveness
            .counters
            .expiries
            .fetch_add(outcome.expired as u64, Ordering::Relaxed);
        let renewed: HashMap<Uuid, _> = outcome
            .renewed
            .iter()
            .map(|b| (b.instance_id, b.local))
            .collect();
        let slack = liveness.config.expiry_slack();
        for (id, lease) in chunk {
            match renewed.get(&id) {
                Some(beat) => liveness.leases.release(
                    id,
                    *beat + lease.ttl + slack.of(lease.ttl),
                    Some(*beat),
                ),
                None => liveness.leases.drop_claimed(id),
            }
        }
    }

    /// Sweeps every `sweep_interval` until `stop` is cancelled.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut rounds = Every::new(self.liveness.config.sweep_interval, stop);
        while rounds.next().await {
            if let Err(e) = self.sweep_once().await {
                tracing::warn!(error = %e, "sweep failed; will retry");
            }
            self.liveness.progress.sweeper_round();
        }
    }
}
