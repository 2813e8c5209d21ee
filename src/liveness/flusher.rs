//! The batched flusher: every interval, one statement writes `last_heartbeat` for every
//! instance that beat since the last flush, however many there are — and whether beats reach
//! the store decides whether this replica goes on vouching for them (`persist.rs`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::TimeDelta;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use uuid::Uuid;

use crate::registry::Registry;
use crate::storage::StoreError;

/// Flushes once; on failure the renewals are marked dirty again for the next attempt.
/// `batch` is reused between calls so steady-state flushing does not allocate.
pub async fn flush_once(
    registry: &Registry,
    batch: &mut Vec<(Uuid, Instant)>,
) -> Result<usize, StoreError> {
    let liveness = registry.liveness();
    batch.clear();
    let taken = Instant::now();
    let shortest = liveness.leases.take_dirty(batch);
    if batch.is_empty() {
        // Nothing acknowledged is waiting for the store.
        liveness.persistence.persisted_through(taken, shortest);
        return Ok(0);
    }
    liveness.persistence.note_shortest(shortest);
    // Discover's LIVE view follows the leases held here, even while the store is away; the
    // times are on the store's clock, as the flush will write them.
    let store_now = liveness.clock.now();
    let estimates: Vec<_> = batch
        .iter()
        .map(|(id, beat)| {
            let age =
                TimeDelta::from_std(taken.saturating_duration_since(*beat)).unwrap_or_default();
            (*id, store_now - age)
        })
        .collect();
    registry.index().renew_many(&estimates);
    let started = Instant::now();
    match registry.store().flush_heartbeats(batch).await {
        Ok(_) => {
            let m = registry.metrics();
            m.flush_seconds.observe(started.elapsed().as_secs_f64());
            m.flush_rows.observe(batch.len() as f64);
            let c = &liveness.counters;
            c.flushes.fetch_add(1, Ordering::Relaxed);
            c.flushed_rows
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            c.largest_flush
                .fetch_max(batch.len() as u64, Ordering::Relaxed);
            // Every beat acknowledged before the batch was taken is stored now.
            liveness.persistence.persisted_through(taken, shortest);
            Ok(batch.len())
        }
        Err(e) => {
            liveness.leases.mark_dirty(batch);
            liveness
                .counters
                .flush_failures
                .fetch_add(1, Ordering::Relaxed);
            liveness.persistence.review();
            tracing::warn!(error = %e, rows = batch.len(), "heartbeat flush failed; will retry");
            Err(e)
        }
    }
}

/// The window over which the heartbeat rate is measured for adaptive back-off.
const RATE_WINDOW: Duration = Duration::from_secs(5);

/// How often, between and during flushes, the replica re-judges whether it may vouch for its
/// beats (a flush may hang until the store timeout; the decision must not wait for it).
const REVIEW_EVERY: Duration = Duration::from_millis(250);

/// Flushes every `flush_interval` until `stop` flips, then flushes one last time.
pub async fn run(registry: Arc<Registry>, mut stop: watch::Receiver<bool>) {
    let every = registry.liveness().config.flush_interval;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut review = tokio::time::interval(REVIEW_EVERY.min(every));
    review.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut batch = Vec::new();
    let mut last = (Instant::now(), 0u64);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = review.tick() => {
                registry.liveness().persistence.review();
                continue;
            }
            _ = stop.wait_for(|s| *s) => break,
        }
        {
            let flush = flush_once(&registry, &mut batch);
            tokio::pin!(flush);
            loop {
                tokio::select! {
                    _ = &mut flush => break,
                    // Still polled while the store takes its time: not wedged.
                    _ = review.tick() => {
                        registry.liveness().persistence.review();
                        registry.liveness().progress.flusher_round();
                    }
                }
            }
        }
        // Adaptive back-off: the advised interval follows the heartbeat rate, measured over a
        // window long enough not to alias with the agents' own beat period.
        let liveness = registry.liveness();
        liveness.progress.flusher_round();
        let beats = liveness.counters.heartbeats.load(Ordering::Relaxed);
        let secs = last.0.elapsed().as_secs_f64();
        if secs >= RATE_WINDOW.as_secs_f64() {
            liveness.observe_rate((beats - last.1) as f64 / secs);
            last = (Instant::now(), beats);
        }
    }
    if let Err(e) = flush_once(&registry, &mut batch).await {
        tracing::error!(error = %e, "final heartbeat flush failed at shutdown");
    }
}
