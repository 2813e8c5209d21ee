//! Exponential back-off with full jitter: each wait is drawn uniformly from zero up to the
//! current ceiling, which doubles per attempt up to a cap — so a fleet that lost its server at
//! once does not come back at once.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    attempt: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(10))
    }
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
            attempt: 0,
        }
    }

    /// The ceiling of the next wait: `base × 2^attempt`, at most `cap`.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The next wait, drawn from `0..=ceiling`.
    pub fn next_wait(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let micros = rand::thread_rng().gen_range(0..=ceiling.as_micros() as u64);
        Duration::from_micros(micros)
    }

    /// After a success: the next failure starts small again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_bounded_by_a_doubling_ceiling_and_jittered() {
        let (base, cap) = (Duration::from_millis(100), Duration::from_secs(2));
        let mut b = Backoff::new(base, cap);
        let mut waits = Vec::new();
        for n in 0..12u32 {
            let ceiling = (base * 2u32.pow(n)).min(cap);
            assert_eq!(b.ceiling(), ceiling);
            let w = b.next_wait();
            assert!(w <= ceiling, "attempt {n}: {w:?} > {ceiling:?}");
            waits.push(w);
        }
        assert!(waits.iter().all(|w| *w <= cap));
        // Capped attempts draw from the same range, and do not all agree.
        let capped: Vec<_> = (0..50).map(|_| b.next_wait()).collect();
        assert!(capped.iter().all(|w| *w <= cap));
        assert!(capped.iter().any(|w| *w != capped[0]), "jittered");
        b.reset();
        assert_eq!(b.ceiling(), base);
    }
}
