//! Leases under tokio's paused clock: renewal, expiry, grace, self-preservation, batching.

use std::time::Duration;

use agent_registry_core::domain::{DeathReason, InstanceStatus};
use agent_registry_core::liveness::LivenessConfig;
use agent_registry_core::metrics::Source as _;
use tokio::time::Instant;

use crate::on_both_backends;
use crate::support::node::{Node, settle};
use crate::support::{Backend, TestDb};

const S: fn(u64) -> Duration = Duration::from_secs;

async fn beats_keep_a_lease_and_it_expires_after_its_ttl(backend: Backend) {
    let Some((_db, node)) = Node::paused(backend, LivenessConfig::default()).await else {
        return;
    };
    let i = node.register("ns", "worker").await;
    assert_eq!(i.lease_ttl, S(15));
    let agent = node.agent(&i, S(5));
    node.advance(S(60)).await;
    assert_eq!(
        node.status(&i),
        InstanceStatus::Alive,
        "no expiry while beating"
    );

    // The stream ends without Deregister: the instance lives out its lease, no longer.
    agent.abort();
    let stopped = Instant::now();
    node.advance(S(9)).await;
    assert_eq!(
        node.status(&i),
        InstanceStatus::Alive,
        "the lease still runs"
    );
    node.eventually("expiry", S(12), || node.status(&i) == InstanceStatus::Dead)
        .await;
    assert!(
        Instant::now() >= stopped + S(10),
        "not before the lease ran out"
    );
    let dead = node
        .registry
        .get_instance(&i.instance_id.to_string())
        .unwrap();
    assert_eq!(dead.death_reason, Some(DeathReason::LeaseExpired));
    assert!(
        dead.stopped_at.is_some() && dead.revision > i.revision,
        "a state change"
    );
    assert_eq!(node.registry.readings().expiries, 1);
    node.stop().await;
}

async fn a_restarted_replica_grants_every_lease_a_grace_period(backend: Backend) {
    let Some((db, node)) = Node::paused(backend, LivenessConfig::default()).await else {
        return;
    };
    let a = node.register("ns", "a").await;
    let b = node.register("ns", "b").await;
    node.stop().await;
    // Down for two minutes: the stored heartbeats are far older than the lease.
    tokio::time::sleep(S(120)).await;
    let node = Node::start(&db.url, LivenessConfig::default()).await;
    node.advance(S(14)).await;
    assert_eq!(
        (node.status(&a), node.status(&b)),
        (InstanceStatus::Alive, InstanceStatus::Alive)
    );
    node.eventually("expiry after the grace", S(5), || {
        node.status(&a) == InstanceStatus::Dead && node.status(&b) == InstanceStatus::Dead
    })
    .await;
    node.stop().await;
}

async fn self_preservation_holds_back_a_mass_expiry_and_recovers(backend: Backend) {
    let Some((_db, node)) = Node::paused(backend, LivenessConfig::default()).await else {
        return;
    };
    let fleet = node.fleet("fleet", 10).await;
    let mut agents: Vec<_> = fleet.iter().map(|i| node.agent(i, S(5))).collect();
    node.advance(S(20)).await;
    // Six of ten fall silent at once: more than the 50 % guard.
    for a in agents.drain(..6) {
        a.abort();
    }
    node.advance(S(30)).await;
    let counters = || node.registry.readings();
    assert!(counters().guard_trips > 0, "the guard tripped");
    assert_eq!(counters().expiries, 0, "nothing expired");
    assert!(
        fleet
            .iter()
            .all(|i| node.status(i) == InstanceStatus::Alive)
    );

    // They come back: the guard has nothing left to hold back.
    let mut back: Vec<_> = fleet[..6].iter().map(|i| node.agent(i, S(5))).collect();
    node.advance(S(10)).await;
    let trips = counters().guard_trips;
    node.advance(S(20)).await;
    assert_eq!(counters().guard_trips, trips, "guard released");

    // A single silent agent then expires normally.
    back.remove(0).abort();
    node.eventually("single expiry", S(20), || {
        node.status(&fleet[0]) == InstanceStatus::Dead
    })
    .await;
    assert_eq!(counters().expiries, 1);
    assert!(node.all_alive(&fleet[1..]));
    node.stop().await;
}

async fn heartbeats_are_flushed_in_one_statement_per_interval(backend: Backend) {
    let Some((db, node)) = Node::paused(backend, LivenessConfig::default()).await else {
        return;
    };
    let fleet = node.fleet("batch", 50).await;
    let (before, started) = (node.registry.readings().flushes, Instant::now());
    let beats_before = node.registry.readings().heartbeats;
    let agents: Vec<_> = fleet
        .iter()
        .map(|i| node.agent(i, Duration::from_millis(500)))
        .collect();
    node.advance(S(10)).await;
    for a in &agents {
        a.abort();
    }
    let elapsed = started.elapsed();
    let statements = node.registry.readings().flushes - before;
    let beats = node.registry.readings().heartbeats - beats_before;
    assert!(beats >= 50 * 19, "{beats} beats");
    // Lazily: each agent's beat is written about every third of its lease (5 s).
    assert!(statements >= 1, "flushes happened: {statements}");
    assert!(
        statements <= elapsed.as_secs() + 1,
        "{statements} flush statements in {elapsed:?} for {beats} beats"
    );
    // The last beats land in the store within the flush lag and a flush.
    node.advance(S(7)).await;
    let url = db.url.clone();
    let sql = "SELECT count(*) FROM registry_instance WHERE last_heartbeat > started_at";
    let flushed = settle(async move { TestDb::query_i64_at(&url, sql).await }).await;
    assert_eq!(flushed, 50);
    node.stop().await;
}

async fn the_advised_interval_rises_under_load(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let config = LivenessConfig {
        max_heartbeat_rate: 20,
        ..LivenessConfig::default()
    };
    let node = Node::start(&db.url, config).await;
    tokio::time::pause();
    let ttl = S(15);
    assert_eq!(node.registry.heartbeat_interval(ttl), S(5));
    let mut agents = Vec::new();
    for n in 0..40 {
        let i = node.register("busy", &format!("agent-{n}")).await;
        agents.push(node.agent(&i, S(1)));
    }
    node.advance(S(12)).await;
    let advised = node.registry.heartbeat_interval(ttl);
    assert!(advised > S(5) && advised <= ttl / 2, "advised {advised:?}");
    for a in agents {
        a.abort();
    }
    node.stop().await;
}

async fn a_loss_spread_over_several_sweeps_still_trips_the_guard(backend: Backend) {
    let Some((_db, node)) = Node::paused(backend, LivenessConfig::default()).await else {
        return;
    };
    let fleet = node.fleet("fleet", 10).await;
    let mut agents: Vec<_> = fleet.iter().map(|i| node.agent(i, S(5))).collect();
    node.advance(S(10)).await;
    // Two at a time fall silent, each pair within the floor on its own.
    for _ in 0..4 {
        for a in agents.drain(..2) {
            a.abort();
        }
        node.advance(S(5)).await;
    }
    node.advance(S(30)).await;
    let counters = || node.registry.readings();
    assert_eq!(counters().expiries, 4, "then the guard held");
    assert!(counters().guard_trips > 0);
    assert!(node.all_alive(&fleet[4..]));
    node.stop().await;
}

async fn a_retry_gives_back_a_lost_lease(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let node = Node::start(&db.url, LivenessConfig::default()).await;
    let i = node.register("ns", "a").await;
    node.registry.forget_lease(i.instance_id);
    let registry = node.registry.clone();
    let input = agent_registry_core::domain::RegisterInput {
        namespace: "ns".into(),
        logical_id: "a".into(),
        instance_id: i.instance_id.to_string(),
        ..Default::default()
    };
    let again = settle(async move { registry.register(input).await.unwrap() }).await;
    assert_eq!(again.instance_id, i.instance_id);
    assert!(
        node.registry.holds_lease(i.instance_id),
        "the agent can beat again"
    );
    node.stop().await;
}

on_both_backends!(paused:
    a_loss_spread_over_several_sweeps_still_trips_the_guard,
    a_retry_gives_back_a_lost_lease,
    beats_keep_a_lease_and_it_expires_after_its_ttl,
    a_restarted_replica_grants_every_lease_a_grace_period,
    self_preservation_holds_back_a_mass_expiry_and_recovers,
    heartbeats_are_flushed_in_one_statement_per_interval,
    the_advised_interval_rises_under_load,
);
