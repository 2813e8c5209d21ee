//! Several replicas on one Postgres: concurrent writers everywhere, a watcher on every replica
//! seeing exactly the database's sequence of changes, Discover converging, Redis going away and
//! coming back.

use std::time::Duration;

use agent_registry::proto::{self, DiscoverView, watch_event::Type};
use agent_registry::server::REDIS_HEALTH;
use agent_registry_core::metrics::Source as _;
use tokio::task::JoinSet;
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::metrics::{sample, scrape};
use crate::support::redis::{RedisServer, shared_url, unique_prefix};
use crate::support::{Backend, TestDb, TestServer, eventually, reg, view};
use crate::watch::{Seen, events, next, open, watch_req};

fn status_code(s: &str) -> i32 {
    match s {
        "STARTING" => proto::InstanceStatus::Starting as i32,
        "ALIVE" => proto::InstanceStatus::Alive as i32,
        "DRAINING" => proto::InstanceStatus::Draining as i32,
        _ => proto::InstanceStatus::Dead as i32,
    }
}

/// The database's own sequence of changes for a namespace, as a watcher should see it.
async fn logged_changes(db: &TestDb, namespace: &str) -> Vec<Seen> {
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let rows: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT revision, instance_id::text, status FROM registry_change \
         WHERE namespace = $1 ORDER BY revision",
    )
    .bind(namespace)
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows.into_iter()
        .map(|(rev, id, status)| {
            let t = if status == "DEAD" {
                Type::Delete
            } else {
                Type::Put
            };
            (t, id, status_code(&status), rev)
        })
        .collect()
}

async fn start_replicas(db: &TestDb, count: usize, redis: Option<String>) -> Vec<TestServer> {
    let prefix = unique_prefix();
    let mut replicas = Vec::new();
    for _ in 0..count {
        let (redis, prefix) = (redis.clone(), prefix.clone());
        replicas.push(
            TestServer::start_with(db, move |a| {
                a.redis_url = redis;
                a.redis_prefix = prefix;
                a.watch_bookmark_interval = Duration::from_secs(1);
            })
            .await,
        );
    }
    replicas
}

/// Registers, drains and deregisters through `c`: a writer of its own.
async fn write_some(c: Clients, tag: usize) {
    let (mut registry, mut admin) = (c.registry, c.admin);
    for k in 0..12 {
        let i = registry
            .register(reg("multi", &format!("r{tag}-{k}")))
            .await
            .unwrap()
            .into_inner()
            .instance
            .unwrap();
        if k % 3 == 0 {
            let req = proto::DrainInstanceRequest {
                instance_id: i.instance_id.clone(),
                reason: "test".into(),
            };
            admin.drain_instance(req).await.unwrap();
        }
        if k % 4 == 0 {
            let req = proto::DeregisterRequest {
                instance_id: i.instance_id,
                reason: "test".into(),
            };
            registry.deregister(req).await.unwrap();
        }
    }
}

/// (id, status, revision) of every instance Discover returns for `v`, sorted.
async fn answer(c: &mut Clients, v: DiscoverView) -> Vec<(String, i32, i64)> {
    let mut req = view("multi", v);
    let mut out = Vec::new();
    loop {
        let page = c
            .discovery
            .discover(req.clone())
            .await
            .unwrap()
            .into_inner();
        out.extend(
            page.instances
                .into_iter()
                .map(|i| (i.instance_id, i.status, i.revision)),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        req.page_token = page.next_page_token;
    }
    out.sort();
    out
}

async fn replicas_agree(redis: Option<String>) {
    let with_redis = redis.is_some();
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let mut replicas = start_replicas(&db, 3, redis).await;
    if with_redis {
        // Every replica subscribed before the writes, or it would only ever poll them.
        both_report(&replicas, ServingStatus::Serving).await;
    }
    let mut watchers = Vec::new();
    for s in &mut replicas {
        let mut w = open(s, watch_req("multi", 0)).await;
        assert_eq!(
            next(&mut w).await.bookmark_revision,
            0,
            "an empty snapshot first"
        );
        watchers.push(w);
    }

    // A writer on every replica at once, then an epoch advance and one more round.
    let mut writers = JoinSet::new();
    for (n, s) in replicas.iter().enumerate() {
        writers.spawn(write_some(Clients::of(s), n));
    }
    while let Some(r) = writers.join_next().await {
        r.unwrap();
    }
    let req = proto::AdvanceEpochRequest {
        namespace: "multi".into(),
    };
    replicas[1].admin.advance_epoch(req).await.unwrap();
    for (n, s) in replicas.iter_mut().enumerate() {
        s.register(reg("multi", &format!("after-{n}"))).await;
    }

    let expected = logged_changes(&db, "multi").await;
    assert!(expected.len() > 3 * 12, "every write is in the log");
    let last = expected.last().unwrap().3;
    for (n, w) in watchers.iter_mut().enumerate() {
        let got = tokio::time::timeout(Duration::from_secs(20), events(w, expected.len())).await;
        let got = got.unwrap_or_else(|_| panic!("replica {n}: expected {expected:?}"));
        assert_eq!(
            got, expected,
            "replica {n}: exactly the database's changes, in order"
        );
        // Nothing more: the next bookmark reaches the end with no event before it.
        loop {
            let m = next(w).await;
            assert!(
                m.events.is_empty(),
                "replica {n}: a duplicate or extra event"
            );
            if m.bookmark_revision >= last {
                break;
            }
        }
    }

    if with_redis {
        for (n, s) in replicas.iter().enumerate() {
            let rung = s.node.readings().change_notifications;
            assert!(
                rung > 0,
                "replica {n} heard the other replicas' notifications"
            );
        }
    }

    // Discover converges to one answer, the same as the database's views.
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let live: Vec<(String,)> = sqlx::query_as(
        "SELECT instance_id::text FROM active_instances WHERE namespace = 'multi' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let live: Vec<String> = live.into_iter().map(|r| r.0).collect();
    pool.close().await;
    let reference = answer(&mut Clients::of(&replicas[0]), DiscoverView::All).await;
    for s in &replicas {
        let c = Clients::of(s);
        let (reference, live) = (&reference, &live);
        eventually("Discover agrees on every replica", || {
            let mut c = c.clone();
            async move {
                let all = answer(&mut c, DiscoverView::All).await;
                let ids: Vec<String> = answer(&mut c, DiscoverView::Live)
                    .await
                    .into_iter()
                    .map(|r| r.0)
                    .collect();
                all == *reference && ids == *live
            }
        })
        .await;
    }
    for s in replicas {
        s.stop().await;
    }
}

/// The clients of one replica, cloneable into tasks.
#[derive(Clone)]
pub struct Clients {
    pub registry: proto::registry_service_client::RegistryServiceClient<Channel>,
    pub admin: proto::admin_service_client::AdminServiceClient<Channel>,
    pub discovery: proto::discovery_service_client::DiscoveryServiceClient<Channel>,
}

impl Clients {
    pub fn of(s: &TestServer) -> Self {
        Self {
            registry: s.registry.clone(),
            admin: s.admin.clone(),
            discovery: s.discovery.clone(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_agree_by_polling() {
    replicas_agree(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_agree_with_redis() {
    let Some(url) = shared_url() else { return };
    replicas_agree(Some(url)).await;
}

pub async fn redis_health(channel: &Channel) -> i32 {
    let req = HealthCheckRequest {
        service: REDIS_HEALTH.into(),
    };
    match HealthClient::new(channel.clone()).check(req).await {
        Ok(r) => r.into_inner().status,
        Err(_) => ServingStatus::Unknown as i32,
    }
}

async fn both_report(replicas: &[TestServer], want: ServingStatus) {
    for s in replicas {
        let ch = s.channel.clone();
        eventually(&format!("Redis health {want:?}"), || {
            let ch = ch.clone();
            async move { redis_health(&ch).await == want as i32 }
        })
        .await;
    }
}

/// Redis stopped mid-test: changes still reach the other replica (by polling) and health says
/// so; Redis back: health recovers and notifications ring again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_falls_back_to_polling_and_recovers() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let mut replicas = start_replicas(&db, 2, Some(redis.url())).await;
    both_report(&replicas, ServingStatus::Serving).await;
    let mut w = open(&mut replicas[1], watch_req("multi", 0)).await;
    assert_eq!(next(&mut w).await.bookmark_revision, 0);
    let rung = |s: &TestServer| s.node.readings().change_notifications;

    // Redis up: a write on replica 0 reaches replica 1's watcher, and replica 1 was rung.
    let before = rung(&replicas[1]);
    let a = replicas[0].register(reg("multi", "a")).await;
    assert_eq!(events(&mut w, 1).await[0].1, a.instance_id);
    let r1 = &replicas[1];
    eventually("replica 1 hears the bell", || async { rung(r1) > before }).await;

    // Redis gone: health says so on both replicas, and changes still arrive by polling.
    assert_eq!(
        sample(&scrape(&replicas[1]).await, "agent_registry_redis_up"),
        Some(1.0)
    );
    redis.stop();
    both_report(&replicas, ServingStatus::NotServing).await;
    assert_eq!(
        sample(&scrape(&replicas[1]).await, "agent_registry_redis_up"),
        Some(0.0)
    );
    let silent = rung(&replicas[1]);
    let b = replicas[0].register(reg("multi", "b")).await;
    assert_eq!(events(&mut w, 1).await[0].1, b.instance_id);
    assert_eq!(
        rung(&replicas[1]),
        silent,
        "nothing can ring while Redis is down"
    );
    // The other services keep serving meanwhile.
    let mut health = HealthClient::new(replicas[1].channel.clone());
    let overall = health.check(HealthCheckRequest::default()).await.unwrap();
    assert_eq!(overall.into_inner().status, ServingStatus::Serving as i32);

    // Redis back: health recovers and the bell rings again.
    redis.resume();
    both_report(&replicas, ServingStatus::Serving).await;
    let c = replicas[0].register(reg("multi", "c")).await;
    assert_eq!(events(&mut w, 1).await[0].1, c.instance_id);
    let r1 = &replicas[1];
    eventually("the bell rings again", || async { rung(r1) > silent }).await;
    drop(w);
    for s in replicas {
        s.stop().await;
    }
}

/// A watcher whose replica goes away resumes on a replica started afterwards (its history
/// begins after the revision asked, so the replay comes from the change log) and sees exactly
/// the changes it had not seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumes_on_a_replica_started_later() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let mut first = TestServer::start(&db).await;
    let mut w = open(&mut first, watch_req("multi", 0)).await;
    assert_eq!(next(&mut w).await.bookmark_revision, 0);
    let a = first.register(reg("multi", "a")).await;
    let seen = events(&mut w, 1).await;
    let resume_from = seen[0].3;
    assert_eq!(resume_from, a.revision);
    // Changes the watcher never receives: its replica stops.
    let b = first.register(reg("multi", "b")).await;
    let req = proto::DrainInstanceRequest {
        instance_id: a.instance_id.clone(),
        reason: "test".into(),
    };
    first.admin.drain_instance(req).await.unwrap();
    drop(w);
    first.stop().await;

    let mut second = TestServer::start(&db).await;
    let mut w = open(&mut second, watch_req("multi", resume_from)).await;
    let rest = events(&mut w, 2).await;
    assert_eq!(
        rest,
        logged_changes(&db, "multi").await[1..].to_vec(),
        "exactly the changes after the resume point"
    );
    assert_eq!(rest[0].1, b.instance_id);
    second.stop().await;
}
