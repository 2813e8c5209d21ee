//! Whether this replica may go on acknowledging heartbeats: only while what it acknowledged
//! reaches the store soon enough for other replicas to see it.
//!
//! Other replicas judge an agent by its stored heartbeat. A replica whose flushes stop landing
//! (cut off from Postgres while the others reach it, a hung connection, a read-only or full
//! database) would keep acknowledging beats the others never see, and they would expire its
//! agents. So once its last successful flush is older than a bound — a share of the shortest
//! lease it holds, never less than two flush intervals — it stops vouching: its heartbeat streams
//! end with UNAVAILABLE, new ones are refused, and readiness turns NOT_SERVING, so agents move to
//! a replica that can persist them. It vouches again after the next successful flush.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// Why heartbeat streams must end now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStop {
    /// The server is shutting down.
    ShuttingDown,
    /// This replica's beats are not reaching the store.
    CannotPersist,
}

/// Whether this replica vouches for the beats it acknowledges now, and since when they wait.
#[derive(Debug)]
pub struct Vouching {
    /// Share of the shortest lease held that beats may stay unpersisted.
    fraction: f64,
    /// Never less than this (two flush intervals: a flush lands about once per interval).
    floor: Duration,
    /// Every beat acknowledged up to this instant is in the store (or there was none to write).
    persisted: Mutex<Instant>,
    /// The shortest lease held, in milliseconds (0: none).
    shortest_ms: AtomicU64,
    /// Streams follow this: `None` while they may stay open.
    stop: watch::Sender<Option<StreamStop>>,
    /// Times this replica stopped vouching.
    lapses: AtomicU64,
}

impl Vouching {
    pub fn new(fraction: f64, flush_interval: Duration) -> Vouching {
        Vouching {
            fraction,
            floor: flush_interval * 2,
            persisted: Mutex::new(Instant::now()),
            shortest_ms: AtomicU64::new(0),
            stop: watch::Sender::new(None),
            lapses: AtomicU64::new(0),
        }
    }

    fn persisted(&self) -> Instant {
        *crate::common::lock(&self.persisted)
    }

    /// Every beat acknowledged by `through` is stored (a flush measured then succeeded, or
    /// there was nothing to write); `shortest` is the shortest lease held.
    pub fn persisted_through(&self, through: Instant, shortest: Option<Duration>) {
        {
            let mut p = crate::common::lock(&self.persisted);
            *p = (*p).max(through);
        }
        self.note_shortest(shortest);
        self.review();
    }

    /// The shortest lease held, as the last flush saw it.
    pub fn note_shortest(&self, shortest: Option<Duration>) {
        let ms = shortest.map_or(0, |d| d.as_millis().max(1) as u64);
        self.shortest_ms.store(ms, Ordering::Relaxed);
    }

    /// How long acknowledged beats may stay unpersisted before this replica stops vouching.
    pub fn bound(&self) -> Duration {
        match self.shortest_ms.load(Ordering::Relaxed) {
            0 => self.floor,
            ms => Duration::from_millis(ms)
                .mul_f64(self.fraction)
                .max(self.floor),
        }
    }

    /// How long the oldest unpersisted acknowledgement has waited.
    pub fn unpersisted_for(&self) -> Duration {
        self.persisted().elapsed()
    }

    /// Re-evaluates whether to vouch; ends or re-opens heartbeat streams accordingly.
    pub fn review(&self) {
        let lapsed = self.unpersisted_for() > self.bound();
        self.stop.send_if_modified(|s| match (*s, lapsed) {
            (Some(StreamStop::ShuttingDown), _) => false,
            (None, true) => {
                self.lapses.fetch_add(1, Ordering::Relaxed);
                tracing::error!(unpersisted = ?self.unpersisted_for(), bound = ?self.bound(),
                    "heartbeats are not reaching the store: ending heartbeat streams with UNAVAILABLE \
                     (agents move to a replica that can persist them), readiness NOT_SERVING");
                *s = Some(StreamStop::CannotPersist);
                true
            }
            (Some(StreamStop::CannotPersist), false) => {
                tracing::warn!("heartbeats reach the store again: accepting heartbeat streams");
                *s = None;
                true
            }
            _ => false,
        });
    }

    /// Why streams must end, if they must.
    pub fn stopped(&self) -> Option<StreamStop> {
        *self.stop.borrow()
    }

    /// Ends every stream for good: the server is going away.
    pub fn shut_down(&self) {
        self.stop.send_replace(Some(StreamStop::ShuttingDown));
    }

    /// Resolves, with the reason, once streams must end (at once if they must already).
    pub fn must_end(&self) -> impl std::future::Future<Output = StreamStop> + Send + 'static {
        let mut rx = self.stop.subscribe();
        async move {
            match rx.wait_for(|s| s.is_some()).await {
                Ok(s) => s.unwrap_or(StreamStop::ShuttingDown),
                Err(_) => StreamStop::ShuttingDown,
            }
        }
    }

    pub fn lapses(&self) -> u64 {
        self.lapses.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[tokio::test(start_paused = true)]
    async fn a_replica_stops_vouching_once_its_beats_are_too_long_unpersisted() {
        let p = Vouching::new(1.0 / 3.0, S(1));
        p.persisted_through(Instant::now(), Some(S(15)));
        assert_eq!(p.bound(), S(5));
        let ended = p.must_end();
        tokio::time::advance(S(4)).await;
        p.review();
        assert!(
            p.stopped().is_none(),
            "within a third of the shortest lease"
        );
        tokio::time::advance(S(2)).await;
        p.review();
        assert!(p.stopped().is_some());
        assert_eq!(ended.await, StreamStop::CannotPersist);
        assert_eq!(p.lapses(), 1);
        p.persisted_through(Instant::now(), Some(S(15)));
        assert!(p.stopped().is_none(), "a successful flush restores it");
        // Short leases are bounded below by two flush intervals.
        p.note_shortest(Some(S(2)));
        assert_eq!(p.bound(), S(2));
        p.shut_down();
        p.persisted_through(Instant::now(), None);
        assert_eq!(
            p.stopped(),
            Some(StreamStop::ShuttingDown),
            "shutdown is final"
        );
    }
}
