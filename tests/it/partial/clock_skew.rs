//! Replicas whose clocks disagree by more than a lease, ahead and behind: two real processes on
//! one Postgres, one of them with its wall clock shifted by libfaketime (Debian's `faketime`).
//! Agents beat through both; none is ever expired, and Discover's LIVE view on each replica
//! agrees with the `active_instances` view at every sample — the time that decides expiry and
//! liveness is the database's.

use std::collections::HashSet;
use std::time::Duration;

use agent_registry::proto::{self, DiscoverView, discovery_service_client::DiscoveryServiceClient};
use agent_registry_client::Client;
use agent_registry_client::backoff::Backoff;
use agent_registry_client::keeper::Keeper;
use tokio::process::Command;
use tokio::time::Instant;
use tonic::transport::Channel;

use super::{assert_nobody_died, lease};
use crate::support::binary::{BIN, spawn_binary_at, spawn_command};
use crate::support::{Backend, TestDb, connect, in_ci, reg, view};

/// Longer than the lease: enough to expire every agent if one replica's clock decided.
const SKEW: &str = "10s";
/// Long enough against the intervals (1 s beats, flushes, sweeps) that another replica's view
/// of a beat, read from the store each sweep, is always inside it.
const LEASE: i64 = 6;
const THROUGH_SKEWED: usize = 2;
const THROUGH_OTHER: usize = 6;
/// Over two leases: the old code expired every agent of the other replica within one.
const RUN: Duration = Duration::from_secs(15);
/// Far beyond one change-feed poll (1 s): how long the replicas may take to both list everyone.
const CONVERGE: Duration = Duration::from_secs(10);

fn libfaketime() -> Option<&'static str> {
    [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/faketime/libfaketimeMT.so.1",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
}

async fn live_ids(channel: &Channel) -> HashSet<String> {
    let mut d = DiscoveryServiceClient::new(channel.clone());
    let mut req = view("skew", DiscoverView::Live);
    req.page_size = 1000;
    let page = d.discover(req).await.expect("discover").into_inner();
    page.instances.into_iter().map(|i| i.instance_id).collect()
}

async fn no_false_expiry_with_a_replica_clock_off_by(offset: &str) {
    let Some(lib) = libfaketime() else {
        assert!(
            !in_ci(),
            "CI=true but libfaketime is not installed (apt-get install faketime)"
        );
        eprintln!("skipped: clock-skew test (libfaketime not found; apt-get install faketime)");
        return;
    };
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let mut skewed = Command::new(BIN);
    skewed
        .env("LD_PRELOAD", lib)
        .env("FAKETIME", offset)
        // The wall clock only: tokio's timers keep the real monotonic clock.
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    let (_a, addr_a) = spawn_command(skewed, &db.url, "127.0.0.1:0", &[]).await;
    let (_b, addr_b) = spawn_binary_at(&db.url, &[]).await;
    let (a, b) = (connect(&addr_a).await, connect(&addr_b).await);

    let mut watch = DiscoveryServiceClient::new(b.clone())
        .watch(crate::watch::watch_req("skew", 0))
        .await
        .unwrap()
        .into_inner();
    let backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(500));
    let mut keepers = Vec::new();
    for n in 0..THROUGH_SKEWED + THROUGH_OTHER {
        let addr = if n < THROUGH_SKEWED { &addr_a } else { &addr_b };
        let client = Client::connect(&format!("http://{addr}")).unwrap();
        let req = proto::RegisterRequest {
            lease_ttl: lease(LEASE),
            ..reg("skew", &format!("agent-{n}"))
        };
        keepers.push(Keeper::spawn(client, req, backoff.clone()));
    }
    let mut ids = HashSet::new();
    for k in &keepers {
        let s = k
            .state()
            .wait_for(|s| s.connected && s.acks >= 1)
            .await
            .unwrap()
            .clone();
        ids.insert(s.instance.unwrap().instance_id);
    }

    // Each replica learns of the other's registrations through the store's log (polled: no
    // Redis here), so both first converge on every agent; from then on they must agree always.
    let converging = Instant::now();
    for ch in [&a, &b] {
        while live_ids(ch).await != ids {
            assert!(
                converging.elapsed() < CONVERGE,
                "the replicas did not both list every agent within {CONVERGE:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let started = Instant::now();
    let mut samples = 0;
    while started.elapsed() < RUN {
        for (name, ch) in [("skewed", &a), ("other", &b)] {
            let live = live_ids(ch).await;
            assert_eq!(
                live, ids,
                "Discover LIVE on the {name} replica ({offset}), sample {samples}"
            );
        }
        let in_view = db
            .query_i64("SELECT count(*) FROM active_instances WHERE namespace = 'skew'")
            .await;
        assert_eq!(
            in_view,
            ids.len() as i64,
            "active_instances, sample {samples}"
        );
        samples += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_nobody_died(&db, "skew", &mut watch).await;
    for k in &keepers {
        assert_eq!(k.state().borrow().registrations, 1);
    }
    println!(
        "clock {offset} on one replica, {LEASE}s leases: {} agents, {samples} samples of LIVE on \
         both replicas and of active_instances agree, none expired",
        ids.len()
    );
    for k in keepers {
        k.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_clock_ahead_by_more_than_a_lease_expires_no_one() {
    no_false_expiry_with_a_replica_clock_off_by(&format!("+{SKEW}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_clock_behind_by_more_than_a_lease_expires_no_one() {
    no_false_expiry_with_a_replica_clock_off_by(&format!("-{SKEW}")).await;
}
