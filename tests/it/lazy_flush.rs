//! The lazy flush under tokio's paused clock: a beat is written only once the stored one is a
//! share of the lease old, yet the store never holds a beating agent's beat older than the
//! documented bound, acknowledged beats all reach it, and no replica — this one, another one,
//! or one whose peer was killed before writing — expires an agent inside its acknowledged lease.

use std::time::Duration;

use agent_registry_core::domain::{InstanceFilter, InstanceStatus};
use agent_registry_core::liveness::LivenessConfig;
use agent_registry_core::metrics::Source as _;
use agent_registry_core::registry::{DiscoverQuery, View};
use agent_registry_core::storage::Store;
use chrono::{DateTime, Utc};
use tokio::time::Instant;
use uuid::Uuid;

use crate::on_both_backends;
use crate::support::Backend;
use crate::support::node::{Node, settle};

const S: fn(u64) -> Duration = Duration::from_secs;
const MS: fn(u64) -> Duration = Duration::from_millis;
/// How often the test agents beat: much faster than a third of their 15 s lease, as in the
/// scale benchmark, so most beats are not written.
const EVERY: Duration = Duration::from_millis(500);

/// The stored beat of each of `ids` (not dead), on the store's clock.
async fn stored(store: &std::sync::Arc<dyn Store>, ids: &[Uuid]) -> Vec<DateTime<Utc>> {
    let (store, ids) = (store.clone(), ids.to_vec());
    let beats = settle(async move { store.heartbeats(&ids).await.expect("read beats") }).await;
    beats.into_iter().map(|b| b.at).collect()
}

/// The age of each of `ids`' stored beat, by the store's (in these tests the process's) clock.
async fn stored_ages(store: &std::sync::Arc<dyn Store>, ids: &[Uuid]) -> Vec<Duration> {
    let now = agent_registry_core::domain::now();
    let beats = stored(store, ids).await;
    assert_eq!(
        beats.len(),
        ids.len(),
        "every instance still alive in the store"
    );
    beats
        .iter()
        .map(|at| (now - *at).to_std().unwrap_or_default())
        .collect()
}

fn live_on(node: &Node, namespace: &str) -> usize {
    let q = DiscoverQuery {
        filter: InstanceFilter {
            namespace: namespace.into(),
            ..Default::default()
        },
        view: View::Live,
        page_size: 1000,
        page_token: String::new(),
    };
    node.registry.discover(&q).expect("discover").items.len()
}

/// The self-preservation guard stays out of the way: these tests stop every agent at once.
fn config() -> LivenessConfig {
    LivenessConfig {
        expiry_guard: 1.0,
        ..LivenessConfig::default()
    }
}

async fn beats_are_written_lazily_and_the_stored_beat_stays_within_its_bound(backend: Backend) {
    let config = config();
    let Some((_db, node)) = Node::paused(backend, config.clone()).await else {
        return;
    };
    let fleet = node.fleet("lazy", 20).await;
    let ids: Vec<Uuid> = fleet.iter().map(|i| i.instance_id).collect();
    let ttl = fleet[0].lease_ttl;
    let agents: Vec<_> = fleet.iter().map(|i| node.agent(i, EVERY)).collect();
    let (rows_before, beats_before) = {
        let r = node.registry.readings();
        (r.heartbeat_rows_written, r.heartbeats)
    };
    // The documented bound: the flush lag, then up to a flush interval until the next flush,
    // whose beat is up to one heartbeat interval old; a step of slack for the test's stepping.
    let bound = config.flush_lag(ttl) + config.flush_interval + EVERY + MS(100);
    assert!(bound < ttl, "the bound keeps the SQL views' LIVE true");
    let mut oldest = Duration::ZERO;
    for _ in 0..30 {
        node.advance(S(1)).await;
        let ages = stored_ages(&node.store, &ids).await;
        oldest = oldest.max(ages.into_iter().max().unwrap_or_default());
    }
    let r = node.registry.readings();
    let (rows, beats) = (
        r.heartbeat_rows_written - rows_before,
        r.heartbeats - beats_before,
    );
    assert!(
        oldest <= bound,
        "a stored beat {oldest:?} old, bound {bound:?}"
    );
    // Written at every flush, no stored beat would be older than a flush and a beat.
    assert!(
        oldest > config.flush_interval + EVERY * 2,
        "beats are not written eagerly ({oldest:?})"
    );
    // 20 agents × 30 s, each written about every flush lag (5 s) plus one flush.
    assert!(beats >= 20 * 55, "{beats} beats");
    assert!(
        (20 * 4..=20 * 7).contains(&rows),
        "{rows} rows written for {beats} beats"
    );

    // Every acknowledged beat reaches the store, within the flush lag and a flush.
    for a in &agents {
        a.abort();
    }
    let stopped = Instant::now();
    let stopped_at = agent_registry_core::domain::now();
    node.advance(config.flush_lag(ttl) + config.flush_interval * 2)
        .await;
    for at in stored(&node.store, &ids).await {
        let lag = (stopped_at - at).to_std().unwrap_or_default();
        assert!(
            lag <= EVERY + MS(100),
            "the last beat stored ({lag:?} before the stop)"
        );
    }
    // No expiry inside the acknowledged lease; expiry once it and the slack have run out.
    node.advance((stopped + ttl - MS(600)) - Instant::now())
        .await;
    assert!(node.all_alive(&fleet), "not before the lease ran out");
    let slack = config.expiry_slack().of(ttl);
    node.eventually("expiry", slack + config.sweep_interval * 3, || {
        fleet.iter().all(|i| node.status(i) == InstanceStatus::Dead)
    })
    .await;
    node.stop().await;
}

async fn another_replica_keeps_a_lazily_flushed_agent_live_and_never_cuts_its_lease_short(
    backend: Backend,
) {
    let config = config();
    let Some((db, a)) = Node::paused(backend, config.clone()).await else {
        return;
    };
    let fleet = a.fleet("lazy", 10).await;
    let ttl = fleet[0].lease_ttl;
    // Replica B starts after the registrations: it knows the agents from the store alone.
    let b = a.start_beside(&db.url, config.clone()).await;
    let agents: Vec<_> = fleet.iter().map(|i| a.agent(i, EVERY)).collect();
    for second in 0..45 {
        a.advance(S(1)).await;
        assert!(
            b.all_alive(&fleet),
            "B expired a beating agent at {second} s"
        );
        assert_eq!(live_on(&b, "lazy"), 10, "B's LIVE view at {second} s");
    }
    // A dies without its final flush when its stored beats are oldest (just before the flush
    // that would write them): the beats it acknowledged since are lost, and the store holds
    // beats almost the flush lag older than the last acknowledged ones. Their leases (the
    // agents die too) must still run their acknowledged length on B.
    let ids: Vec<Uuid> = fleet.iter().map(|i| i.instance_id).collect();
    let deadline = Instant::now() + S(10);
    while stored_ages(&a.store, &ids).await.into_iter().min()
        < Some(config.flush_lag(ttl) - MS(500))
    {
        assert!(Instant::now() < deadline, "the stored beats never aged");
        a.advance(MS(100)).await;
    }
    for agent in &agents {
        agent.abort();
    }
    let killed = Instant::now();
    a.kill().await;
    b.advance((killed + ttl - MS(600)) - Instant::now()).await;
    assert!(
        b.all_alive(&fleet),
        "B expired an agent inside its acknowledged lease"
    );
    let slack = config.expiry_slack().of(ttl);
    b.eventually("expiry on B", slack + config.sweep_interval * 3, || {
        fleet.iter().all(|i| b.status(i) == InstanceStatus::Dead)
    })
    .await;
    b.stop().await;
}

on_both_backends!(paused:
    beats_are_written_lazily_and_the_stored_beat_stays_within_its_bound,
    another_replica_keeps_a_lazily_flushed_agent_live_and_never_cuts_its_lease_short,
);
