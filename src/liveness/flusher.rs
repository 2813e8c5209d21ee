//! The batched flusher: every interval, one statement writes `last_heartbeat` for every
//! instance that beat since the last flush, however many there are.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use uuid::Uuid;

use crate::registry::Registry;
use crate::storage::StoreError;

/// Flushes once; on failure the renewals are marked dirty again for the next attempt.
/// `batch` is reused between calls so steady-state flushing does not allocate.
pub async fn flush_once(
    registry: &Registry,
    batch: &mut Vec<(Uuid, DateTime<Utc>)>,
) -> Result<usize, StoreError> {
    let liveness = registry.liveness();
    batch.clear();
    liveness.leases.take_dirty(batch);
    if batch.is_empty() {
        return Ok(0);
    }
    // Discover's LIVE view follows the leases held here, even while the store is away.
    registry.index().renew_many(batch);
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
            liveness.set_store_reachable(true);
            Ok(batch.len())
        }
        Err(e) => {
            liveness.leases.mark_dirty(batch);
            liveness
                .counters
                .flush_failures
                .fetch_add(1, Ordering::Relaxed);
            if matches!(e, StoreError::Unavailable(_)) {
                liveness.set_store_reachable(false);
            }
            tracing::warn!(error = %e, rows = batch.len(), "heartbeat flush failed; will retry");
            Err(e)
        }
    }
}

/// The window over which the heartbeat rate is measured for adaptive back-off.
const RATE_WINDOW: std::time::Duration = std::time::Duration::from_secs(5);

/// Flushes every `flush_interval` until `stop` flips, then flushes one last time.
pub async fn run(registry: Arc<Registry>, mut stop: watch::Receiver<bool>) {
    let every = registry.liveness().config.flush_interval;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut batch = Vec::new();
    let mut last = (Instant::now(), 0u64);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let _ = flush_once(&registry, &mut batch).await;
        // Adaptive back-off: the advised interval follows the heartbeat rate, measured over a
        // window long enough not to alias with the agents' own beat period.
        let liveness = registry.liveness();
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
