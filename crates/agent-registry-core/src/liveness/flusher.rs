//! The batched, lazy flusher: every interval, one statement writes `last_heartbeat` for the
//! instances that beat since their stored beat grew older than the flush lag (a share of the
//! lease), however many there are — and whether beats reach the store decides whether this
//! replica goes on vouching for them (`vouching.rs`).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Liveness;
use crate::storage::StoreError;

/// What the flusher needs from the rest of the replica (the registry provides it): the LIVE
/// view to move, and the store to write beats to.
pub trait FlushPort: Send + Sync + 'static {
    /// Moves Discover's LIVE view to newer beats (times on the store's clock).
    fn renew_listed(&self, beats: &[(Uuid, DateTime<Utc>)]);

    /// Writes the beats (each as its age on this process's monotonic clock) in one
    /// statement.
    fn write_beats(
        &self,
        beats: &[(Uuid, Instant)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Flushes the leases of one `Liveness` through its port.
pub struct Flusher<P> {
    liveness: Arc<Liveness>,
    port: Arc<P>,
}

impl<P: FlushPort> Flusher<P> {
    pub fn new(liveness: Arc<Liveness>, port: Arc<P>) -> Self {
        Self { liveness, port }
    }

    /// Flushes once: Discover's LIVE view follows every renewal, and the beats whose stored
    /// beat has grown old enough (the lazy flush; every unstored beat when `eager`) are written
    /// in one statement. A failed write leaves them unstored, so the next flush retries them.
    /// `batch` is reused between calls so steady-state flushing does not allocate.
    async fn flush_once(&self, batch: &mut Batch, eager: bool) -> Result<usize, StoreError> {
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
            self.port.renew_listed(&estimates);
        }
        if batch.due.is_empty() {
            // Every beat acknowledged is stored, or the store holds one recent enough for it.
            liveness.vouching.persisted_through(taken, shortest);
            return Ok(0);
        }
        liveness.vouching.note_shortest(shortest);
        match self.port.write_beats(&batch.due).await {
            Ok(()) => {
                liveness.leases.mark_stored(&batch.due);
                liveness
                    .counters
                    .beats_written
                    .fetch_add(batch.due.len() as u64, Ordering::Relaxed);
                // Every beat acknowledged before the batch was taken is stored now, or is
                // within the flush lag of a stored one.
                liveness.vouching.persisted_through(taken, shortest);
                Ok(batch.due.len())
            }
            Err(e) => {
                liveness
                    .counters
                    .flush_failures
                    .fetch_add(1, Ordering::Relaxed);
                liveness.vouching.review();
                tracing::warn!(error = %e, rows = batch.due.len(), "heartbeat flush failed; will retry");
                Err(e)
            }
        }
    }

    /// Flushes every `flush_interval` until `stop` is cancelled, then flushes one last time.
    pub async fn run(self, stop: CancellationToken) {
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
                    self.liveness.vouching.review();
                    continue;
                }
                _ = stop.cancelled() => break,
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
                    self.liveness.vouching.review();
                    self.liveness.progress.flusher_round();
                }
            }
        }
    }
}

/// One flush's working lists, kept between flushes so steady-state flushing does not allocate.
#[derive(Default)]
struct Batch {
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
