//! A randomized fault run: three replicas (real processes, each through its own proxy to a
//! Postgres of the test's own, sharing a Redis of its own), agents kept by the Rust keeper with
//! every replica's address, a watcher on every replica, registrations coming and going — while
//! random faults strike one at a time: a replica killed (SIGKILL) and restarted, a replica's
//! store black-holed or reset, Postgres restarted, Redis killed.
//!
//! At the end: every acknowledged registration is stored; no kept agent was expired (or had to
//! register anew); every watcher's sequence of events is exactly the change log for its filter.
//! The run is seeded: the seed is printed, `FAULT_SEED=…` replays it, and `FAULT_RUN_SECS`
//! lengthens it (default 70 s, so the test fits in three minutes).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_registry::proto::{
    self, discovery_service_client::DiscoveryServiceClient, watch_event::Type,
};
use agent_registry_client::Client;
use agent_registry_client::backoff::Backoff;
use agent_registry_client::keeper::Keeper;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::process::{Child, Command};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::Code;
use tonic::transport::Channel;

use super::lease;
use crate::support::PgServer;
use crate::support::binary::{BIN, spawn_command};
use crate::support::proxy::{Mode, Proxy, in_front_of};
use crate::support::redis::{RedisServer, unique_prefix};
use crate::support::{TestDb, eventually, reg};
use crate::watch::watch_req;

const REPLICAS: usize = 3;
const AGENTS: usize = 9;
const LEASE: i64 = 6;
const NS: &str = "chaos";

/// One replica: its fixed address (it comes back on it after a kill) and its store's proxy.
struct Replica {
    listen: String,
    proxy: Proxy,
    via: String,
    child: Option<Child>,
}

impl Replica {
    fn url(&self) -> String {
        format!("http://{}", self.listen)
    }

    async fn start(&mut self, redis: &str, prefix: &str) {
        let flags = [
            "--store-timeout",
            "1s",
            "--health-check-interval",
            "500ms",
            "--redis-url",
            redis,
            "--redis-prefix",
            prefix,
        ];
        let (child, _) = spawn_command(Command::new(BIN), &self.via, &self.listen, &flags).await;
        self.child = Some(child);
    }

    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().expect("SIGKILL");
            let _ = child.wait().await;
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Fault {
    KillReplica,
    BlackHole,
    Reset,
    RestartPostgres,
    KillRedis,
}

const FAULTS: [Fault; 5] = [
    Fault::KillReplica,
    Fault::BlackHole,
    Fault::Reset,
    Fault::RestartPostgres,
    Fault::KillRedis,
];

/// What one watcher saw: (revision, instance id, type), in order, after its first bookmark.
#[derive(Debug, Default)]
struct Seen {
    start: Option<i64>,
    events: Vec<(i64, String, i32)>,
    position: i64,
    reconnects: u32,
}

/// Watches `NS` on one replica for ever, resuming from the last revision it saw after every
/// break (a kill, shutdown, a cut-off), as a client should.
async fn watcher(url: String, seen: Arc<Mutex<Seen>>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        let start = {
            let s = seen.lock().unwrap();
            if s.start.is_some() { s.position } else { 0 }
        };
        let channel = match Channel::from_shared(url.clone()).unwrap().connect().await {
            Ok(c) => c,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let mut stream = match DiscoveryServiceClient::new(channel)
            .watch(watch_req(NS, start))
            .await
        {
            Ok(s) => s.into_inner(),
            Err(e) => {
                assert_ne!(e.code(), Code::OutOfRange, "resume from {start}: {e:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        loop {
            let msg = tokio::select! {
                m = stream.message() => m,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {
                    if stop.load(Ordering::SeqCst) { return } else { continue }
                }
            };
            let mut s = seen.lock().unwrap();
            match msg {
                Ok(Some(m)) => {
                    // A message without events is a bookmark (revision 0 in an empty registry).
                    let bookmark = m.events.is_empty();
                    for e in m.events {
                        let i = e.instance.expect("instance");
                        assert!(
                            e.revision > s.position,
                            "in order: {} after {}",
                            e.revision,
                            s.position
                        );
                        s.position = e.revision;
                        if s.start.is_some() {
                            s.events.push((e.revision, i.instance_id, e.r#type));
                        }
                    }
                    if bookmark {
                        s.position = s.position.max(m.bookmark_revision);
                        s.start.get_or_insert(m.bookmark_revision);
                    }
                }
                Ok(None) | Err(_) => {
                    if let Err(e) = &msg {
                        assert_ne!(e.code(), Code::OutOfRange, "{e:?}");
                    }
                    if s.start.is_none() {
                        // The snapshot broke before its bookmark: list again.
                        s.events.clear();
                        s.position = 0;
                    }
                    s.reconnects += 1;
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_faults_lose_nothing_and_kill_no_live_agent() {
    let Some(mut pg) = PgServer::start() else {
        return;
    };
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let seed: u64 = std::env::var("FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().r#gen());
    let run = Duration::from_secs(
        std::env::var("FAULT_RUN_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(70),
    );
    println!(
        "randomized fault run: FAULT_SEED={seed} FAULT_RUN_SECS={}",
        run.as_secs()
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let url = pg.url();
    let (redis_url, prefix) = (redis.url(), unique_prefix());

    let mut replicas = Vec::new();
    for _ in 0..REPLICAS {
        let (proxy, via) = in_front_of(&url).await;
        let mut r = Replica {
            listen: format!("127.0.0.1:{}", free_port()),
            proxy,
            via,
            child: None,
        };
        r.start(&redis_url, &prefix).await;
        replicas.push(r);
    }
    let urls: Vec<String> = replicas.iter().map(Replica::url).collect();

    let (stop, watchers_stop) = (Arc::new(AtomicBool::new(false)), Arc::default());
    let seen: Vec<Arc<Mutex<Seen>>> = (0..REPLICAS).map(|_| Arc::default()).collect();
    let mut watchers = JoinSet::new();
    for (u, s) in urls.iter().zip(&seen) {
        watchers.spawn(watcher(u.clone(), s.clone(), Arc::clone(&watchers_stop)));
    }
    for s in &seen {
        let s = s.clone();
        eventually("every watcher has its snapshot", || {
            let s = s.clone();
            async move { s.lock().unwrap().start.is_some() }
        })
        .await;
    }

    // Agents, spread over the replicas by the order of their addresses.
    let backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
    let mut keepers = Vec::new();
    for n in 0..AGENTS {
        let mut addresses = urls.clone();
        addresses.rotate_left(n % REPLICAS);
        let client = Client::connect_any(&addresses, &Default::default()).unwrap();
        let req = proto::RegisterRequest {
            lease_ttl: lease(LEASE),
            ..reg(NS, &format!("agent-{n}"))
        };
        keepers.push(Keeper::spawn(client, req, backoff.clone()));
    }
    for k in &keepers {
        k.state().wait_for(|s| s.acks >= 1).await.unwrap();
    }

    // Registrations coming and going, through any replica: every acknowledged one must stay.
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let deregistered: Arc<Mutex<HashSet<String>>> = Arc::default();
    let churn = {
        let (urls, acked, stop) = (urls.clone(), acked.clone(), stop.clone());
        let deregistered = deregistered.clone();
        tokio::spawn(async move {
            let clients: Vec<Client> = urls.iter().map(|u| Client::connect(u).unwrap()).collect();
            let mut n = 0usize;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let client = &clients[n % clients.len()];
                let call = client.register(reg(NS, &format!("churn-{n}")));
                if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(5), call).await {
                    let id = r.instance.instance_id;
                    acked.lock().unwrap().push(id.clone());
                    if n.is_multiple_of(2) {
                        let req = proto::DeregisterRequest {
                            instance_id: id.clone(),
                            reason: "churn".into(),
                        };
                        let done = tokio::time::timeout(
                            Duration::from_secs(5),
                            client.registry.clone().deregister(req),
                        )
                        .await;
                        if matches!(done, Ok(Ok(_))) {
                            deregistered.lock().unwrap().insert(id);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        })
    };

    // The faults: one at a time, each 1–4 s, 2–4 s apart.
    let mut counts = std::collections::BTreeMap::new();
    let began = Instant::now();
    while began.elapsed() < run {
        let fault = FAULTS[rng.gen_range(0..FAULTS.len())];
        let r = rng.gen_range(0..REPLICAS);
        let lasts = Duration::from_millis(rng.gen_range(1000..4000));
        *counts.entry(format!("{fault:?}")).or_insert(0u32) += 1;
        match fault {
            Fault::KillReplica => {
                replicas[r].kill().await;
                tokio::time::sleep(lasts).await;
                replicas[r].start(&redis_url, &prefix).await;
            }
            Fault::BlackHole | Fault::Reset => {
                let mode = if fault == Fault::BlackHole {
                    Mode::BlackHole
                } else {
                    Mode::Reset
                };
                replicas[r].proxy.set(mode);
                tokio::time::sleep(lasts).await;
                replicas[r].proxy.set(Mode::Pass);
            }
            Fault::RestartPostgres => {
                tokio::task::block_in_place(|| pg.stop());
                tokio::time::sleep(lasts).await;
                tokio::task::block_in_place(|| pg.resume());
            }
            Fault::KillRedis => {
                redis.stop();
                tokio::time::sleep(lasts).await;
                redis.resume();
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(2000..4000))).await;
    }
    let faulted_for = began.elapsed();

    // Everything healed: the agents settle, a marker change reaches every watcher.
    stop.store(true, Ordering::SeqCst);
    churn.await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let marker = Client::connect(&urls[0]).unwrap();
    let mark = loop {
        match marker.register(reg(NS, "marker")).await {
            Ok(r) => break r.instance.revision,
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    };
    for (n, s) in seen.iter().enumerate() {
        let s = s.clone();
        eventually(&format!("watcher {n} reaches the marker"), || {
            let s = s.clone();
            async move { s.lock().unwrap().position >= mark }
        })
        .await;
    }

    // 1. Every acknowledged registration is stored.
    let stored: HashSet<String> = {
        let sql = format!(
            "SELECT CAST(instance_id AS TEXT) FROM registry_instance WHERE namespace = '{NS}'"
        );
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        let rows: Vec<(String,)> = sqlx::query_as(&sql).fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows.into_iter().map(|r| r.0).collect()
    };
    let acked = acked.lock().unwrap().clone();
    let lost: Vec<_> = acked.iter().filter(|i| !stored.contains(*i)).collect();
    assert!(
        lost.is_empty(),
        "seed {seed}: acknowledged registrations lost: {lost:?}"
    );

    // 2. No kept agent was expired or had to register anew.
    let mut kept = Vec::new();
    for (n, k) in keepers.iter().enumerate() {
        let s = k.state().borrow().clone();
        assert_eq!(
            s.registrations, 1,
            "seed {seed}: agent {n} registered anew: {s:?}"
        );
        kept.push(s.instance.expect("registered").instance_id);
    }
    let ids = kept
        .iter()
        .map(|i| format!("'{i}'"))
        .collect::<Vec<_>>()
        .join(",");
    let dead = TestDb::query_i64_at(
        &url,
        &format!("SELECT count(*) FROM registry_instance WHERE CAST(instance_id AS TEXT) IN ({ids}) AND status = 'DEAD'"),
    )
    .await;
    assert_eq!(dead, 0, "seed {seed}: a kept agent was marked DEAD");
    // Only churn instances that were never deregistered may run out of lease.
    let expired: Vec<(String,)> = {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        let sql = "SELECT CAST(instance_id AS TEXT) FROM registry_instance \
                   WHERE namespace = $1 AND death_reason = 'LEASE_EXPIRED'";
        let rows = sqlx::query_as(sql).bind(NS).fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows
    };
    let deregistered = deregistered.lock().unwrap().clone();
    for (id,) in &expired {
        assert!(!kept.contains(id), "seed {seed}: kept agent {id} expired");
        assert!(
            acked.contains(id) && !deregistered.contains(id),
            "seed {seed}: {id} expired, but it was deregistered or never registered by churn"
        );
    }

    // 3. Every watcher saw exactly the change log after its snapshot, in order.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    for (n, s) in seen.iter().enumerate() {
        let (start, events) = {
            let s = s.lock().unwrap();
            (s.start.unwrap(), s.events.clone())
        };
        let log: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT revision, CAST(instance_id AS TEXT), status FROM registry_change \
             WHERE namespace = $1 AND revision > $2 AND revision <= $3 ORDER BY revision",
        )
        .bind(NS)
        .bind(start)
        .bind(mark)
        .fetch_all(&pool)
        .await
        .unwrap();
        let want: Vec<(i64, String, i32)> = log
            .into_iter()
            .map(|(r, id, status)| {
                let t = if status == "DEAD" {
                    Type::Delete
                } else {
                    Type::Put
                };
                (r, id, t as i32)
            })
            .collect();
        let got: Vec<_> = events.iter().filter(|e| e.0 <= mark).cloned().collect();
        assert_eq!(
            got.len(),
            want.len(),
            "seed {seed}: watcher {n}: event count"
        );
        assert_eq!(
            got, want,
            "seed {seed}: watcher {n} differs from the change log"
        );
    }
    pool.close().await;
    let reconnects: Vec<u32> = seen.iter().map(|s| s.lock().unwrap().reconnects).collect();
    println!(
        "randomized fault run (seed {seed}): {faulted_for:?} of faults {counts:?}; {} \
         registrations acknowledged, all stored; {AGENTS} agents never expired; {REPLICAS} \
         watchers ({reconnects:?} reconnects) each saw the change log exactly, through revision \
         {mark}",
        acked.len()
    );
    for k in keepers {
        let _ = k.shutdown().await;
    }
    watchers_stop.store(true, Ordering::SeqCst);
    watchers.abort_all();
    for r in &mut replicas {
        r.kill().await;
    }
}
