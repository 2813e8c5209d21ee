//! Postgres crashed and restarted under load: nothing acknowledged is lost, beating agents live.

use super::*;

/// What one agent's heartbeat streams went through, by phase of the outage.
#[derive(Debug, Default)]
struct Beats {
    /// Acknowledgements before, during and after the outage.
    acks: [u32; 3],
    /// Streams refused or ended with UNAVAILABLE (the replica could not persist beats), by
    /// phase; the agent opens a new one, as an agent does.
    refused: [u32; 3],
    /// Anything else that ended the agent (another code, a directive, a hung reply).
    ended: Option<String>,
}

/// Beats every 300 ms for `id` until `stop`, opening a new stream whenever the replica answers
/// UNAVAILABLE; `phase` says which count a reply goes to.
async fn beat(
    channel: Channel,
    id: String,
    phase: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> Beats {
    let mut report = Beats::default();
    let until = Instant::now() + LOOP_LIMIT;
    let mut seq = 0u64;
    let unavailable = |s: &tonic::Status| s.code() == Code::Unavailable;
    'streams: while !stop.load(Ordering::SeqCst) && Instant::now() < until {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut replies = match RegistryServiceClient::new(channel.clone())
            .heartbeat(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
        {
            Ok(r) => r.into_inner(),
            Err(e) if unavailable(&e) => {
                report.refused[phase.load(Ordering::SeqCst)] += 1;
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            }
            Err(e) => {
                report.ended = Some(format!("could not open: {e}"));
                return report;
            }
        };
        while !stop.load(Ordering::SeqCst) && Instant::now() < until {
            seq += 1;
            let req = proto::HeartbeatRequest {
                instance_id: id.clone(),
                sequence: seq,
                status: 0,
            };
            // A stream the server ended has dropped its request side: its status says why.
            let _ = tx.send(req).await;
            match tokio::time::timeout(Duration::from_secs(3), replies.message()).await {
                Ok(Ok(Some(ack))) if ack.directive == Directive::None as i32 => {
                    assert_eq!(ack.sequence, seq);
                    report.acks[phase.load(Ordering::SeqCst)] += 1;
                }
                Ok(Err(e)) if unavailable(&e) => {
                    report.refused[phase.load(Ordering::SeqCst)] += 1;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue 'streams;
                }
                other => {
                    report.ended = Some(format!("{other:?}"));
                    return report;
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_under_load_loses_nothing_acknowledged() {
    let Some(mut pg) = PgServer::start() else {
        return;
    };
    let url = pg.url();
    // The burst's leases outlive the test; the agents' are 4 s, shorter than the outage, so
    // an expiry during or after it would show.
    let flags = [
        "--default-lease-ttl",
        "10m",
        "--health-check-interval",
        "500ms",
    ];
    let (_server, addr) = spawn_binary_at(&url, &flags).await;
    let channels = connections(&addr, 4).await;
    let mut registry = RegistryServiceClient::new(channels[0].clone());
    let mut discovery = DiscoveryServiceClient::new(channels[0].clone());
    let mut agents = Vec::new();
    for n in 0..5 {
        let req = proto::RegisterRequest {
            lease_ttl: lease(4),
            ..reg("beating", &format!("agent-{n}"))
        };
        let i = registry.register(req).await.unwrap().into_inner().instance;
        agents.push(i.unwrap().instance_id);
    }
    // The last agent never beats: its expiry after the outage shows that expiry works, so the
    // others staying alive is their beats' doing.
    let silent = agents.pop().unwrap();
    let (phase, stop) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let mut beating = JoinSet::new();
    for (n, id) in agents.iter().enumerate() {
        let channel = channels[n % channels.len()].clone();
        beating.spawn(beat(channel, id.clone(), phase.clone(), stop.clone()));
    }
    let burst = Arc::new(Burst::default());
    let mut writers = burst.start(&channels, "burst", 8, OnError::Retry);
    let b = &burst;
    eventually("registrations acknowledged before the crash", || async {
        b.acked_count() >= 300
    })
    .await;

    phase.store(1, Ordering::SeqCst);
    let crashed = Instant::now();
    tokio::task::block_in_place(|| pg.stop());
    let at_crash = burst.acked_count();
    // While Postgres is away Register answers UNAVAILABLE (safe to retry).
    let req = reg("burst", "during-the-outage");
    let refused = tokio::time::timeout(Duration::from_secs(15), registry.register(req))
        .await
        .expect("Register answers while Postgres is down");
    assert_eq!(
        refused.map(|_| ()).map_err(|s| s.code()),
        Err(Code::Unavailable),
        "Register while Postgres is down"
    );
    let before_recovery = burst.acked_count();
    tokio::task::block_in_place(|| pg.resume());
    let outage = crashed.elapsed();
    phase.store(2, Ordering::SeqCst);
    let resumed = Instant::now();
    let resumed_wall = chrono::Utc::now();
    let r = &registry;
    eventually("Register succeeds again once Postgres is back", || async {
        let mut r = r.clone();
        r.register(reg("burst", "after-the-outage")).await.is_ok()
    })
    .await;
    let answering_after = resumed.elapsed();
    // The burst itself gets through again, for a while.
    let recovered_from = burst.acked_count();
    eventually("the burst is answered again", || async {
        b.acked_count() >= recovered_from + 200
    })
    .await;
    burst.stop(&mut writers).await;
    let acked = burst.acked();
    let failed = burst.failed();
    assert!(
        failed.iter().all(|c| *c == Code::Unavailable),
        "Register failed only with UNAVAILABLE: {failed:?}"
    );

    // Expiry works after the outage (the silent agent's lease runs out), and meanwhile every
    // agent that kept beating is kept. (How soon it may expire is the next test's concern.)
    let d = &discovery;
    eventually("the silent agent expires after the outage", || async {
        let mut d = d.clone();
        let req = proto::GetInstanceRequest {
            instance_id: silent.clone(),
        };
        let i = d.get_instance(req).await.unwrap().into_inner().instance;
        i.unwrap().status == proto::InstanceStatus::Dead as i32
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let mut reports = Vec::new();
    while let Some(r) = beating.join_next().await {
        reports.push(r.expect("agent"));
    }
    for r in &reports {
        assert_eq!(r.ended, None, "an agent was stopped: {reports:?}");
        assert!(
            r.acks[0] > 0 && r.acks[2] > 0,
            "beats acknowledged before and after the outage: {reports:?}"
        );
        // During it: acknowledged while the replica could still vouch for them, then refused
        // with UNAVAILABLE (its beats could not reach the store), never anything else.
        assert!(r.acks[1] + r.refused[1] > 0, "{reports:?}");
        assert_eq!(
            r.refused[0], 0,
            "nothing refused before the outage: {reports:?}"
        );
    }
    for id in &agents {
        let req = proto::GetInstanceRequest {
            instance_id: id.clone(),
        };
        let i = discovery.get_instance(req).await.unwrap().into_inner();
        let status = i.instance.unwrap().status;
        assert_eq!(status, proto::InstanceStatus::Alive as i32, "agent {id}");
    }
    let sql = format!(
        "SELECT count(*) FROM registry_instance WHERE namespace = 'beating' \
         AND status = 'ALIVE' AND last_heartbeat > '{}'",
        resumed_wall.to_rfc3339()
    );
    let u = &url;
    let s = &sql;
    eventually("beats after the outage reach the database", || async {
        TestDb::query_i64_at(u, s).await == agents.len() as i64
    })
    .await;
    let dead = TestDb::query_i64_at(
        &url,
        "SELECT count(*) FROM registry_instance WHERE namespace = 'beating' AND status = 'DEAD'",
    )
    .await;
    assert_eq!(dead, 1, "only the silent agent died");

    let shown = all_by_id(&mut discovery, "burst").await;
    let stored = stored_ids(&url, "burst").await;
    // Nothing beats for or changes the burst's instances: each is shown exactly as answered.
    assert_all_present(&acked, &shown, &stored);
    println!(
        "Postgres crash: {} registrations acknowledged ({at_crash} before the crash, {} during \
         it, {} after), {} refused; outage {outage:?}, Register answered {answering_after:?} \
         after Postgres was back; beats acknowledged (before, during, after): {:?}, streams \
         refused with UNAVAILABLE: {:?}",
        acked.len(),
        before_recovery - at_crash,
        acked.len() - before_recovery,
        failed.len(),
        reports.iter().map(|r| r.acks).collect::<Vec<_>>(),
        reports.iter().map(|r| r.refused).collect::<Vec<_>>(),
    );
}

/// The lease of the silent agent in the grace test, and how long Postgres stays down: longer
/// than that lease and than the store pool's 5 s acquire timeout, as a failover would be.
const GRACE_LEASE: Duration = Duration::from_secs(4);
const LONG_OUTAGE: Duration = Duration::from_secs(8);

/// SPEC §4.3: a replica that sees the database come back from an outage treats every lease as
/// renewed at that moment, so no instance expires before its own `lease_ttl` has passed since
/// then. An agent whose lease ran out while Postgres was down must live that long after.
///
/// The sweep that would claim the lapsed lease first reads stored heartbeats; that read fails
/// while Postgres is down, so nothing is claimed, and the recovery's grace covers the lease.
/// (Before that rule, the claim waited for a pooled connection and committed the expiry the
/// moment Postgres was back.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_ran_out_during_a_postgres_outage_gets_its_grace() {
    let Some(mut pg) = PgServer::start() else {
        return;
    };
    let url = pg.url();
    let (_server, addr) = spawn_binary_at(&url, &[]).await;
    let channel = connect(&addr).await;
    let registry = RegistryServiceClient::new(channel.clone());
    let mut discovery = DiscoveryServiceClient::new(channel.clone());
    let register = |name: &'static str| {
        let mut registry = registry.clone();
        async move {
            let req = proto::RegisterRequest {
                lease_ttl: lease(GRACE_LEASE.as_secs() as i64),
                ..reg("grace", name)
            };
            let i = registry.register(req).await.unwrap().into_inner().instance;
            i.unwrap().instance_id
        }
    };
    let beating = register("beating").await;
    let (phase, stop) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let agent = tokio::spawn(beat(
        channel.clone(),
        beating.clone(),
        phase.clone(),
        stop.clone(),
    ));
    // The beating agent's beats reach the store before the crash (its first ack is phase 0's);
    // only then is the silent one registered, so its lease surely runs out during the outage.
    let (u, b) = (&url, &beating);
    eventually("the beating agent's first beat is stored", || async move {
        let sql = format!(
            "SELECT count(*) FROM registry_instance WHERE instance_id = '{b}' \
             AND last_heartbeat > started_at"
        );
        TestDb::query_i64_at(u, &sql).await == 1
    })
    .await;
    let silent = register("silent").await;
    // The silent agent's lease runs out during the outage.
    let crashed = Instant::now();
    tokio::task::block_in_place(|| pg.stop());
    phase.store(1, Ordering::SeqCst);
    tokio::time::sleep_until(crashed + LONG_OUTAGE).await;
    tokio::task::block_in_place(|| pg.resume());
    phase.store(2, Ordering::SeqCst);
    let resumed = Instant::now();
    let d = &discovery;
    let s = &silent;
    eventually("the silent agent expires after the outage", || async {
        let mut d = d.clone();
        let req = proto::GetInstanceRequest {
            instance_id: s.clone(),
        };
        let i = d.get_instance(req).await.unwrap().into_inner().instance;
        i.unwrap().status == proto::InstanceStatus::Dead as i32
    })
    .await;
    let lived = resumed.elapsed();
    stop.store(true, Ordering::SeqCst);
    let report = agent.await.expect("agent");
    assert_eq!(report.ended, None, "the beating agent: {report:?}");
    assert!(report.acks[0] > 0 && report.acks[2] > 0, "{report:?}");
    let req = proto::GetInstanceRequest {
        instance_id: beating.clone(),
    };
    let i = discovery.get_instance(req).await.unwrap().into_inner();
    assert_eq!(
        i.instance.unwrap().status,
        proto::InstanceStatus::Alive as i32
    );
    println!(
        "grace: Postgres down {:?}; the silent agent (lease {GRACE_LEASE:?}) was seen DEAD \
         {lived:?} after it was back",
        resumed - crashed
    );
    assert!(
        lived >= GRACE_LEASE,
        "the silent agent expired {lived:?} after Postgres was back, before its lease of grace \
         ({GRACE_LEASE:?}) had passed"
    );
}

/// What the Kubernetes probes rely on: with Postgres gone, readiness (the overall entry) turns
/// NOT_SERVING — take the replica out of the Service — while the entry the liveness probe
/// uses stays SERVING, so kubelet never restarts a replica (and drops its leases) for an
/// outage it is waiting out. The process stays up and is ready again when Postgres is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_holds_and_readiness_drops_while_postgres_is_down() {
    use crate::support::health;
    use agent_registry::server::LIVENESS_HEALTH;
    let serving = ServingStatus::Serving as i32;
    let not_serving = ServingStatus::NotServing as i32;
    let Some(mut pg) = PgServer::start() else {
        return;
    };
    let flags = ["--health-check-interval", "500ms"];
    let (mut server, addr) = spawn_binary_at(&pg.url(), &flags).await;
    let channel = connect(&addr).await;
    assert_eq!(health(&channel, "").await, serving);
    assert_eq!(health(&channel, LIVENESS_HEALTH).await, serving);
    tokio::task::block_in_place(|| pg.stop());
    let ch = &channel;
    eventually("readiness NOT_SERVING", || async {
        health(ch, "").await == not_serving
    })
    .await;
    for _ in 0..10 {
        assert_eq!(health(ch, LIVENESS_HEALTH).await, serving, "liveness holds");
        for service in [
            "agentregistry.v1.RegistryService",
            "agentregistry.v1.DiscoveryService",
        ] {
            assert_eq!(health(ch, service).await, not_serving, "{service}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(server.try_wait().unwrap().is_none(), "the process stays up");
    tokio::task::block_in_place(|| pg.resume());
    eventually("ready again", || async { health(ch, "").await == serving }).await;
    assert_eq!(health(ch, LIVENESS_HEALTH).await, serving);
}
