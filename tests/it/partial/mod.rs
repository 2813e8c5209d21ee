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

use crate::support::TestDb;

pub const SERVING: i32 = ServingStatus::Serving as i32;
pub const NOT_SERVING: i32 = ServingStatus::NotServing as i32;

pub use crate::support::lease;

/// No instance of `namespace` is DEAD in the store, and the watcher (opened before the agents
/// registered) saw no DELETE — a false expiry would show in both.
pub async fn assert_nobody_died(
    db: &TestDb,
    namespace: &str,
    watch: &mut tonic::Streaming<proto::WatchResponse>,
) {
    let sql = format!(
        "SELECT count(*) FROM registry_instance WHERE namespace = '{namespace}' AND status = 'DEAD'"
    );
    assert_eq!(
        db.query_i64(&sql).await,
        0,
        "no instance of {namespace} is DEAD"
    );
    let mut deletes = Vec::new();
    while let Ok(Ok(Some(m))) =
        tokio::time::timeout(Duration::from_millis(200), watch.message()).await
    {
        deletes.extend(
            m.events
                .into_iter()
                .filter(|e| e.r#type == Type::Delete as i32)
                .filter_map(|e| e.instance.map(|i| (i.instance_id, i.death_reason))),
        );
    }
    assert_eq!(deletes, vec![], "the watcher saw no death in {namespace}");
}

/// A guard on a loop that waits for the system, not a timing claim.
pub const PATIENCE: Duration = Duration::from_secs(30);
