//! Blips are not outages: a store that fails for a moment every few seconds pauses expiry while
//! it fails but grants no grace, so periodic blips cannot keep a silent agent alive for ever —
//! and agents that beat live through them.

use std::time::Duration;

use agent_registry::proto::{self, InstanceStatus};
use tokio::time::Instant;

use super::{PATIENCE, lease};
use crate::support::proxy::{Mode, in_front_of};
use crate::support::{Backend, TestDb, TestServer, reg};

/// Each blip resets every store connection for this long…
const BLIP: Duration = Duration::from_millis(400);
/// …once per this period: with the 2 s leases below, a grace per blip would renew the silent
/// agent's lease before it ever ran out.
const EVERY: Duration = Duration::from_millis(1500);

async fn status(s: &mut TestServer, id: &str) -> i32 {
    let req = proto::GetInstanceRequest {
        instance_id: id.into(),
    };
    let i = s.discovery.get_instance(req).await.unwrap().into_inner();
    i.instance.unwrap().status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_blips_do_not_keep_a_silent_agent_alive() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let (proxy, via) = in_front_of(&db.url).await;
    let mut s = TestServer::start_with(&db, |a| {
        a.database_url = via.clone();
        a.store_timeout = Duration::from_secs(1);
        a.health_check_interval = Duration::from_millis(300);
    })
    .await;
    let short = |name: &str| proto::RegisterRequest {
        lease_ttl: lease(2),
        ..reg("blips", name)
    };
    let beating = s.register(short("beating")).await.instance_id;
    let silent = s.register(short("silent")).await.instance_id;
    let (mut beats, mut replies) = s.open_stream().await;
    let mut reopened = 0;

    let started = Instant::now();
    let mut next_blip = started + EVERY;
    let mut seq = 0;
    let mut blips = 0;
    let silent_died = loop {
        assert!(
            started.elapsed() < PATIENCE,
            "the silent agent outlived {blips} blips"
        );
        if Instant::now() >= next_blip {
            proxy.set(Mode::Reset);
            tokio::time::sleep(BLIP).await;
            proxy.set(Mode::Pass);
            blips += 1;
            next_blip += EVERY;
        }
        seq += 1;
        let beat = proto::HeartbeatRequest {
            instance_id: beating.clone(),
            sequence: seq,
            status: 0,
        };
        let _ = beats.send(beat).await;
        match replies.message().await {
            Ok(Some(ack)) => assert_eq!(ack.sequence, seq),
            // A blip that kept flushes failing past the bound: the replica stops vouching for
            // a moment; the agent opens a new stream, as agents do.
            Err(e) if e.code() == tonic::Code::Unavailable => {
                reopened += 1;
                (beats, replies) = s.open_stream().await;
            }
            other => panic!("the beating agent: {other:?}"),
        }
        if status(&mut s, &silent).await == InstanceStatus::Dead as i32 {
            break started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(blips >= 2, "the silent agent died after {blips} blips");
    assert_eq!(status(&mut s, &beating).await, InstanceStatus::Alive as i32);
    let graces = agent_registry_core::metrics::Source::readings(&*s.node).graces;
    assert_eq!(graces, 0, "no blip granted grace");
    println!(
        "a silent 2 s lease expired {silent_died:?} in, through {blips} blips of {BLIP:?} every \
         {EVERY:?}; the beating agent lived (streams reopened: {reopened}); graces: {graces}"
    );
    drop(beats);
    s.stop().await;
}
