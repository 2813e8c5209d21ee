//! Whether the store answers, judged from the outcome of every call made to it, and when an
//! outage (as opposed to a blip or a saturated pool) ended.
//!
//! A call that fails because the store cannot be reached — a connection error, a timeout, a
//! failed heartbeat flush of any kind — starts a failure run; the first success of a call that
//! began after the run started ends it. A run a failed write is part of (the store may answer
//! reads yet refuse writes: read-only after a failover, a full disk) ends only with a write. A run at least `min_outage` long is an outage: its end
//! is counted ([`StoreHealth::recoveries`]) so the liveness layer can grant every lease a grace
//! period once. Shorter runs are blips: they pause expiry while they last and grant nothing, so
//! periodic blips cannot keep a silent agent alive. A full pool (every connection busy) is
//! saturation, not an outage: it proves the store is there.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// What one call told about the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It answered (an error of the request's own, e.g. a rule, counts as an answer).
    Answered,
    /// It could not be reached in time.
    Unreachable,
    /// Every connection was busy: reachable, but without capacity for this call.
    Saturated,
    /// Nothing can be told (an unexpected error).
    Unknown,
}

#[derive(Debug)]
struct Runs {
    /// When the current failure run started; `None` while the store answers.
    failing_since: Option<Instant>,
    /// A write failed in the current run: only a write that succeeds ends it.
    writes_failing: bool,
    /// When the last answer came back.
    last_answer: Instant,
    /// When the last outage (not a blip) ended, and how long it lasted.
    last_recovery: Option<(Instant, Duration)>,
}

#[derive(Debug)]
pub struct StoreHealth {
    min_outage: Duration,
    state: Mutex<Runs>,
    recoveries: AtomicU64,
    saturations: AtomicU64,
}

impl StoreHealth {
    /// Failure runs shorter than `min_outage` are blips.
    pub fn new(min_outage: Duration) -> StoreHealth {
        StoreHealth {
            min_outage,
            state: Mutex::new(Runs {
                failing_since: None,
                writes_failing: false,
                last_answer: Instant::now(),
                last_recovery: None,
            }),
            recoveries: AtomicU64::new(0),
            saturations: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Runs> {
        crate::common::lock(&self.state)
    }

    /// Records the outcome of a call that started at `started`. `write`: for a failure, that
    /// it was a write; for an answer, that it proves writes work (it wrote something).
    pub fn report(&self, started: Instant, outcome: Outcome, write: bool) {
        match outcome {
            Outcome::Answered => self.answered(started, write),
            Outcome::Unreachable => self.unreachable(started, write),
            Outcome::Saturated => {
                self.saturations.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Unknown => {}
        }
    }

    fn answered(&self, started: Instant, write: bool) {
        let now = Instant::now();
        let mut st = self.lock();
        st.last_answer = now;
        let Some(since) = st.failing_since else {
            return;
        };
        // Only a call sent after the failures began shows the store is back — and only a
        // write, if writes were failing.
        if started < since || (st.writes_failing && !write) {
            return;
        }
        st.failing_since = None;
        st.writes_failing = false;
        let length = now.saturating_duration_since(since);
        if length >= self.min_outage {
            st.last_recovery = Some((now, length));
            self.recoveries.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                ?length,
                "store reachable again after an outage: every lease is renewed from now (grace)"
            );
        } else {
            tracing::info!(?length, min_outage = ?self.min_outage,
                "store reachable again after a blip (shorter than the minimum outage: no grace)");
        }
    }

    fn unreachable(&self, started: Instant, write: bool) {
        let mut st = self.lock();
        st.writes_failing |= write;
        if st.failing_since.is_none() {
            // The store answered at `last_answer`: the failures cannot have begun before.
            st.failing_since = Some(started.max(st.last_answer));
            tracing::error!(
                "store unreachable: expiry paused, leases held in memory; Register and state changes answer UNAVAILABLE"
            );
        }
    }

    /// No failure since the store last answered.
    pub fn reachable(&self) -> bool {
        self.lock().failing_since.is_none()
    }

    /// A write failed and none has succeeded since.
    pub fn writes_failing(&self) -> bool {
        let st = self.lock();
        st.failing_since.is_some() && st.writes_failing
    }

    /// How long the current failure run has lasted, if one is under way.
    pub fn failing_for(&self) -> Option<Duration> {
        self.lock().failing_since.map(|s| s.elapsed())
    }

    /// How many outages have ended (blips not counted).
    pub fn recoveries(&self) -> u64 {
        self.recoveries.load(Ordering::Relaxed)
    }

    /// When the last outage ended and how long it lasted.
    pub fn last_recovery(&self) -> Option<(Instant, Duration)> {
        self.lock().last_recovery
    }

    /// Calls refused because every connection was busy.
    pub fn saturations(&self) -> u64 {
        self.saturations.load(Ordering::Relaxed)
    }

    pub fn min_outage(&self) -> Duration {
        self.min_outage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[tokio::test(start_paused = true)]
    async fn a_blip_pauses_but_grants_no_grace_and_an_outage_does() {
        let h = StoreHealth::new(Duration::from_secs(3));
        h.report(Instant::now(), Outcome::Answered, false);
        tokio::time::advance(MS(500)).await;
        // A blip of one second.
        h.report(Instant::now(), Outcome::Unreachable, false);
        assert!(!h.reachable());
        tokio::time::advance(MS(1000)).await;
        h.report(Instant::now(), Outcome::Answered, false);
        assert!(h.reachable());
        assert_eq!(h.recoveries(), 0, "a blip grants no grace");

        // Failures every 10 s, each a blip, never add up to an outage.
        for _ in 0..5 {
            tokio::time::advance(Duration::from_secs(9)).await;
            h.report(Instant::now(), Outcome::Unreachable, false);
            tokio::time::advance(MS(900)).await;
            h.report(Instant::now(), Outcome::Answered, false);
        }
        assert_eq!(h.recoveries(), 0);

        // An outage of five seconds.
        let sent = Instant::now();
        tokio::time::advance(MS(100)).await;
        h.report(sent, Outcome::Unreachable, false);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(h.failing_for().unwrap() >= Duration::from_secs(5));
        h.report(Instant::now(), Outcome::Answered, false);
        assert_eq!(h.recoveries(), 1);
        let (_, length) = h.last_recovery().unwrap();
        assert!(length >= Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn only_a_call_sent_after_the_failure_shows_recovery() {
        let h = StoreHealth::new(Duration::from_secs(1));
        let early = Instant::now();
        tokio::time::advance(MS(200)).await;
        h.report(Instant::now(), Outcome::Unreachable, false);
        tokio::time::advance(Duration::from_secs(2)).await;
        // A long call sent before the failures answers: no proof the store is back.
        h.report(early, Outcome::Answered, false);
        assert!(!h.reachable());
        h.report(Instant::now(), Outcome::Answered, false);
        assert!(h.reachable());
        assert_eq!(h.recoveries(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn only_a_write_ends_a_run_of_failed_writes() {
        let h = StoreHealth::new(Duration::from_secs(1));
        h.report(Instant::now(), Outcome::Unreachable, true);
        tokio::time::advance(Duration::from_secs(5)).await;
        // Reads answer (a read-only database): the writes are still failing.
        h.report(Instant::now(), Outcome::Answered, false);
        assert!(!h.reachable() && h.writes_failing());
        h.report(Instant::now(), Outcome::Answered, true);
        assert!(h.reachable() && !h.writes_failing());
        assert_eq!(h.recoveries(), 1, "an outage of writes grants grace");
    }

    #[tokio::test(start_paused = true)]
    async fn saturation_is_not_an_outage() {
        let h = StoreHealth::new(Duration::from_secs(1));
        for _ in 0..10 {
            h.report(Instant::now(), Outcome::Saturated, false);
            tokio::time::advance(MS(500)).await;
        }
        assert!(h.reachable());
        assert_eq!(h.saturations(), 10);
        assert_eq!(h.recoveries(), 0);
    }
}
