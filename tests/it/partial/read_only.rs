//! A store that answers reads but refuses writes (a read-only database, as after a failover to
//! a standby; a full disk) is an outage for the agents: the replica stops vouching, expiry waits
//! for a write that succeeds, and the grace that follows keeps every agent that retried —
//! though reads answered all along.

use std::time::Duration;

use agent_registry::proto;
use agent_registry_client::Client;
use agent_registry_client::backoff::Backoff;
use agent_registry_client::keeper::Keeper;
use agent_registry_core::metrics::Source as _;

use super::{NOT_SERVING, SERVING, lease};
use crate::support::{Backend, TestDb, TestServer, eventually, health, reg};

const LEASE: i64 = 6;

/// Turns the test database read-only (or back) for every session, the pool's included.
async fn set_read_only(db: &TestDb, on: bool) {
    let name = db
        .url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap();
    let admin = db.url.replace(&format!("/{name}"), "/postgres");
    let pool = sqlx::PgPool::connect(&admin).await.unwrap();
    let set = match on {
        true => format!("ALTER DATABASE {name} SET default_transaction_read_only = on"),
        false => format!("ALTER DATABASE {name} RESET default_transaction_read_only"),
    };
    sqlx::query(&set).execute(&pool).await.unwrap();
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(name)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_refuses_writes_is_an_outage_and_no_agent_dies() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let s = TestServer::start_with(&db, |a| {
        a.store_timeout = Duration::from_secs(1);
        a.health_check_interval = Duration::from_millis(300);
    })
    .await;
    let backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(10));
    let mut keepers = Vec::new();
    for n in 0..4 {
        let req = proto::RegisterRequest {
            lease_ttl: lease(LEASE),
            ..reg("ro", &format!("agent-{n}"))
        };
        keepers.push(Keeper::spawn(
            Client::connect(&s.url).unwrap(),
            req,
            backoff.clone(),
        ));
    }
    for k in &keepers {
        k.state().wait_for(|s| s.acks >= 2).await.unwrap();
    }

    set_read_only(&db, true).await;
    let ch = &s.channel;
    eventually("readiness NOT_SERVING while writes fail", || async {
        health(ch, "").await == NOT_SERVING
    })
    .await;
    // Reads answer all along; writes do not. Two leases long.
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_secs(2 * LEASE as u64) {
        assert!(!s.node.readings().store_reachable, "writes still fail");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    set_read_only(&db, false).await;
    eventually("ready again", || async { health(ch, "").await == SERVING }).await;
    // The grace is granted on the sweeper's next round, which may follow readiness.
    eventually("grace after the outage", || async {
        s.node.readings().graces >= 1
    })
    .await;
    // Past a lease and the expiry slack after the recovery: any expiry would have happened.
    tokio::time::sleep(Duration::from_secs(LEASE as u64 + 4)).await;
    let dead = db
        .query_i64(
            "SELECT count(*) FROM registry_instance WHERE namespace = 'ro' AND status = 'DEAD'",
        )
        .await;
    assert_eq!(dead, 0, "no agent expired");
    for k in &keepers {
        let st = k.state().borrow().clone();
        assert_eq!(st.registrations, 1, "{st:?}");
        assert!(st.connected, "{st:?}");
    }
    for k in keepers {
        k.shutdown().await.unwrap();
    }
    s.stop().await;
}
