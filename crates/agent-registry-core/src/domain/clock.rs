//! The store's clock as this replica sees it: the process clock plus the offset the last store
//! round trip measured.
//!
//! Times written to the store (heartbeats, registrations, deaths) are the database's, so every
//! replica compares them with the same clock whatever its own says; a replica that shows a stored
//! time next to "now" (Discover's LIVE view, a lease's end) uses this estimate of the database's
//! now. Decisions that expire an instance never rest on it: they compare stored times with the
//! database's own `now()` in the statement, or local monotonic instants with each other.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::types::{from_micros, now_micros};

/// The database's clock, estimated: [`now`](super::now) plus a measured offset (zero when the
/// process clock is the store's clock, as for the embedded SQLite file).
#[derive(Debug, Default)]
pub struct StoreClock {
    offset_us: AtomicI64,
}

impl StoreClock {
    /// The store's now, as of the last measurement.
    pub fn now(&self) -> DateTime<Utc> {
        self.after(Duration::ZERO)
    }

    /// The store's now plus `span`: one date built from integer microseconds (a heartbeat's
    /// lease end is computed this way on every beat).
    pub fn after(&self, span: Duration) -> DateTime<Utc> {
        let span = i64::try_from(span.as_micros()).unwrap_or(i64::MAX);
        from_micros(
            now_micros()
                .saturating_add(self.offset_us.load(Ordering::Relaxed))
                .saturating_add(span),
        )
    }

    /// Records one measurement: the store said `store_time` for a statement sent at `sent`
    /// (process clock). The error is the one-way latency.
    pub fn observe(&self, sent: DateTime<Utc>, store_time: DateTime<Utc>) {
        let offset = (store_time - sent).num_microseconds().unwrap_or(0);
        self.offset_us.store(offset, Ordering::Relaxed);
    }

    /// The measured offset of the store's clock from this process's.
    pub fn offset(&self) -> TimeDelta {
        TimeDelta::microseconds(self.offset_us.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::now;

    #[test]
    fn the_estimate_follows_the_last_measurement() {
        let clock = StoreClock::default();
        assert_eq!(clock.offset(), TimeDelta::zero());
        let sent = now();
        clock.observe(sent, sent + TimeDelta::seconds(20));
        let ahead = clock.now() - now();
        assert!(ahead > TimeDelta::seconds(19) && ahead <= TimeDelta::seconds(20));
        clock.observe(sent, sent - TimeDelta::seconds(5));
        assert_eq!(clock.offset(), TimeDelta::seconds(-5));
    }
}
