//! Batched writes at the store: group commit (a batch of registrations is one transaction, and
//! a refused one leaves no trace while its neighbours land) and the heartbeat flush.

use agent_registry_core::domain::card::DEFAULT_MAX_CARD_BYTES;
use agent_registry_core::domain::{LeaseBounds, RegisterInput, RuleError, validate_register};
use agent_registry_core::storage::{self, StoreOptions};

use crate::on_both_backends;
use crate::support::{Backend, TestDb};

fn new(
    namespace: &str,
    logical_id: &str,
    instance_id: &str,
    expected_epoch: &str,
) -> agent_registry_core::domain::NewInstance {
    let input = RegisterInput {
        namespace: namespace.into(),
        logical_id: logical_id.into(),
        instance_id: instance_id.into(),
        expected_epoch: expected_epoch.into(),
        ready: true,
        ..Default::default()
    };
    validate_register(input, &LeaseBounds::default(), DEFAULT_MAX_CARD_BYTES).unwrap()
}

async fn a_batch_commits_together_and_refuses_one_without_the_others(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = storage::open(&db.url, &StoreOptions::default())
        .await
        .unwrap();
    let chosen = uuid::Uuid::now_v7().to_string();
    let mut described = new("fresh", "c", "", "");
    described.template.capabilities = vec!["zeta".into(), "alpha".into(), "mu".into()];
    described.template.labels = [("zone".to_string(), "eu-1".to_string())].into();
    let stale = uuid::Uuid::now_v7().to_string();
    let batch = vec![
        new("fresh", "a", &chosen, ""), // creates the namespace, then the instance
        new("other", "b", "", &stale),  // refused: nothing of it may be written
        described,                      // sees the namespace created above
        new("fresh", "a", &chosen, ""), // a retry of the first, in the same batch
    ];
    let done = store.register_batch(batch).await.unwrap();
    assert_eq!(done.results.len(), 4);
    let first = done.results[0].as_ref().unwrap();
    assert!(matches!(done.results[1], Err(RuleError::StaleEpoch { .. })));
    let third = done.results[2].as_ref().unwrap();
    let retry = done.results[3].as_ref().unwrap();
    assert!(!first.retried && retry.retried);
    assert_eq!(retry.instance.instance_id, first.instance.instance_id);
    assert_eq!(
        third.instance.epoch, first.instance.epoch,
        "one namespace, one epoch"
    );
    // Revisions: the namespace, then the two new instances; contiguous, nothing for the refusal.
    assert_eq!((done.changes.first, done.changes.last), (1, 3));
    assert_eq!(done.changes.namespaces.len(), 1);
    assert_eq!(done.changes.instances.len(), 2);
    let stored = store.snapshot().await.unwrap();
    assert_eq!(stored.last, 3);
    assert!(
        stored.namespaces.iter().all(|n| n.name == "fresh"),
        "the refused namespace was not created"
    );
    assert_eq!(stored.instances.len(), 2);
    let c = stored
        .instances
        .iter()
        .find(|i| i.logical_id == "c")
        .unwrap();
    assert_eq!(
        c.capabilities,
        ["zeta", "alpha", "mu"],
        "order kept through the bulk insert"
    );
    assert_eq!(c, &third.instance, "stored exactly as acknowledged");
    store.close().await;
}

on_both_backends!(a_batch_commits_together_and_refuses_one_without_the_others);

/// A flush that has to wait for a row another transaction is changing still writes that row's
/// beat once the other commits. (Updating the locked rows by their physical address would
/// miss it: the row comes back from the lock in a version the statement cannot see.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_that_waits_for_a_row_lock_still_writes_the_beat() {
    use sqlx::Connection;
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let store = storage::open(&db.url, &StoreOptions::default())
        .await
        .unwrap();
    let done = store
        .register_batch(vec![new("flush", "a", "", "")])
        .await
        .unwrap();
    let registered = done.results[0].as_ref().unwrap().instance.clone();
    let id = registered.instance_id;

    // Another writer changes the row and holds its lock.
    let mut other = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut other).await.unwrap();
    sqlx::query("UPDATE registry_instance SET node_id = 'moved' WHERE instance_id = $1")
        .bind(id)
        .execute(&mut other)
        .await
        .unwrap();

    // A beat now: newer than the registration's stored one.
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    let beat = tokio::time::Instant::now();
    let flush = {
        let store = store.clone();
        tokio::spawn(async move { store.flush_heartbeats(&[(id, beat)]).await })
    };
    // Commit only once the flush is waiting for the lock.
    let waiting = "SELECT count(*) FROM pg_stat_activity \
                   WHERE wait_event_type = 'Lock' AND datname = current_database()";
    crate::support::eventually("the flush waits for the row lock", || async {
        db.query_i64(waiting).await == 1
    })
    .await;
    sqlx::query("COMMIT").execute(&mut other).await.unwrap();

    let flushed = flush.await.unwrap().unwrap();
    assert_eq!(flushed.rows, 1, "the waiting row was flushed");
    let stored = store.snapshot().await.unwrap();
    let row = stored
        .instances
        .iter()
        .find(|i| i.instance_id == id)
        .unwrap();
    assert_eq!(row.last_heartbeat, flushed.stored(beat));
    assert!(row.last_heartbeat > registered.last_heartbeat);
    assert_eq!(row.node_id, "moved", "the other writer's change stands");
    store.close().await;
}
