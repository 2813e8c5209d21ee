//! Group commit: a batch of registrations is one transaction, and a refused one leaves no
//! trace while its neighbours land.

use agent_registry::domain::{Limits, RegisterInput, RuleError, validate_register};
use agent_registry::storage::{self, StoreOptions};

use crate::on_both_backends;
use crate::support::{Backend, TestDb};

fn new(
    namespace: &str,
    logical_id: &str,
    instance_id: &str,
    expected_epoch: &str,
) -> agent_registry::domain::NewInstance {
    let input = RegisterInput {
        namespace: namespace.into(),
        logical_id: logical_id.into(),
        instance_id: instance_id.into(),
        expected_epoch: expected_epoch.into(),
        ready: true,
        ..Default::default()
    };
    validate_register(input, &Limits::default()).unwrap()
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
