//! The loop every background task runs on: wait for the next tick (or an early wake-up), do one
//! round, until the shared stop signal flips. Ticks missed while a round ran are not made up.
//!
//! ```ignore
//! let mut rounds = Every::new(period, stop);
//! while rounds.next().await {
//!     // one round
//! }
//! ```

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Interval, MissedTickBehavior};

/// The one cancellation signal of a server's loops: flips to `true` once, at shutdown.
pub type Stop = watch::Receiver<bool>;

pub struct Every {
    tick: Interval,
    stop: Stop,
}

impl Every {
    /// Rounds every `period`, the first at once.
    pub fn new(period: Duration, stop: Stop) -> Self {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self { tick, stop }
    }

    /// Waits for the next round: true when it is due, false once `stop` has flipped.
    pub async fn next(&mut self) -> bool {
        self.next_or(std::future::pending()).await
    }

    /// Like [`Every::next`], with `wake` starting the round early.
    pub async fn next_or(&mut self, wake: impl Future<Output = ()>) -> bool {
        // A stop already signalled wins over a tick that is also ready (select! picks at random).
        if *self.stop.borrow() {
            return false;
        }
        tokio::select! {
            _ = self.tick.tick() => true,
            _ = wake => true,
            _ = self.stop.wait_for(|s| *s) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rounds_follow_the_period_and_end_on_stop() {
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut rounds = Every::new(Duration::from_secs(1), rx);
            let mut n = 0;
            while rounds.next().await {
                n += 1;
            }
            n
        });
        tokio::time::sleep(Duration::from_millis(3500)).await;
        tx.send(true).unwrap();
        // At 0, 1, 2 and 3 s, then none after the stop.
        assert_eq!(task.await.unwrap(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wake_up_starts_a_round_early() {
        let (_tx, rx) = watch::channel(false);
        let poke = tokio::sync::Notify::new();
        let mut rounds = Every::new(Duration::from_secs(60), rx);
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
