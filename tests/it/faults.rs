//! Faults injected into real processes under load: the server SIGKILLed mid-burst, its Postgres
//! crashed and restarted, Redis killed between two replicas, clients that never read. Each
//! asserts what must outlast its fault: every acknowledged registration, every agent that kept
//! beating, and a bounded server.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_registry::proto::{
    self, Directive, DiscoverView, discovery_service_client::DiscoveryServiceClient,
    registry_service_client::RegistryServiceClient, watch_event::Type,
};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;

use crate::e2e::{spawn_binary_at, spawn_binary_with};
use crate::on_both_backends;
use crate::pg_server::PgServer;
use crate::redis_server::{RedisServer, unique_prefix};
use crate::replicas::redis_health;
use crate::support::{Backend, TestDb, eventually, reg, view};
use crate::watch::{next, watch_req};

/// No loop of these tests runs longer than this, whatever happens to the processes it drives.
const LOOP_LIMIT: Duration = Duration::from_secs(60);

async fn connect(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect")
}

/// `n` connections to one server, so a burst is not one HTTP/2 connection's worth.
async fn connections(addr: &str, n: usize) -> Vec<Channel> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(connect(addr).await);
    }
    out
}

fn lease(seconds: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration { seconds, nanos: 0 })
}

/// Every instance (any status) Discover view ALL returns for `namespace`, by id.
async fn discover_all(
    discovery: &mut DiscoveryServiceClient<Channel>,
    namespace: &str,
) -> HashMap<String, proto::Instance> {
    let mut req = view(namespace, DiscoverView::All);
    req.page_size = 1000;
    let mut out = HashMap::new();
    loop {
        let page = discovery
            .discover(req.clone())
            .await
            .expect("discover")
            .into_inner();
        out.extend(
            page.instances
                .into_iter()
                .map(|i| (i.instance_id.clone(), i)),
        );
        if page.next_page_token.is_empty() {
            return out;
        }
        req.page_token = page.next_page_token;
    }
}

async fn stored_ids(db_url: &str, namespace: &str) -> HashSet<String> {
    let sql = format!(
        "SELECT CAST(instance_id AS TEXT) FROM registry_instance WHERE namespace = '{namespace}'"
    );
    let rows: Vec<(String,)> = if db_url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(db_url).await.unwrap();
        let rows = sqlx::query_as(&sql).fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows
    } else {
        let pool = sqlx::PgPool::connect(db_url).await.unwrap();
        let rows = sqlx::query_as(&sql).fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows
    };
    rows.into_iter().map(|r| r.0).collect()
}

/// What a burst of registrations saw: every instance whose Register returned OK, and the
/// codes of those that failed.
#[derive(Default)]
struct Burst {
    acked: Mutex<Vec<proto::Instance>>,
    failed: Mutex<Vec<Code>>,
    stop: AtomicBool,
}

#[derive(Clone, Copy, PartialEq)]
enum OnError {
    /// The server is gone: a writer ends at its first failure.
    End,
    /// The server stays: a writer pauses and tries again (a fresh registration).
    Retry,
}

impl Burst {
    fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    fn acked(&self) -> Vec<proto::Instance> {
        self.acked.lock().unwrap().clone()
    }

    fn failed(&self) -> Vec<Code> {
        self.failed.lock().unwrap().clone()
    }

    /// `writers` tasks registering into `namespace`, each as fast as it gets answers, spread
    /// over `channels`, until `stop` is set (or `LOOP_LIMIT`).
    fn start(
        self: &Arc<Self>,
        channels: &[Channel],
        namespace: &str,
        writers: usize,
        on_error: OnError,
    ) -> JoinSet<()> {
        let mut set = JoinSet::new();
        let until = Instant::now() + LOOP_LIMIT;
        for w in 0..writers {
            let burst = self.clone();
            let mut client = RegistryServiceClient::new(channels[w % channels.len()].clone());
            let namespace = namespace.to_string();
            set.spawn(async move {
                let mut n = 0u64;
                while !burst.stop.load(Ordering::SeqCst) && Instant::now() < until {
                    n += 1;
                    let req = reg(&namespace, &format!("w{w}-{n}"));
                    let call = tokio::time::timeout(Duration::from_secs(20), client.register(req));
                    match call.await {
                        Ok(Ok(reply)) => {
                            let i = reply.into_inner().instance.expect("instance");
                            burst.acked.lock().unwrap().push(i);
                        }
                        failure => {
                            let code = match failure {
                                Ok(Err(status)) => status.code(),
                                _ => Code::DeadlineExceeded,
                            };
                            burst.failed.lock().unwrap().push(code);
                            if on_error == OnError::End {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            });
        }
        set
    }

    async fn stop(&self, writers: &mut JoinSet<()>) {
        self.stop.store(true, Ordering::SeqCst);
        while let Some(r) = writers.join_next().await {
            r.expect("writer");
        }
    }
}

/// The acknowledged instances a server shows exactly as they were acknowledged, and the
/// database holds; panics naming the ones lost or changed.
fn assert_all_present(
    acked: &[proto::Instance],
    shown: &HashMap<String, proto::Instance>,
    stored: &HashSet<String>,
) {
    let lost: Vec<&str> = acked
        .iter()
        .filter(|i| !stored.contains(&i.instance_id))
        .map(|i| i.instance_id.as_str())
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged registrations are not in the database: {lost:?}",
        lost.len(),
        acked.len()
    );
    for i in acked {
        let got = shown.get(&i.instance_id);
        assert_eq!(
            got,
            Some(i),
            "acknowledged instance as Discover ALL shows it"
        );
    }
}

/// The SIGKILL test on one backend: the registrations answered before the process died are
/// exactly what a new process on the same database finds.
async fn acknowledged_registrations_survive_kill_9_mid_burst(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    // Leases far longer than the test: nothing but the crash may touch the acknowledged rows.
    let flags = ["--default-lease-ttl", "10m"];
    let (mut server, addr) = spawn_binary_with(&db, &flags).await;
    let burst = Arc::new(Burst::default());
    let mut writers = burst.start(&connections(&addr, 4).await, "burst", 16, OnError::End);
    let b = &burst;
    eventually("hundreds of registrations acknowledged", || async {
        b.acked_count() >= 500
    })
    .await;
    let started = Instant::now();
    server.start_kill().expect("SIGKILL the server");
    let at_kill = burst.acked_count();
    server.wait().await.unwrap();
    // Each writer ends at its first failure, which the dead server gives every one of them.
    while let Some(r) = writers.join_next().await {
        r.expect("writer");
    }
    let acked = burst.acked();
    let failed = burst.failed();
    assert!(
        !failed.is_empty(),
        "calls were in flight when the server died"
    );

    let (_again, addr) = spawn_binary_with(&db, &flags).await;
    let mut discovery = DiscoveryServiceClient::new(connect(&addr).await);
    let shown = discover_all(&mut discovery, "burst").await;
    let stored = stored_ids(&db.url, "burst").await;
    assert_all_present(&acked, &shown, &stored);
    println!(
        "{backend:?}: {} registrations acknowledged ({at_kill} when SIGKILL was sent, {} answered \
         while it landed), {} calls failed, {} rows stored; all acknowledged present after a \
         restart ({:?} from the kill)",
        acked.len(),
        acked.len() - at_kill,
        failed.len(),
        stored.len(),
        started.elapsed(),
    );
}

on_both_backends!(acknowledged_registrations_survive_kill_9_mid_burst);

/// What one agent's heartbeat stream went through, by phase of the outage.
#[derive(Debug, Default)]
struct Beats {
    /// Acknowledgements before, during and after the outage.
    acks: [u32; 3],
    /// How the stream ended before the agent stopped beating (an error, its end, a directive).
    ended: Option<String>,
}

/// Beats every 300 ms on one stream for `id` until `stop`; `phase` says which count an
/// acknowledgement goes to. Anything that ends the stream is recorded and ends the agent.
async fn beat(
    channel: Channel,
    id: String,
    phase: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> Beats {
    let mut report = Beats::default();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut replies = match RegistryServiceClient::new(channel)
        .heartbeat(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
    {
        Ok(r) => r.into_inner(),
        Err(e) => {
            report.ended = Some(format!("could not open: {e}"));
            return report;
        }
    };
    let until = Instant::now() + LOOP_LIMIT;
    let mut seq = 0u64;
    while !stop.load(Ordering::SeqCst) && Instant::now() < until {
        seq += 1;
        let req = proto::HeartbeatRequest {
            instance_id: id.clone(),
            sequence: seq,
            status: 0,
        };
        if tx.send(req).await.is_err() {
            report.ended = Some("request side closed".into());
            return report;
        }
        match tokio::time::timeout(Duration::from_secs(3), replies.message()).await {
            Ok(Ok(Some(ack))) if ack.directive == Directive::None as i32 => {
                assert_eq!(ack.sequence, seq);
                report.acks[phase.load(Ordering::SeqCst)] += 1;
            }
            other => {
                report.ended = Some(format!("{other:?}"));
                return report;
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
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
        assert_eq!(r.ended, None, "a heartbeat stream ended: {reports:?}");
        assert!(
            r.acks.iter().all(|a| *a > 0),
            "beats acknowledged before, during and after the outage: {reports:?}"
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

    let shown = discover_all(&mut discovery, "burst").await;
    let stored = stored_ids(&url, "burst").await;
    // Nothing beats for or changes the burst's instances: each is shown exactly as answered.
    assert_all_present(&acked, &shown, &stored);
    println!(
        "Postgres crash: {} registrations acknowledged ({at_crash} before the crash, {} during \
         it, {} after), {} refused; outage {outage:?}, Register answered {answering_after:?} \
         after Postgres was back; beats acknowledged (before, during, after): {:?}",
        acked.len(),
        before_recovery - at_crash,
        acked.len() - before_recovery,
        failed.len(),
        reports.iter().map(|r| r.acks).collect::<Vec<_>>(),
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
/// Fails today: a sweep that began before the outage was noticed claims the lapsed lease and
/// its expiry waits for a pooled connection (up to the 5 s acquire timeout); Postgres returns
/// within that wait, so the expiry commits at once, ahead of the grace the recovery grants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_ran_out_during_a_postgres_outage_gets_its_grace() {
    let Some(mut pg) = PgServer::start() else {
        return;
    };
    let url = pg.url();
    let (_server, addr) = spawn_binary_at(&url, &[]).await;
    let channel = connect(&addr).await;
    let mut registry = RegistryServiceClient::new(channel.clone());
    let mut discovery = DiscoveryServiceClient::new(channel.clone());
    let mut ids = Vec::new();
    for name in ["beating", "silent"] {
        let req = proto::RegisterRequest {
            lease_ttl: lease(GRACE_LEASE.as_secs() as i64),
            ..reg("grace", name)
        };
        let i = registry.register(req).await.unwrap().into_inner().instance;
        ids.push(i.unwrap().instance_id);
    }
    let (beating, silent) = (ids[0].clone(), ids[1].clone());
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
    assert_eq!(report.ended, None, "the beating agent's stream: {report:?}");
    assert!(report.acks.iter().all(|a| *a > 0), "{report:?}");
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

/// Reads a Watch until `stop`, counting the PUTs of each instance; records how it ended.
#[derive(Default)]
struct Watched {
    puts: Mutex<HashMap<String, u32>>,
    other: Mutex<Vec<String>>,
    ended: Mutex<Option<String>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_changes_still_reach_the_other_replica() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let (redis_url, prefix) = (redis.url(), unique_prefix());
    let flags = [
        "--redis-url",
        &redis_url,
        "--redis-prefix",
        &prefix,
        "--change-poll-interval",
        "200ms",
        "--default-lease-ttl",
        "10m",
    ];
    let (_a, a_addr) = spawn_binary_with(&db, &flags).await;
    let (_b, b_addr) = spawn_binary_with(&db, &flags).await;
    let (a, b) = (connect(&a_addr).await, connect(&b_addr).await);
    for ch in [&a, &b] {
        eventually("Redis notifications stand", || async {
            redis_health(ch).await == ServingStatus::Serving as i32
        })
        .await;
    }

    let mut watch = DiscoveryServiceClient::new(b.clone())
        .watch(watch_req("burst", 0))
        .await
        .unwrap()
        .into_inner();
    let first = next(&mut watch).await;
    assert_eq!(first.bookmark_revision, 0, "an empty snapshot first");
    let watched = Arc::new(Watched::default());
    let reading = {
        let watched = watched.clone();
        tokio::spawn(async move {
            let until = Instant::now() + LOOP_LIMIT;
            while Instant::now() < until {
                match watch.message().await {
                    Ok(Some(m)) => {
                        for e in m.events {
                            let i = e.instance.expect("event instance");
                            if e.r#type == Type::Put as i32 {
                                *watched
                                    .puts
                                    .lock()
                                    .unwrap()
                                    .entry(i.instance_id)
                                    .or_default() += 1;
                            } else {
                                watched.other.lock().unwrap().push(i.instance_id);
                            }
                        }
                    }
                    other => {
                        *watched.ended.lock().unwrap() = Some(format!("{other:?}"));
                        return;
                    }
                }
            }
        })
    };

    let burst = Arc::new(Burst::default());
    let mut writers = burst.start(&connections(&a_addr, 2).await, "burst", 8, OnError::End);
    let bu = &burst;
    eventually("registrations acknowledged before Redis dies", || async {
        bu.acked_count() >= 200
    })
    .await;
    let killed = Instant::now();
    redis.stop();
    let at_kill = burst.acked_count();
    eventually("registrations acknowledged after Redis died", || async {
        bu.acked_count() >= at_kill + 300
    })
    .await;
    burst.stop(&mut writers).await;
    let acked = burst.acked();
    assert_eq!(
        burst.failed(),
        vec![],
        "Redis carries no data: no Register fails"
    );
    eventually("B reports the notifications down", || async {
        redis_health(&b).await == ServingStatus::NotServing as i32
    })
    .await;

    let w = &watched;
    let acked_ids: HashSet<&str> = acked.iter().map(|i| i.instance_id.as_str()).collect();
    eventually(
        "every acknowledged registration reaches B's watcher",
        || async {
            let puts = w.puts.lock().unwrap();
            acked_ids.iter().all(|id| puts.contains_key(*id)) || w.ended.lock().unwrap().is_some()
        },
    )
    .await;
    let caught_up = killed.elapsed();
    assert_eq!(*watched.ended.lock().unwrap(), None, "B's watch ended");
    {
        let puts = watched.puts.lock().unwrap();
        let twice: Vec<_> = puts.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "a PUT delivered twice: {twice:?}");
        let extra: Vec<_> = puts
            .keys()
            .filter(|id| !acked_ids.contains(id.as_str()))
            .collect();
        assert!(extra.is_empty(), "PUTs of nothing acknowledged: {extra:?}");
        assert_eq!(*watched.other.lock().unwrap(), Vec::<String>::new());
    }
    reading.abort();

    // B's Discover agrees with the acknowledgements and with A.
    let on_b = discover_all(&mut DiscoveryServiceClient::new(b.clone()), "burst").await;
    let stored = stored_ids(&db.url, "burst").await;
    assert_all_present(&acked, &on_b, &stored);
    let on_a = discover_all(&mut DiscoveryServiceClient::new(a.clone()), "burst").await;
    assert_eq!(on_a.len(), acked.len());
    assert_eq!(on_b, on_a, "both replicas show the same instances");
    println!(
        "Redis killed: {} registrations acknowledged on A ({at_kill} before the kill); all \
         reached B's watcher as one PUT each within {caught_up:?} of the kill",
        acked.len()
    );
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Heartbeats offered without end (up to `cap`): each one the transport takes is counted.
fn offered_beats(
    id: String,
    pulled: Arc<AtomicU64>,
    cap: u64,
) -> impl tokio_stream::Stream<Item = proto::HeartbeatRequest> + Send + 'static {
    use futures_util::StreamExt;
    futures_util::stream::iter(1..=cap).map(move |sequence| {
        pulled.fetch_add(1, Ordering::Relaxed);
        proto::HeartbeatRequest {
            instance_id: id.clone(),
            sequence,
            status: 0,
        }
    })
}

/// Beats each stream offers at most: far more than any window or buffer may hold.
const OFFERED_PER_STREAM: u64 = 2_000_000;
const NEVER_READ_STREAMS: usize = 4;
const SLOW_WATCHERS: usize = 4;
const CHANGES: usize = 2000;
const CHURN_WRITERS: usize = 64;
const WATCH_BUFFER: usize = 256;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_does_not_grow_server_memory() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let buffer = WATCH_BUFFER.to_string();
    let flags = ["--watch-buffer", &buffer, "--default-lease-ttl", "10m"];
    let (server, addr) = spawn_binary_with(&db, &flags).await;
    let pid = server.id().expect("running");
    let main = connect(&addr).await;
    let mut registry = RegistryServiceClient::new(main.clone());
    let mut ids = Vec::new();
    for n in 0..NEVER_READ_STREAMS {
        let i = registry.register(reg("deaf", &format!("agent-{n}"))).await;
        ids.push(i.unwrap().into_inner().instance.unwrap().instance_id);
    }

    // Watchers that never read, on connections with a small receive window, so what the
    // server could still send quickly stops being read and the rest must wait on it.
    let mut watches = Vec::new();
    for _ in 0..SLOW_WATCHERS {
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .initial_stream_window_size(65_535)
            .initial_connection_window_size(65_535)
            .connect()
            .await
            .unwrap();
        let w = DiscoveryServiceClient::new(channel)
            .watch(watch_req("churn", 0))
            .await
            .expect("watch opens");
        watches.push(w.into_inner());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = rss_kib(pid);
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        tokio::spawn(async move {
            let until = Instant::now() + LOOP_LIMIT;
            while sampling.load(Ordering::SeqCst) && Instant::now() < until {
                peak.fetch_max(rss_kib(pid), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    // Heartbeat streams whose replies are never read, each on its own connection.
    let pulled: Vec<Arc<AtomicU64>> = (0..NEVER_READ_STREAMS).map(|_| Arc::default()).collect();
    let mut deaf = Vec::new();
    for (id, count) in ids.iter().zip(&pulled) {
        let mut client = RegistryServiceClient::new(connect(&addr).await);
        let beats = offered_beats(id.clone(), count.clone(), OFFERED_PER_STREAM);
        deaf.push(client.heartbeat(beats).await.expect("open").into_inner());
    }

    // Back-pressure: the transport soon stops taking beats, far short of what is offered.
    let total = |p: &[Arc<AtomicU64>]| p.iter().map(|c| c.load(Ordering::Relaxed)).sum::<u64>();
    let opened = Instant::now();
    let last = Mutex::new((total(&pulled), Instant::now()));
    eventually("the transport stops taking heartbeats", || async {
        let now = total(&pulled);
        let mut last = last.lock().unwrap();
        if now != last.0 {
            *last = (now, Instant::now());
        }
        last.1.elapsed() >= Duration::from_secs(1)
    })
    .await;
    let taken = total(&pulled);
    let stalled_after = opened.elapsed();

    // Then many changes of a few KiB each while the slow watchers read nothing, so a server
    // that buffered them per watcher would show it.
    let labels: HashMap<String, String> = (0..16)
        .map(|k| (format!("pad-{k}"), "x".repeat(250)))
        .collect();
    let mut churn = JoinSet::new();
    for w in 0..CHURN_WRITERS {
        let mut client = RegistryServiceClient::new(main.clone());
        let labels = labels.clone();
        churn.spawn(async move {
            for n in (w..CHANGES).step_by(CHURN_WRITERS) {
                let req = proto::RegisterRequest {
                    labels: labels.clone(),
                    ..reg("churn", &format!("c-{n}"))
                };
                client.register(req).await.expect("register under load");
            }
        });
    }
    let churned = Instant::now();
    while let Some(r) = churn.join_next().await {
        r.expect("churn writer");
    }
    let churned = churned.elapsed();
    assert_eq!(
        total(&pulled),
        taken,
        "heartbeats taken while nothing reads their replies"
    );
    sampling.store(false, Ordering::SeqCst);
    sampler.await.unwrap();
    let (peak, now) = (peak.load(Ordering::SeqCst), rss_kib(pid));

    let offered = OFFERED_PER_STREAM * NEVER_READ_STREAMS as u64;
    let beat_bytes = {
        use prost::Message;
        proto::HeartbeatRequest {
            instance_id: ids[0].clone(),
            sequence: OFFERED_PER_STREAM / 2,
            status: 0,
        }
        .encoded_len() as u64
            + 5
    };
    let mib = |n: u64| n as f64 / (1024.0 * 1024.0);
    println!(
        "never-reading clients: heartbeats taken {taken} of {offered} offered ({:.1} of {:.0} MiB; \
         per stream {:?}), no more after {stalled_after:?} nor during {CHANGES} changes \
         ({churned:?}); server RSS baseline {:.1} MiB, peak {:.1} MiB, after {:.1} MiB",
        mib(taken * beat_bytes),
        mib(offered * beat_bytes),
        pulled
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect::<Vec<_>>(),
        baseline as f64 / 1024.0,
        peak as f64 / 1024.0,
        now as f64 / 1024.0,
    );
    assert!(
        pulled.iter().all(|c| c.load(Ordering::Relaxed) > 0),
        "every stream was taking heartbeats"
    );
    assert!(
        taken < offered / 10,
        "back-pressure: {taken} of {offered} heartbeats taken"
    );
    assert!(
        peak < baseline + 200 * 1024,
        "server RSS grew from {baseline} KiB to {peak} KiB"
    );

    // The server still serves everyone else.
    let mut fresh = RegistryServiceClient::new(connect(&addr).await);
    tokio::time::timeout(Duration::from_secs(5), fresh.register(reg("deaf", "late")))
        .await
        .expect("Register answers in time")
        .expect("Register");

    // A slow watcher was cut off rather than buffered: it reads what was in flight, then
    // RESOURCE_EXHAUSTED naming where to resume.
    for (n, w) in watches.iter_mut().enumerate() {
        let mut events = 0usize;
        let end = loop {
            match tokio::time::timeout(Duration::from_secs(10), w.message()).await {
                Ok(Ok(Some(m))) => events += m.events.len(),
                other => break other,
            }
        };
        let status = match end {
            Ok(Err(status)) => status,
            other => panic!("watcher {n}: after {events} events: {other:?}"),
        };
        assert_eq!(
            status.code(),
            Code::ResourceExhausted,
            "watcher {n} after {events} events: {status:?}"
        );
        assert!(
            status.message().contains("resume from revision"),
            "{status:?}"
        );
        assert!(
            events < CHANGES,
            "watcher {n} got {events} of {CHANGES} events: buffered, not cut off"
        );
        println!("slow watcher {n}: {events} of {CHANGES} events, then {status:?}");
    }

    // The deaf streams were only slowed, not broken: the first reply is the first beat's.
    let first = deaf[0].message().await.expect("reply").expect("open");
    assert_eq!(first.sequence, 1);
}
