//! The public SQL views answer exactly what Discover answers.

use agent_registry::proto::{self, DiscoverView};

use crate::on_both_backends;
use crate::support::{Backend, TestDb, TestServer, reg, view};

async fn sql_views_match_discover(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut s = TestServer::start(&db).await;
    let mut kill = Vec::new();
    for ns in ["blue", "green"] {
        for lid in ["api", "worker", "vision/agent-7"] {
            for n in 0..3 {
                let ready = n != 1 || lid != "worker";
                let i = s
                    .register(proto::RegisterRequest {
                        ready,
                        ..reg(ns, lid)
                    })
                    .await;
                if n == 0 && lid == "api" {
                    kill.push(i.instance_id);
                }
            }
        }
    }
    let drain = proto::DrainInstanceRequest {
        instance_id: kill[0].clone(),
        reason: String::new(),
    };
    s.admin.drain_instance(drain).await.unwrap();
    let evict = proto::EvictInstanceRequest {
        instance_id: kill[1].clone(),
        reason: String::new(),
    };
    s.admin.evict_instance(evict).await.unwrap();
    s.admin
        .advance_epoch(proto::AdvanceEpochRequest {
            namespace: "green".into(),
        })
        .await
        .unwrap();
    for _ in 0..2 {
        s.register(reg("green", "api")).await;
    }

    for (sql, v) in [
        (
            "SELECT instance_id, revision FROM active_instance",
            DiscoverView::Active,
        ),
        (
            "SELECT instance_id, revision FROM active_instances",
            DiscoverView::Live,
        ),
    ] {
        let mut from_sql = db.query_ids(sql).await;
        let mut from_api = Vec::new();
        for ns in ["blue", "green"] {
            for i in s.discover_all(view(ns, v)).await {
                from_api.push((i.instance_id, i.revision));
            }
        }
        from_sql.sort();
        from_api.sort();
        assert!(!from_api.is_empty());
        assert_eq!(from_sql, from_api, "{sql}");
    }
    s.stop().await;
}

on_both_backends!(sql_views_match_discover);
