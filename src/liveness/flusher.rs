//! The batched, lazy flusher: every interval, one statement writes `last_heartbeat` for the
//! instances that beat since their stored beat grew older than the flush lag (a share of the
//! lease), however many there are — and whether beats reach the store decides whether this
//! replica goes on vouching for them (`persist.rs`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::TimeDelta;
use tokio::time::{Instant, MissedTickBehavior};
use uuid::Uuid;

use super::Liveness;
use crate::common::Stop;
use crate::index::Index;
use crate::metrics::Metrics;
use crate::storage::{Store, StoreError};

/// What the flusher needs: the leases, the store to write them to, the index whose LIVE view
/// follows them, and the instruments it records into.
#[derive(Clone)]
pub struct Flusher {
    pub liveness: Arc<Liveness>,
    pub store: Arc<dyn Store>,
    pub index: Arc<Index>,
    pub metrics: Arc<Metrics>,
}

impl Flusher {
    /// Flushes once: Discover's LIVE view follows every renewal, and the beats whose stored
    /// beat has grown old enough (the lazy flush; every unstored beat when `eager`) are written
    /// in one statement. A failed write leaves them unstored, so the next flush retries them.
    /// `batch` is reused between calls so steady-state flushing does not allocate.
    pub async fn flush_once(&self, batch: &mut Batch, eager: bool) -> Result<usize, StoreError> {
        let liveness = &self.liveness;
        batch.renewed.clear();
        batch.due.clear();
        let taken = Instant::now();
        let config = &liveness.config;
        let lag = |ttl| match eager {
            true => Duration::ZERO,
            false => config.flush_lag(ttl),
        };
        let shortest = liveness
            .leases
            .take(taken, lag, &mut batch.renewed, &mut batch.due);
        if !batch.renewed.is_empty() {
            // Discover's LIVE view follows the leases held here, even while the store is away;
            // the times are on the store's clock, as a flush writes them.
            let store_now = liveness.clock.now();
            let estimates: Vec<_> = batch
                .renewed
                .iter()
                .map(|(id, beat)| {
                    let age = TimeDelta::from_std(taken.saturating_duration_since(*beat))
                        .unwrap_or_default();
                    (*id, store_now - age)
                })
                .collect();
            self.index.renew_many(&estimates);
        }
        if batch.due.is_empty() {
            // Every beat acknowledged is stored, or the store holds one recent enough for it.
            liveness.persistence.persisted_through(taken, shortest);
            return Ok(0);
        }
        liveness.persistence.note_shortest(shortest);
        let started = Instant::now();
        match self.store.flush_heartbeats(&batch.due).await {
            Ok(_) => {
                let m = &self.metrics;
                m.flush_seconds.observe(started.elapsed().as_secs_f64());
                m.flush_rows.observe(batch.due.len() as f64);
                liveness.leases.mark_stored(&batch.due);
                liveness
                    .counters
                    .beats_written
                    .fetch_add(batch.due.len() as u64, Ordering::Relaxed);
                // Every beat acknowledged before the batch was taken is stored now, or is
                // within the flush lag of a stored one.
                liveness.persistence.persisted_through(taken, shortest);
                Ok(batch.due.len())
            }
            Err(e) => {
                liveness
                    .counters
                    .flush_failures
                    .fetch_add(1, Ordering::Relaxed);
                liveness.persistence.review();
                tracing::warn!(error = %e, rows = batch.due.len(), "heartbeat flush failed; will retry");
                Err(e)
            }
        }
    }

    /// Flushes every `flush_interval` until `stop` flips, then flushes one last time.
    pub async fn run(self, mut stop: Stop) {
        let every = self.liveness.config.flush_interval;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut review = tokio::time::interval(REVIEW_EVERY.min(every));
        review.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut batch = Batch::default();
        let mut rate = Rate::new(&self.liveness);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = review.tick() => {
                    self.liveness.persistence.review();
                    continue;
                }
                _ = stop.wait_for(|s| *s) => break,
            }
            self.flush_reviewing(&mut batch, &mut review).await;
            self.liveness.progress.flusher_round();
            rate.observe(&self.liveness);
        }
        // Every beat acknowledged here goes to the store before the replica goes away, so the
        // replicas its agents move to start from their newest beats.
        if let Err(e) = self.flush_once(&mut batch, true).await {
            tracing::error!(error = %e, "final heartbeat flush failed at shutdown");
        }
    }

    /// One flush, re-judging meanwhile whether beats may still be vouched for: a flush may
    /// take until the store timeout, and the decision must not wait for it.
    async fn flush_reviewing(&self, batch: &mut Batch, review: &mut tokio::time::Interval) {
        let flush = self.flush_once(batch, false);
        tokio::pin!(flush);
        loop {
            tokio::select! {
                _ = &mut flush => return,
                // Still polled while the store takes its time: not wedged.
                _ = review.tick() => {
                    self.liveness.persistence.review();
                    self.liveness.progress.flusher_round();
                }
            }
        }
    }
}

/// One flush's working lists, kept between flushes so steady-state flushing does not allocate.
#[derive(Default)]
pub struct Batch {
    /// Renewals since the last flush: (instance, beat), for Discover's LIVE view.
    renewed: Vec<(Uuid, Instant)>,
    /// Beats to write now.
    due: Vec<(Uuid, Instant)>,
}

/// Adaptive back-off: the advised interval follows the heartbeat rate, measured over a window
/// long enough not to alias with the agents' own beat period.
struct Rate {
    since: Instant,
    beats: u64,
}

impl Rate {
    fn new(liveness: &Liveness) -> Self {
        Self {
            since: Instant::now(),
            beats: liveness.counters.heartbeats.load(Ordering::Relaxed),
        }
    }

    fn observe(&mut self, liveness: &Liveness) {
        let secs = self.since.elapsed().as_secs_f64();
        if secs >= RATE_WINDOW.as_secs_f64() {
            // Read once: the next window starts exactly where this one ends.
            let beats = liveness.counters.heartbeats.load(Ordering::Relaxed);
            liveness.observe_rate((beats - self.beats) as f64 / secs);
            *self = Self {
                since: Instant::now(),
                beats,
            };
        }
    }
}

/// The window over which the heartbeat rate is measured for adaptive back-off.
const RATE_WINDOW: Duration = Duration::from_secs(5);

/// How often, between and during flushes, the replica re-judges whether it may vouch for its
/// beats (a flush may hang until the store timeout; the decision must not wait for it).
const REVIEW_EVERY: Duration = Duration::from_millis(250);
