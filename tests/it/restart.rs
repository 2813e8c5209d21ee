//! A server stopped and started on the same database returns every acknowledged instance.

use agent_registry::proto::{self, DiscoverView};

use crate::on_both_backends;
use crate::support::{Backend, TestDb, TestServer, reg, view};

async fn snapshot(s: &mut TestServer) -> (Vec<proto::Instance>, Vec<proto::Namespace>) {
    let mut instances = Vec::new();
    for ns in ["a", "b"] {
        instances.extend(s.discover_all(view(ns, DiscoverView::All)).await);
    }
    let namespaces = s
        .admin
        .list_namespaces(proto::ListNamespacesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .namespaces;
    (instances, namespaces)
}

async fn every_acknowledged_instance_survives_a_restart(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut s = TestServer::start(&db).await;
    let mut acked = Vec::new();
    for n in 0..30 {
        let ns = if n % 2 == 0 { "a" } else { "b" };
        let req = proto::RegisterRequest {
            ready: n % 5 != 0,
            capabilities: vec![format!("cap-{}", n % 3)],
            labels: [("n".to_string(), n.to_string())].into(),
            endpoint: format!("10.0.0.{n}:8080"),
            pid: 1000 + n,
            ..reg(ns, &format!("lid-{}", n % 4))
        };
        acked.push(s.register(req).await);
    }
    let id = |k: usize| acked[k].instance_id.clone();
    s.admin
        .drain_instance(proto::DrainInstanceRequest {
            instance_id: id(1),
            reason: String::new(),
        })
        .await
        .unwrap();
    s.admin
        .evict_instance(proto::EvictInstanceRequest {
            instance_id: id(2),
            reason: String::new(),
        })
        .await
        .unwrap();
    s.registry
        .deregister(proto::DeregisterRequest {
            instance_id: id(3),
            reason: String::new(),
        })
        .await
        .unwrap();
    s.admin
        .advance_epoch(proto::AdvanceEpochRequest {
            namespace: "b".into(),
        })
        .await
        .unwrap();
    let before = snapshot(&mut s).await;
    assert_eq!(before.0.len(), 30);
    s.stop().await;

    let mut s = TestServer::start(&db).await;
    let after = snapshot(&mut s).await;
    assert_eq!(
        after, before,
        "every instance with its state, and every namespace epoch"
    );
    // And the revision sequence continues where it left off.
    let max = before.0.iter().map(|i| i.revision).max().unwrap();
    assert!(s.register(reg("a", "new")).await.revision > max);
    s.stop().await;
}

on_both_backends!(every_acknowledged_instance_survives_a_restart);
