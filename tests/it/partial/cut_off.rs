//! One replica cut off from Postgres while another reaches it: the cut-off replica ends its
//! heartbeat streams with UNAVAILABLE once its beats go unpersisted too long, its agents (the
//! Rust keeper, given both addresses) resume on the other replica with the same ids, and no
//! instance is ever marked DEAD; restored, the replica serves again.

use std::time::Duration;

use agent_registry::proto;
use agent_registry_client::Client;
use agent_registry_client::backoff::Backoff;
use agent_registry_client::keeper::Keeper;
use agent_registry_core::metrics::Source as _;
use tokio::time::Instant;

use super::{NOT_SERVING, SERVING, assert_nobody_died, lease};
use crate::support::proxy::{Mode, in_front_of};
use crate::support::{Backend, TestDb, TestServer, eventually, health, reg};
use crate::watch::{open, watch_req};

const AGENTS: usize = 6;
/// Leases of the agents: short, so a cut longer than two of them would show any false expiry.
const LEASE: i64 = 6;
const CUT: Duration = Duration::from_secs(15);

async fn replica(db: &TestDb, via: &str) -> TestServer {
    let via = via.to_string();
    TestServer::start_with(db, move |a| {
        a.database_url = via;
        a.store_timeout = Duration::from_secs(1);
        a.health_check_interval = Duration::from_millis(500);
    })
    .await
}

async fn agents_move_off_a_cut_off_replica_and_none_dies(mode: Mode) {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let (proxy_a, via_a) = in_front_of(&db.url).await;
    let (_proxy_b, via_b) = in_front_of(&db.url).await;
    let a = replica(&db, &via_a).await;
    let mut b = replica(&db, &via_b).await;
    // Everything B sees, from the start: a false expiry would be a DELETE.
    let mut watch = open(&mut b, watch_req("cut", 0)).await;

    let addresses = vec![a.url.clone(), b.url.clone()];
    let backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(500));
    let mut keepers = Vec::new();
    for n in 0..AGENTS {
        let client = Client::connect_any(&addresses, &Default::default()).unwrap();
        let req = proto::RegisterRequest {
            lease_ttl: lease(LEASE),
            ..reg("cut", &format!("agent-{n}"))
        };
        keepers.push(Keeper::spawn(client, req, backoff.clone()));
    }
    let mut ids = Vec::new();
    for k in &keepers {
        let mut state = k.state();
        let s = state
            .wait_for(|s| s.connected && s.acks >= 2)
            .await
            .unwrap()
            .clone();
        ids.push(s.instance.unwrap().instance_id);
    }
    let on_a = || a.node.readings().heartbeat_streams;
    assert_eq!(on_a(), AGENTS, "every agent starts on A, its first address");

    proxy_a.set(mode);
    let cut = Instant::now();
    eventually("A ends its streams and its agents move to B", || async {
        on_a() == 0 && b.node.readings().heartbeat_streams == AGENTS
    })
    .await;
    let moved = cut.elapsed();
    let ch_a = &a.channel;
    eventually("A reports not ready", || async {
        health(ch_a, "").await == NOT_SERVING
    })
    .await;
    // Longer than two leases: B would have expired A's agents by now had they stayed on A.
    tokio::time::sleep_until(cut + CUT).await;
    for (k, id) in keepers.iter().zip(&ids) {
        let s = k.state().borrow().clone();
        assert_eq!(s.instance.unwrap().instance_id, *id, "the same instance");
        assert_eq!(s.registrations, 1, "never registered anew");
        assert!(s.connected);
    }

    proxy_a.set(Mode::Pass);
    eventually("A serves again", || async {
        health(ch_a, "").await == SERVING
    })
    .await;
    // A new agent on A is served there.
    let client = Client::connect(&a.url).unwrap();
    let late = Keeper::spawn(client, reg("cut", "late"), backoff);
    late.state()
        .wait_for(|s| s.connected && s.acks >= 1)
        .await
        .unwrap();

    assert_nobody_died(&db, "cut", &mut watch).await;
    println!(
        "{mode:?}: {AGENTS} agents left the cut-off replica for the other within {moved:?} \
         (leases {LEASE}s); none died over {CUT:?} cut off"
    );
    for k in keepers.into_iter().chain([late]) {
        k.shutdown().await.unwrap();
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_leave_a_black_holed_replica_and_none_is_marked_dead() {
    agents_move_off_a_cut_off_replica_and_none_dies(Mode::BlackHole).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_leave_a_reset_replica_and_none_is_marked_dead() {
    agents_move_off_a_cut_off_replica_and_none_dies(Mode::Reset).await;
}

/// An agent that stops while its replica cannot reach the store (the deregister times out
/// there, UNAVAILABLE) deregisters through the other replica instead of leaving its instance
/// to run out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_agent_deregisters_through_another_replica_when_its_own_cannot() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let (proxy_a, via_a) = in_front_of(&db.url).await;
    let a = replica(&db, &via_a).await;
    let b = replica(&db, &db.url).await;
    let addresses = vec![a.url.clone(), b.url.clone()];
    let client = Client::connect_any(&addresses, &Default::default()).unwrap();
    let backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(500));
    let keeper = Keeper::spawn(client, reg("leaving", "agent"), backoff);
    let s = keeper
        .state()
        .wait_for(|s| s.connected && s.acks >= 1)
        .await
        .unwrap()
        .clone();
    let id = s.instance.unwrap().instance_id;
    assert_eq!(a.node.readings().heartbeat_streams, 1, "the agent is on A");
    proxy_a.set(Mode::BlackHole);
    keeper.shutdown().await.expect("deregistered through B");
    let dead = db
        .query_i64(&format!(
            "SELECT count(*) FROM registry_instance WHERE instance_id = '{id}' \
             AND status = 'DEAD' AND death_reason = 'DEREGISTERED'"
        ))
        .await;
    assert_eq!(
        dead, 1,
        "the instance is deregistered, not left to its lease"
    );
    proxy_a.set(Mode::Pass);
    a.stop().await;
    b.stop().await;
}
