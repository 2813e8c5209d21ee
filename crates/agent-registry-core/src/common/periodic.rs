//! The loop every background task runs on: wait for the next tick (or an early wake-up), do one
//! round, until the replica's cancellation token is cancelled. Ticks missed while a round ran
//! are not made up.
//!
//! ```ignore
//! let mut rounds = Every::new(period, stop);
//! while rounds.next().await {
//!     // one round
//! }
//! ```

use std::future::Future;
use std::time::Duration;

use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// Rounds at a period until a cancellation token is cancelled.
pub struct Every {
    tick: Interval,
    stop: CancellationToken,
}

impl Every {
    /// Rounds every `period`, the first at once.
    pub fn new(period: Duration, stop: CancellationToken) -> Self {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self { tick, stop }
    }

    /// Waits for the next round: true when it is due, false once `stop` is cancelled.
    pub async fn next(&mut self) -> bool {
        self.next_or(std::future::pending()).await
    }

    /// Like [`Every::next`], with `wake` starting the round early.
    pub async fn next_or(&mut self, wake: impl Future<Output = ()>) -> bool {
        // A stop already signalled wins over a tick that is also ready (select! picks at random).
        if self.stop.is_cancelled() {
            return false;
        }
        tokio::select! {
            _ = self.tick.tick() => true,
            _ = wake => true,
            _ = self.stop.cancelled() => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rounds_follow_the_period_and_end_on_stop() {
        let stop = CancellationToken::new();
        let rx = stop.clone();
        let task = tokio::spawn(async move {
            let mut rounds = Every::new(Duration::from_secs(1), rx);
            let mut n = 0;
            while rounds.next().await {
                n += 1;
            }
            n
        });
        tokio::time::sleep(Duration::from_millis(3500)).await;
        stop.cancel();
        // At 0, 1, 2 and 3 s, then none after the stop.
        assert_eq!(task.await.unwrap(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wake_up_starts_a_round_early() {
        let poke = tokio::sync::Notify::new();
        let mut rounds = Every::new(Duration::from_secs(60), CancellationToken::new());
        assert!(rounds.next().await, "the first round is at once");
        let started = tokio::time::Instant::now();
        poke.notify_one();
        assert!(rounds.next_or(poke.notified()).await);
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "woken before the minute"
        );
    }
}
