//! Whether the loops that keep leases true (the flusher and the sweeper) still make progress:
//! what the liveness probe reports. The flusher stamps while it waits on a flush too, the
//! sweeper after every store call (each bounded in time), so a loop silent for much longer than
//! one call is wedged, not waiting on the store.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub struct Progress {
    base: Instant,
    /// Milliseconds after `base` when the flusher and the sweeper last finished a round.
    flusher: AtomicU64,
    sweeper: AtomicU64,
    /// A loop silent for longer is wedged.
    limit: Duration,
}

impl Progress {
    /// `interval` is the longest of the loops' periods.
    pub fn new(interval: Duration) -> Progress {
        Progress {
            base: Instant::now(),
            flusher: AtomicU64::new(0),
            sweeper: AtomicU64::new(0),
            // Rounds wait on the store at most a few timeouts; this is far beyond any of them.
            limit: Duration::from_secs(120) + interval * 10,
        }
    }

    fn stamp(&self, at: &AtomicU64) {
        at.store(self.base.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub fn flusher_round(&self) {
        self.stamp(&self.flusher);
    }

    pub fn sweeper_round(&self) {
        self.stamp(&self.sweeper);
    }

    /// The loop that stopped making progress, if one did.
    pub fn wedged(&self) -> Option<&'static str> {
        let now = self.base.elapsed();
        [("flusher", &self.flusher), ("sweeper", &self.sweeper)]
            .into_iter()
            .find(|(_, at)| {
                let last = Duration::from_millis(at.load(Ordering::Relaxed));
                now.saturating_sub(last) > self.limit
            })
            .map(|(name, _)| name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_loop_silent_far_beyond_its_bounds_is_wedged() {
        let p = Progress::new(Duration::from_secs(1));
        p.flusher_round();
        p.sweeper_round();
        tokio::time::advance(Duration::from_secs(100)).await;
        p.flusher_round();
        assert_eq!(p.wedged(), None);
        tokio::time::advance(Duration::from_secs(40)).await;
        assert_eq!(p.wedged(), Some("sweeper"));
        p.sweeper_round();
        assert_eq!(p.wedged(), None);
    }
}
