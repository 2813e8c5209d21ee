//! Postgres goes away under load: heartbeats are acknowledged while they can still reach the
//! store soon enough, then refused with UNAVAILABLE (agents retry); nothing expires, Register
//! answers UNAVAILABLE, and everything lands once it is back, with a grace for every lease.

use std::sync::atomic::Ordering;
use std::time::Duration;

use agent_registry_core::domain::{InstanceStatus, RegisterInput};
use agent_registry_core::liveness::LivenessConfig;
use agent_registry_core::metrics::Source as _;
use agent_registry_core::registry::RegistryError;

use crate::support::node::{Node, settle};
use crate::support::proxy::{Mode, in_front_of};
use crate::support::{Backend, TestDb};

#[tokio::test]
async fn postgres_outage_keeps_agents_alive_and_loses_nothing() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let (proxy, via_proxy) = in_front_of(&db.url).await;
    let node = Node::start(&via_proxy, LivenessConfig::default()).await;
    tokio::time::pause();
    let secs = Duration::from_secs;

    let fleet = node.fleet("prod", 5).await;
    let (agents, beats): (Vec<_>, Vec<_>) = fleet
        .iter()
        .map(|i| node.resilient_agent(i, secs(5)))
        .unzip();
    node.advance(secs(10)).await;
    let counters = || node.registry.readings();
    let acked = |b: &crate::support::node::Beats| b.acked.load(Ordering::SeqCst);
    let refused = |b: &crate::support::node::Beats| b.refused.load(Ordering::SeqCst);
    assert!(beats.iter().all(|b| acked(b) > 0 && refused(b) == 0));

    // One agent falls silent just as the database goes: its lease runs out during the outage.
    let silent = node.register("prod", "silent").await;
    proxy.set(Mode::Reset);
    let cut_at = agent_registry_core::domain::now();
    node.advance(secs(60)).await;
    assert!(
        agents.iter().all(|a| !a.is_finished()),
        "every beat was acknowledged or refused with UNAVAILABLE"
    );
    assert!(
        beats.iter().all(|b| refused(b) > 0),
        "the replica stopped vouching for beats it could not persist"
    );
    assert!(node.registry.readings().vouching_lapses >= 1);
    assert!(counters().flush_failures > 0, "flushes failed and retry");
    assert!(!node.registry.readings().store_reachable);
    assert_eq!(counters().expiries, 0, "nothing expires");
    assert!(
        fleet
            .iter()
            .all(|i| node.status(i) == InstanceStatus::Alive)
    );
    assert_eq!(
        node.status(&silent),
        InstanceStatus::Alive,
        "not even a silent one"
    );
    let registry = node.registry.clone();
    let refused = settle(async move {
        let input = RegisterInput {
            logical_id: "late".into(),
            ..Default::default()
        };
        registry.register(input).await
    })
    .await;
    assert!(
        matches!(refused, Err(RegistryError::Unavailable(_))),
        "{refused:?}"
    );

    let acked_during: Vec<usize> = beats.iter().map(|b| acked(b)).collect();
    proxy.set(Mode::Pass);
    let flushes = counters().flushes;
    node.eventually("flushes land again", secs(30), || {
        counters().flushes > flushes && node.registry.readings().store_reachable
    })
    .await;
    // Store-recovery grace: the silent agent gets a full lease from the recovery to come back.
    let recovered = tokio::time::Instant::now();
    node.advance(secs(13)).await;
    assert_eq!(
        node.status(&silent),
        InstanceStatus::Alive,
        "grace after the outage"
    );
    node.eventually("the silent agent expires", secs(10), || {
        node.status(&silent) == InstanceStatus::Dead
    })
    .await;
    assert!(recovered.elapsed() >= secs(14));
    assert_eq!(counters().expiries, 1);
    assert_eq!(counters().graces, 1, "one outage, one grace");
    assert!(
        beats
            .iter()
            .zip(&acked_during)
            .all(|(b, before)| acked(b) > *before),
        "the agents are acknowledged again"
    );
    assert!(
        fleet
            .iter()
            .all(|i| node.status(i) == InstanceStatus::Alive)
    );
    assert!(agents.iter().all(|a| !a.is_finished()));
    let sql = format!(
        "SELECT count(*) FROM registry_instance WHERE status = 'ALIVE' AND last_heartbeat > '{}'",
        cut_at.to_rfc3339()
    );
    let url = db.url.clone();
    let landed = settle(async move { TestDb::query_i64_at(&url, &sql).await }).await;
    assert_eq!(landed, 5, "the agents' beats reach the store again");
    for a in agents {
        a.abort();
    }
    node.stop().await;
}
