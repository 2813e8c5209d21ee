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

/// A rollback: a store a newer build has migrated (a migration this build does not know) still
/// opens and serves — migrations stay additive, so an older replica can run beside a newer one.
async fn a_store_migrated_by_a_newer_build_still_opens(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut s = TestServer::start(&db).await;
    s.register(reg("a", "before")).await;
    s.stop().await;
    let newer = "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                 VALUES (99991231000001, 'from a newer build', true, X'00', 0)";
    let newer = match backend {
        Backend::Sqlite => newer.to_string(),
        Backend::Postgres => newer.replace("X'00'", "'\\x00'::bytea"),
    };
    if backend == Backend::Sqlite {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        sqlx::query(&newer).execute(&pool).await.unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        sqlx::query(&newer).execute(&pool).await.unwrap();
        pool.close().await;
    }
    let mut again = TestServer::start(&db).await;
    let all = again.discover_all(view("a", DiscoverView::All)).await;
    assert_eq!(all.len(), 1);
    again.register(reg("a", "after")).await;
    again.stop().await;
}

on_both_backends!(
    every_acknowledged_instance_survives_a_restart,
    a_store_migrated_by_a_newer_build_still_opens,
);
