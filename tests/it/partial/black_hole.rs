//! A store connection that goes silent (black-holed: open, never answering) or is reset under
//! a replica: every call in flight gives up within the store timeout, health turns NOT_SERVING
//! while liveness stays SERVING, the replica stops vouching for beats it cannot persist, and
//! nothing acknowledged is lost.

use std::time::Duration;

use agent_registry::server::LIVENESS_HEALTH;
use agent_registry_core::metrics::Source as _;
use tokio::time::Instant;
use tonic::Code;

use super::{NOT_SERVING, PATIENCE, SERVING, lease};
use crate::support::proxy::{Mode, in_front_of};
use crate::support::{Backend, TestDb, TestServer, eventually, health, reg};

/// The store timeout of these tests: short, so a silent store is noticed quickly.
const TIMEOUT: Duration = Duration::from_secs(1);

/// Every call that waits on the store while it is silent gives up within this (the timeout,
/// plus the pool's acquire timeout before it, plus scheduling): a bound, not a measurement.
const GIVES_UP_WITHIN: Duration = Duration::from_secs(6);

async fn calls_in_flight_give_up_and_nothing_acknowledged_is_lost(mode: Mode) {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let (proxy, via) = in_front_of(&db.url).await;
    let mut s = TestServer::start_with(&db, |a| {
        a.database_url = via.clone();
        a.store_timeout = TIMEOUT;
        a.health_check_interval = Duration::from_millis(500);
    })
    .await;
    let mut acked = Vec::new();
    // The first beats and sets the shortest lease held; the others never beat, so they get
    // leases longer than the test.
    for n in 0..20 {
        let lease = if n == 0 { 6 } else { 600 };
        let req = proto_lease(reg("hole", &format!("agent-{n}")), lease);
        acked.push(s.register(req).await.instance_id);
    }
    let (beats, mut replies) = s.open_stream().await;
    let beat = |seq| agent_registry::proto::HeartbeatRequest {
        instance_id: acked[0].clone(),
        sequence: seq,
        status: 0,
    };
    beats.send(beat(1)).await.unwrap();
    assert_eq!(replies.message().await.unwrap().unwrap().sequence, 1);
    eventually("SERVING before the fault", || async {
        health(&s.channel, "").await == SERVING
    })
    .await;

    let failures = s.node.readings().flush_failures;
    proxy.set(mode);
    let faulted = Instant::now();
    // A beat right away: acknowledged from memory; the flush that carries it meets the fault.
    beats.send(beat(2)).await.unwrap();
    assert_eq!(replies.message().await.unwrap().unwrap().sequence, 2);

    // A Register batch in flight gives up with UNAVAILABLE.
    let started = Instant::now();
    let refused = s.registry.register(reg("hole", "during")).await;
    let register_gave_up = started.elapsed();
    assert_eq!(
        refused.map(|_| ()).map_err(|e| e.code()),
        Err(Code::Unavailable)
    );
    assert!(register_gave_up < GIVES_UP_WITHIN, "{register_gave_up:?}");

    // A change-feed read in flight gives up as unreachable.
    let started = Instant::now();
    let read = s.node.catch_up().await;
    let read_gave_up = started.elapsed();
    assert!(
        matches!(
            read,
            Err(agent_registry_core::registry::RegistryError::Unavailable(_))
        ),
        "{read:?}"
    );
    assert!(read_gave_up < GIVES_UP_WITHIN, "{read_gave_up:?}");

    // A stream for an instance this replica has not heard of cannot be looked up: it is
    // refused as retryable, not told to register anew (the agent keeps its id).
    let (unknown, mut answer) = s.open_stream().await;
    // (The replica may already refuse every stream and have dropped the request side.)
    let _ = unknown
        .send(beat_for(&uuid::Uuid::now_v7().to_string()))
        .await;
    let refused = answer.message().await.map(|_| ()).map_err(|e| e.code());
    assert_eq!(
        refused,
        Err(Code::Unavailable),
        "an unknown id during the fault"
    );

    // The flush failed and retries; health (readiness) turns NOT_SERVING, liveness does not.
    let node = &s.node;
    eventually("a flush fails", || async {
        node.readings().flush_failures > failures
    })
    .await;
    let ch = &s.channel;
    eventually("readiness NOT_SERVING", || async {
        health(ch, "").await == NOT_SERVING
    })
    .await;
    let detected = faulted.elapsed();
    assert_eq!(health(ch, LIVENESS_HEALTH).await, SERVING, "liveness holds");

    // Past the bound (a third of the 6 s lease, at least two flush intervals) the replica stops
    // vouching: the stream ends with UNAVAILABLE at the next beat at the latest.
    let ended = tokio::time::timeout(PATIENCE, async {
        let mut seq = 3;
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = beats.send(beat(seq)).await;
            seq += 1;
            match replies.message().await {
                Ok(Some(ack)) => assert_eq!(ack.sequence, seq - 1),
                other => return other,
            }
        }
    })
    .await
    .expect("the stream ends");
    let stream_ended = faulted.elapsed();
    assert_eq!(
        ended.map(|_| ()).map_err(|e| e.code()),
        Err(Code::Unavailable)
    );

    // The store returns: everything works again and every acknowledged registration is there.
    proxy.set(Mode::Pass);
    let r = &s.registry;
    eventually("Register works again", || async {
        r.clone().register(reg("hole", "after")).await.is_ok()
    })
    .await;
    eventually("readiness SERVING again", || async {
        health(ch, "").await == SERVING
    })
    .await;
    let stored = db
        .query_i64(
            "SELECT count(*) FROM registry_instance WHERE namespace = 'hole' AND status <> 'DEAD'",
        )
        .await;
    assert_eq!(
        stored,
        acked.len() as i64 + 1,
        "every acknowledged registration"
    );
    println!(
        "{mode:?}: Register gave up after {register_gave_up:?}, a change-feed read after \
         {read_gave_up:?}; readiness NOT_SERVING {detected:?} after the fault, heartbeat stream \
         ended (UNAVAILABLE) {stream_ended:?} after it (store timeout {TIMEOUT:?})"
    );
    drop(beats);
    s.stop().await;
}

fn beat_for(id: &str) -> agent_registry::proto::HeartbeatRequest {
    agent_registry::proto::HeartbeatRequest {
        instance_id: id.into(),
        sequence: 1,
        status: 0,
    }
}

fn proto_lease(
    mut req: agent_registry::proto::RegisterRequest,
    seconds: i64,
) -> agent_registry::proto::RegisterRequest {
    req.lease_ttl = lease(seconds);
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_store_bounds_every_call_in_flight() {
    calls_in_flight_give_up_and_nothing_acknowledged_is_lost(Mode::BlackHole).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_store_bounds_every_call_in_flight() {
    calls_in_flight_give_up_and_nothing_acknowledged_is_lost(Mode::Reset).await;
}
