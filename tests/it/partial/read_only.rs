//! A store that answers reads but refuses writes (a read-only database, as after a failover to
//! a standby; a full disk) is an outage for the agents: the replica stops vouching, expiry waits
//! for a write that succeeds, and the grace that follows keeps every agent that retried —
//! though reads answered all along. On the paused clock: two leases of refused writes cost no
//! wall-clock time.

use std::sync::atomic::Ordering;
use std::time::Duration;

use agent_registry_core::domain::InstanceStatus;
use agent_registry_core::liveness::LivenessConfig;
use agent_registry_core::metrics::Source as _;
use agent_registry_core::registry::{StoreGuard, StreamStop};

use crate::support::node::{Node, settle};
use crate::support::{Backend, TestDb};

const LEASE: Duration = Duration::from_secs(6);

/// Turns the test database read-only (or back) for every session, the pool's included.
async fn set_read_only(url: String, on: bool) {
    settle(async move {
        let name = url.rsplit('/').next().unwrap().split('?').next().unwrap();
        let admin = url.replace(&format!("/{name}"), "/postgres");
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
    })
    .await
}

#[tokio::test]
async fn a_store_that_refuses_writes_is_an_outage_and_no_agent_dies() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let guard = StoreGuard {
        timeout: Duration::from_secs(1),
        ..StoreGuard::default()
    };
    let mut node = Node::start_guarded(&db.url, LivenessConfig::default(), guard).await;
    // Only a write shows writes work again: the probe writes while they fail.
    node.probe_store(Duration::from_secs(1));
    tokio::time::pause();
    let fleet = node.fleet_with_lease("ro", 4, LEASE).await;
    let (agents, beats): (Vec<_>, Vec<_>) = fleet
        .iter()
        .map(|i| node.resilient_agent(i, LEASE / 3))
        .unzip();
    let acked = |n: usize| beats.iter().all(|b| b.acked.load(Ordering::SeqCst) >= n);
    node.eventually("every agent acknowledged", LEASE, || acked(2))
        .await;

    set_read_only(db.url.clone(), true).await;
    node.eventually("writes refused: the store counts as away", LEASE, || {
        !node.registry.readings().store_reachable
    })
    .await;
    // Two leases of refused writes: the store stays away although reads answer, the replica
    // stops vouching (agents are refused and retry), and nothing expires.
    let mut waited = Duration::ZERO;
    while waited < LEASE * 2 {
        node.advance(Duration::from_millis(500)).await;
        waited += Duration::from_millis(500);
        let r = node.registry.readings();
        assert!(!r.store_reachable, "writes still fail at {waited:?}");
        assert_eq!(r.expiries, 0, "nothing expires while writes fail");
        // What readiness is judged on: NOT_SERVING while writes fail.
        let health = node.registry.health();
        assert!(!health.store_reachable, "{health:?}");
        if waited > LEASE {
            assert_eq!(health.streams_stopped, Some(StreamStop::CannotPersist));
        }
    }
    let r = node.registry.readings();
    assert!(r.vouching_lapses >= 1, "the replica stopped vouching");
    assert!(beats.iter().all(|b| b.refused.load(Ordering::SeqCst) > 0));

    set_read_only(db.url.clone(), false).await;
    node.eventually(
        "a write succeeds again, and the grace follows",
        LEASE * 2,
        || {
            let r = node.registry.readings();
            r.store_reachable && r.graces >= 1
        },
    )
    .await;
    node.eventually("ready again: vouching for beats", LEASE, || {
        node.registry.health().streams_stopped.is_none()
    })
    .await;
    assert!(node.registry.health().store_reachable);
    let before: Vec<usize> = beats
        .iter()
        .map(|b| b.acked.load(Ordering::SeqCst))
        .collect();
    // Past a lease and the expiry slack after the recovery: any expiry would have happened.
    node.advance(LEASE * 2 + Duration::from_secs(4)).await;
    assert_eq!(node.registry.readings().expiries, 0, "no agent expired");
    assert!(node.all_alive(&fleet));
    assert!(
        fleet
            .iter()
            .all(|i| node.status(i) == InstanceStatus::Alive)
    );
    assert!(
        beats
            .iter()
            .zip(&before)
            .all(|(b, n)| b.acked.load(Ordering::SeqCst) > *n),
        "every agent is acknowledged again, on its first registration"
    );
    for a in agents {
        assert!(!a.is_finished(), "no agent was told to register again");
        a.abort();
    }
    node.stop().await;
}
