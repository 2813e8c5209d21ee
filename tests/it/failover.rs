//! A replica killed (SIGKILL, real processes) while agents beat through it: they resume on
//! another replica with the same instance id, within their lease, and are never marked dead.

use std::time::Duration;

use agent_registry::proto::{
    self, Directive, discovery_service_client::DiscoveryServiceClient,
    registry_service_client::RegistryServiceClient,
};
use tokio::sync::mpsc;
use tonic::transport::Channel;

use crate::support::binary::spawn_binary_with;
use crate::support::{Backend, TestDb, connect, reg};
use crate::watch::{next, watch_req};

/// What one agent went through.
#[derive(Debug, Default)]
struct Report {
    /// Beats acknowledged by the first replica and by the second.
    acks: [u32; 2],
    /// Directives other than NONE (a REREGISTER would mean the instance was lost).
    directives: Vec<(i32, String)>,
}

/// Beats for `id` on `addrs[0]` until its stream breaks, then resumes the same id on
/// `addrs[1]`; stops after `until`.
async fn agent(id: String, addrs: [String; 2], until: tokio::time::Instant) -> Report {
    let mut report = Report::default();
    let mut seq = 0u64;
    'replicas: for (n, addr) in addrs.iter().enumerate() {
        let Ok(Ok(channel)) = tokio::time::timeout(
            Duration::from_secs(2),
            Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect(),
        )
        .await
        else {
            continue;
        };
        let (tx, rx) = mpsc::channel(4);
        let Ok(stream) = RegistryServiceClient::new(channel)
            .heartbeat(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
        else {
            continue;
        };
        let mut replies = stream.into_inner();
        let mut every = Duration::from_millis(500);
        while tokio::time::Instant::now() < until {
            seq += 1;
            let beat = proto::HeartbeatRequest {
                instance_id: id.clone(),
                sequence: seq,
                status: 0,
            };
            if tx.send(beat).await.is_err() {
                continue 'replicas;
            }
            match tokio::time::timeout(Duration::from_secs(2), replies.message()).await {
                Ok(Ok(Some(ack))) => {
                    if ack.directive != Directive::None as i32 {
                        report.directives.push((ack.directive, ack.reason));
                    }
                    report.acks[n] += 1;
                    if let Some(d) = ack.heartbeat_interval {
                        every = Duration::new(d.seconds as u64, d.nanos as u32);
                    }
                }
                // The replica is gone (or hangs): resume elsewhere.
                _ => continue 'replicas,
            }
            tokio::time::sleep(every).await;
        }
        return report;
    }
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_survive_their_replica_being_killed() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    // Short leases so the test spans several of them.
    let flags = [
        "--default-lease-ttl",
        "3s",
        "--change-poll-interval",
        "200ms",
    ];
    let (mut doomed, doomed_addr) = spawn_binary_with(&db, &flags).await;
    let (_survivor, survivor_addr) = spawn_binary_with(&db, &flags).await;

    let mut registry = RegistryServiceClient::new(connect(&doomed_addr).await);
    let mut agents = Vec::new();
    for n in 0..5 {
        let i = registry
            .register(reg("failover", &format!("agent-{n}")))
            .await
            .unwrap()
            .into_inner()
            .instance
            .unwrap();
        agents.push(i);
    }
    let start = agents.last().unwrap().revision;
    // A watcher on the survivor hears any death.
    let mut discovery = DiscoveryServiceClient::new(connect(&survivor_addr).await);
    let mut watch = discovery
        .watch(watch_req("failover", start))
        .await
        .unwrap()
        .into_inner();

    // Each lease is 3 s; the agents beat for 12 s in all, the replica dies after 3.
    let until = tokio::time::Instant::now() + Duration::from_secs(12);
    let mut beating = Vec::new();
    for i in &agents {
        let addrs = [doomed_addr.clone(), survivor_addr.clone()];
        beating.push(tokio::spawn(agent(i.instance_id.clone(), addrs, until)));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    doomed.start_kill().expect("SIGKILL the replica");
    doomed.wait().await.unwrap();

    for (i, task) in agents.iter().zip(beating) {
        let report = task.await.unwrap();
        assert!(
            report.acks[0] > 0,
            "{}: beat on the first replica: {report:?}",
            i.logical_id
        );
        assert!(
            report.acks[1] >= 5,
            "{}: resumed on the survivor: {report:?}",
            i.logical_id
        );
        assert!(report.directives.is_empty(), "{}: {report:?}", i.logical_id);
    }
    // Nobody died: no event at all since the registrations (only bookmarks), and the
    // database agrees.
    while let Ok(m) = tokio::time::timeout(Duration::from_secs(1), next(&mut watch)).await {
        assert!(m.events.is_empty(), "an instance changed: {:?}", m.events);
    }
    let dead = db
        .query_i64("SELECT count(*) FROM registry_instance WHERE status = 'DEAD'")
        .await;
    assert_eq!(dead, 0);
    let mut discovery = DiscoveryServiceClient::new(connect(&survivor_addr).await);
    for i in &agents {
        let got = discovery
            .get_instance(proto::GetInstanceRequest {
                instance_id: i.instance_id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .instance
            .unwrap();
        assert_eq!(got.status, proto::InstanceStatus::Alive as i32);
    }
}
