//! Partial failures (SPEC §11): faults that hit only part of the system — a store connection
//! that goes silent, one replica cut off from Postgres while others reach it, blips, skewed
//! clocks, mass expiry, watchers that never read — injected for real (a proxy that black-holes
//! or resets, a clock shifted with libfaketime, real processes), each asserting that nothing
//! acknowledged is lost and no live agent is marked dead.

mod black_hole;
mod blips;
mod clock_skew;
mod cut_off;
mod mass_expiry;
mod randomized;
mod read_only;
mod stuck_watchers;

use std::time::Duration;

use agent_registry::proto::{self, watch_event::Type};
use tonic_health::pb::health_check_response::ServingStatus;

pub const SERVING: i32 = ServingStatus::Serving as i32;
pub const NOT_SERVING: i32 = ServingStatus::NotServing as i32;

pub fn lease(seconds: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration { seconds, nanos: 0 })
}

/// Every DELETE a watcher saw, as (instance id, status) — a false expiry shows here.
pub fn deletes(events: &[proto::WatchEvent]) -> Vec<(String, i32)> {
    events
        .iter()
        .filter(|e| e.r#type == Type::Delete as i32)
        .map(|e| {
            let i = e.instance.as_ref().expect("instance");
            (i.instance_id.clone(), i.death_reason)
        })
        .collect()
}

/// A guard on a loop that waits for the system, not a timing claim.
pub const PATIENCE: Duration = Duration::from_secs(30);
