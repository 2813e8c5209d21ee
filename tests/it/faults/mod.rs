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
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::on_both_backends;
use crate::replicas::redis_health;
use crate::support::PgServer;
use crate::support::binary::{spawn_binary_at, spawn_binary_with};
use crate::support::redis::{RedisServer, unique_prefix};
use crate::support::{Backend, TestDb, connect, discover_all, eventually, lease, reg, view};
use crate::watch::{next, watch_req};

/// No loop of these tests runs longer than this, whatever happens to the processes it drives.
const LOOP_LIMIT: Duration = Duration::from_secs(60);

/// `n` connections to one server, so a burst is not one HTTP/2 connection's worth.
async fn connections(addr: &str, n: usize) -> Vec<Channel> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(connect(addr).await);
    }
    out
}

/// Every instance (any status) Discover view ALL returns for `namespace`, by id.
async fn all_by_id(
    discovery: &mut DiscoveryServiceClient<Channel>,
    namespace: &str,
) -> HashMap<String, proto::Instance> {
    let req = proto::DiscoverRequest {
        page_size: 1000,
        ..view(namespace, DiscoverView::All)
    };
    let all = discover_all(discovery, req).await;
    all.into_iter()
        .map(|i| (i.instance_id.clone(), i))
        .collect()
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
    let shown = all_by_id(&mut discovery, "burst").await;
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

mod pg_restart;
mod redis_kill;
mod slow_client;
mod store_outage;
