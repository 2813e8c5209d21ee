//! Register, idempotent retry, epochs and fencing, drain / deregister / evict.

use agent_registry::proto::{self, DeathReason, DiscoverView, InstanceStatus};
use tonic::Code;

use crate::on_both_backends;
use crate::support::{Backend, TestDb, TestServer, ids, lease, reg, view};

async fn namespace(s: &mut TestServer, name: &str) -> proto::Namespace {
    let req = proto::GetNamespaceRequest { name: name.into() };
    s.admin
        .get_namespace(req)
        .await
        .unwrap()
        .into_inner()
        .namespace
        .unwrap()
}

async fn register_assigns_id_epoch_status_lease_and_revision(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut s = TestServer::start(&db).await;
    let starting = s
        .register(proto::RegisterRequest {
            ready: false,
            ..reg("", "planner")
        })
        .await;
    let id = uuid::Uuid::parse_str(&starting.instance_id).unwrap();
    assert_eq!(id.get_version_num(), 7, "server-assigned ids are UUIDv7");
    assert_eq!(starting.instance_id, id.to_string(), "canonical lowercase");
    assert_eq!(starting.namespace, "default");
    assert_eq!(starting.status, InstanceStatus::Starting as i32);
    assert_eq!(
        starting.epoch,
        namespace(&mut s, "default").await.current_epoch
    );

    let ready = s.register(reg("", "planner")).await;
    assert_eq!(ready.status, InstanceStatus::Alive as i32);
    assert!(ready.revision > starting.revision);

    for (asked, granted) in [
        (None, 15),
        (lease(1), 2),
        (lease(30), 30),
        (lease(7200), 3600),
    ] {
        let resp = s
            .registry
            .register(proto::RegisterRequest {
                lease_ttl: asked,
                ..reg("", "leases")
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(resp.instance.unwrap().lease_ttl, lease(granted));
        let interval = resp.heartbeat_interval.unwrap();
        assert_eq!(
            interval.seconds * 1000 + i64::from(interval.nanos / 1_000_000),
            granted * 1000 / 3
        );
    }
    s.stop().await;
}

async fn retry_with_the_same_instance_id_returns_the_same_instance(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut s = TestServer::start(&db).await;
    let chosen = uuid::Uuid::now_v7().to_string();
    let req = proto::RegisterRequest {
        instance_id: chosen.clone(),
        ..reg("team", "worker")
    };
    let first = s.register(req.clone()).await;
    let again = s.register(req.clone()).await;
    assert_eq!(first.instance_id, chosen);
    assert_eq!(again.instance_id, chosen);
    assert_eq!(
        again.revision, first.revision,
        "a retry is not a state change"
    );
    assert_eq!(
        (again.started_at, again.epoch.clone()),
        (first.started_at, first.epoch.clone())
    );
    assert_eq!(
        s.discover_all(view("team", DiscoverView::All)).await.len(),
        1,
        "one row only"
    );

    // The id cannot be reused for another logical id.
    let other = proto::RegisterRequest {
        instance_id: chosen.clone(),
        ..reg("team", "other")
    };
    let err = s.registry.register(other).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());

    // Nor after it died.
    let dereg = proto::DeregisterRequest {
        instance_id: chosen.clone(),
        reason: "done".into(),
    };
    s.registry.deregister(dereg).await.unwrap();
    let err = s.registry.register(req).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    assert!(err.message().contains("DEAD"), "{}", err.message());
    s.stop().await;
}

async fn a_stale_expected_epoch_is_refused_and_writes_nothing(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut s = TestServer::start(&db).await;
    let first = s.register(reg("gen", "a")).await;
    let before = s.discover_all(view("gen", DiscoverView::All)).await;
    let stale = proto::RegisterRequest {
        expected_epoch: uuid::Uuid::now_v7().to_string(),
        ..reg("gen", "b")
    };
    let err = s.registry.register(stale).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("expected_epoch"),
        "{}",
        err.message()
    );
    assert_eq!(s.discover_all(view("gen", DiscoverView::All)).await, before);

    let current = proto::RegisterRequest {
        expected_epoch: first.epoch.clone(),
        ..reg("gen", "b")
    };
    assert_eq!(s.register(current).await.epoch, first.epoch);
    s.stop().await;
}

async fn advance_epoch_fences_every_older_instance_at_once(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut s = TestServer::start(&db).await;
    let a = s.register(reg("fleet", "a")).await;
    let b = s
        .register(proto::RegisterRequest {
            ready: false,
            ..reg("fleet", "b")
        })
        .await;
    let gone = s.register(reg("fleet", "c")).await;
    let bystander = s.register(reg("elsewhere", "a")).await;
    let dereg = proto::DeregisterRequest {
        instance_id: gone.instance_id.clone(),
        reason: String::new(),
    };
    s.registry.deregister(dereg).await.unwrap();
    let old_epoch = namespace(&mut s, "fleet").await.current_epoch;

    let req = proto::AdvanceEpochRequest {
        namespace: "fleet".into(),
    };
    let resp = s.admin.advance_epoch(req).await.unwrap().into_inner();
    let ns = resp.namespace.unwrap();
    assert_eq!(resp.fenced_instances, 2, "a and b; c was already dead");
    assert_ne!(ns.current_epoch, old_epoch);
    assert_eq!((ns.dead_count, ns.live_count), (3, 0));

    let mut revisions = vec![ns.revision];
    for id in [&a.instance_id, &b.instance_id] {
        let req = proto::GetInstanceRequest {
            instance_id: id.clone(),
        };
        let i = s
            .discovery
            .get_instance(req)
            .await
            .unwrap()
            .into_inner()
            .instance
            .unwrap();
        assert_eq!(i.status, InstanceStatus::Dead as i32);
        assert_eq!(i.death_reason, DeathReason::EpochSuperseded as i32);
        assert!(i.stopped_at.is_some());
        revisions.push(i.revision);
    }
    revisions.sort();
    revisions.dedup();
    assert_eq!(
        revisions.len(),
        3,
        "the advance and each fencing have their own revision"
    );

    // The old generation cannot come back; new registrations land in the new epoch.
    let retry = proto::RegisterRequest {
        instance_id: a.instance_id.clone(),
        ..reg("fleet", "a")
    };
    assert_eq!(
        s.registry.register(retry).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    let old = proto::RegisterRequest {
        expected_epoch: old_epoch,
        ..reg("fleet", "a")
    };
    assert_eq!(
        s.registry.register(old).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    assert_eq!(s.register(reg("fleet", "a")).await.epoch, ns.current_epoch);

    let other = proto::GetInstanceRequest {
        instance_id: bystander.instance_id.clone(),
    };
    let other = s
        .discovery
        .get_instance(other)
        .await
        .unwrap()
        .into_inner()
        .instance
        .unwrap();
    assert_eq!(other, bystander, "another namespace is untouched");
    s.stop().await;
}

async fn drain_deregister_and_evict_follow_the_state_machine(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut s = TestServer::start(&db).await;
    let drained = s.register(reg("ops", "svc")).await;
    let left = s.register(reg("ops", "svc")).await;
    let evicted = s.register(reg("ops", "svc")).await;

    let req = proto::DrainInstanceRequest {
        instance_id: drained.instance_id.clone(),
        reason: "maintenance".into(),
    };
    let d = s
        .admin
        .drain_instance(req.clone())
        .await
        .unwrap()
        .into_inner()
        .instance
        .unwrap();
    assert_eq!(d.status, InstanceStatus::Draining as i32);
    assert!(d.revision > evicted.revision);
    let again = s
        .admin
        .drain_instance(req)
        .await
        .unwrap()
        .into_inner()
        .instance
        .unwrap();
    assert_eq!(again.revision, d.revision, "draining twice changes nothing");

    let req = proto::DeregisterRequest {
        instance_id: left.instance_id.clone(),
        reason: "bye".into(),
    };
    let l = s
        .registry
        .deregister(req.clone())
        .await
        .unwrap()
        .into_inner()
        .instance
        .unwrap();
    assert_eq!(
        (l.status, l.death_reason),
        (
            InstanceStatus::Dead as i32,
            DeathReason::Deregistered as i32
        )
    );
    assert!(l.stopped_at.is_some());
    let l2 = s
        .registry
        .deregister(req)
        .await
        .unwrap()
        .into_inner()
        .instance
        .unwrap();
    assert_eq!(l2, l, "deregistering twice is idempotent");

    let req = proto::EvictInstanceRequest {
        instance_id: evicted.instance_id.clone(),
        reason: "bad".into(),
    };
    let e = s
        .admin
        .evict_instance(req)
        .await
        .unwrap()
        .into_inner()
        .instance
        .unwrap();
    assert_eq!(
        (e.status, e.death_reason),
        (InstanceStatus::Dead as i32, DeathReason::Evicted as i32)
    );

    // Dead is final.
    let req = proto::DrainInstanceRequest {
        instance_id: e.instance_id.clone(),
        reason: String::new(),
    };
    assert_eq!(
        s.admin.drain_instance(req).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    let req = proto::EvictInstanceRequest {
        instance_id: l.instance_id.clone(),
        reason: String::new(),
    };
    assert_eq!(
        s.admin.evict_instance(req).await.unwrap_err().code(),
        Code::FailedPrecondition
    );

    // Drained and dead instances leave ACTIVE and LIVE; ALL keeps all three.
    assert!(
        s.discover_all(view("ops", DiscoverView::Active))
            .await
            .is_empty()
    );
    assert!(
        s.discover_all(view("ops", DiscoverView::Live))
            .await
            .is_empty()
    );
    let all = s.discover_all(view("ops", DiscoverView::All)).await;
    assert_eq!(ids(&all), ids(&[drained, left, evicted]));
    let ns = namespace(&mut s, "ops").await;
    assert_eq!(
        (
            ns.alive_count,
            ns.draining_count,
            ns.dead_count,
            ns.live_count
        ),
        (0, 1, 2, 0)
    );
    s.stop().await;
}

on_both_backends!(
    register_assigns_id_epoch_status_lease_and_revision,
    retry_with_the_same_instance_id_returns_the_same_instance,
    a_stale_expected_epoch_is_refused_and_writes_nothing,
    advance_epoch_fences_every_older_instance_at_once,
    drain_deregister_and_evict_follow_the_state_machine,
);
