//! Change fan-out: the hub that hands committed changes to watchers, the change feed that keeps
//! this replica current with every other one (polling the store's change log, woken early by a
//! Redis bell), dead-instance retention, and the Watch stream logic itself.

pub mod bell;
pub mod feed;
mod hub;
pub mod outbox;
pub mod retention;
pub mod watch;

use std::time::Duration;

pub use hub::{Hub, Item, Subscription};

/// Tuning of the change feed and of watchers.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// Changes kept in memory for watchers that resume (older ones are read from the store).
    pub history: usize,
    /// How far (in changes) a live watcher may fall behind before it is cut off.
    pub buffer: usize,
    /// How often a watcher gets a progress-only message.
    pub bookmark_interval: Duration,
    /// How often the change log is polled (Redis, when configured, wakes it sooner).
    pub poll_interval: Duration,
    /// How long dead instances (and the change log) are kept.
    pub dead_retention: Duration,
    /// How long a watcher's next message may wait for the client before it is cut off.
    pub stall_timeout: Duration,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            history: 16 * 1024,
            buffer: 4 * 1024,
            bookmark_interval: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            dead_retention: Duration::from_secs(3600),
            stall_timeout: Duration::from_secs(30),
        }
    }
}
