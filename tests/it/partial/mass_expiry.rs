//! A mass expiry (just under the self-preservation guard) is a few set-based statements, one
//! bounded chunk per transaction, not one UPDATE per instance under the revision lock — and its
//! revisions stay gap-free, one per row. Under tokio's paused clock.

use std::time::Duration;

use agent_registry_core::domain::{DeathReason, Instance, InstanceStatus, RegisterInput};
use agent_registry_core::liveness::LivenessConfig;
use agent_registry_core::liveness::sweeper::EXPIRE_CHUNK;
use agent_registry_core::metrics::Source as _;

use crate::on_both_backends;
use crate::support::node::{Node, settle};
use crate::support::{Backend, TestDb};

const TOTAL: usize = 5_000;
/// 48 %: under the 50 % guard, so all of them go.
const SILENT: usize = 2_400;

async fn register_many(node: &Node, namespace: &str, count: usize) -> Vec<Instance> {
    let registry = node.registry.clone();
    let namespace = namespace.to_string();
    settle(async move {
        let calls = (0..count).map(|n| {
            let registry = registry.clone();
            let input = RegisterInput {
                namespace: namespace.clone(),
                logical_id: format!("agent-{n}"),
                ready: true,
                ..Default::default()
            };
            tokio::spawn(async move { registry.register(input).await.expect("register") })
        });
        let mut out = Vec::with_capacity(count);
        for call in calls.collect::<Vec<_>>() {
            out.push(call.await.unwrap());
        }
        out
    })
    .await
}

async fn a_mass_expiry_is_a_few_set_based_statements(backend: Backend) {
    let Some((db, node)) = Node::paused(backend, LivenessConfig::default()).await else {
        return;
    };
    let fleet = register_many(&node, "mass", TOTAL).await;
    let (silent, beating) = fleet.split_at(SILENT);
    let agents: Vec<_> = beating
        .iter()
        .map(|i| node.agent(i, Duration::from_secs(5)))
        .collect();
    let counters = || node.registry.readings();
    let transactions = counters().expiry_transactions;
    node.eventually(
        "the silent instances expire",
        Duration::from_secs(60),
        || counters().expiries as usize >= SILENT,
    )
    .await;
    let used = counters().expiry_transactions - transactions;
    assert_eq!(counters().expiries as usize, SILENT);
    assert_eq!(counters().guard_trips, 0);
    // A chunk per transaction; the leases ran out within a few sweeps of each other.
    let chunks = SILENT.div_ceil(EXPIRE_CHUNK) as u64;
    assert!(
        used <= chunks + 4,
        "{used} expiry transactions for {SILENT} expiries (chunks of {EXPIRE_CHUNK})"
    );
    for i in silent.iter().step_by(97) {
        let now = node
            .registry
            .get_instance(&i.instance_id.to_string())
            .unwrap();
        assert_eq!(now.death_reason, Some(DeathReason::LeaseExpired));
    }
    assert!(node.all_alive(beating));

    // One revision per dead row, none shared, none skipped: every revision above the last
    // registration is one expiry, in the change log too.
    let last_registration = fleet.iter().map(|i| i.revision).max().unwrap();
    let url = db.url.clone();
    let counts = settle(async move {
        let q = |sql: String| {
            let url = url.clone();
            async move { TestDb::query_i64_at(&url, &sql).await }
        };
        (
            q(format!(
                "SELECT count(DISTINCT revision) FROM registry_instance \
                 WHERE status = 'DEAD' AND revision > {last_registration}"
            ))
            .await,
            q(format!(
                "SELECT max(revision) - {last_registration} FROM registry_instance"
            ))
            .await,
            q(format!(
                "SELECT count(*) FROM registry_change WHERE status = 'DEAD' \
                 AND revision > {last_registration}"
            ))
            .await,
        )
    })
    .await;
    assert_eq!(counts, (SILENT as i64, SILENT as i64, SILENT as i64));
    println!(
        "{backend:?}: {SILENT} of {TOTAL} instances expired in {used} transactions \
         (chunks of {EXPIRE_CHUNK}), revisions gap-free"
    );
    assert_eq!(
        node.status(&beating[0]),
        InstanceStatus::Alive,
        "the beating stay"
    );
    for a in agents {
        a.abort();
    }
    node.stop().await;
}

on_both_backends!(paused: a_mass_expiry_is_a_few_set_based_statements);
