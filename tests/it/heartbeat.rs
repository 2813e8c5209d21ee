//! The Heartbeat stream over gRPC: acks, status changes, directives, superseding.

use agent_registry::proto::{self, DeathReason, Directive, InstanceStatus};
use tonic::Code;

use crate::on_both_backends;
use crate::support::{Backend, TestDb, TestServer, lease, reg};

fn beat(id: &str, sequence: u64, status: InstanceStatus) -> proto::HeartbeatRequest {
    proto::HeartbeatRequest {
        instance_id: id.into(),
        sequence,
        status: status as i32,
    }
}

async fn every_beat_is_acknowledged_with_its_sequence(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut s = TestServer::start(&db).await;
    let lease_ttl = lease(30);
    let i = s
        .register(proto::RegisterRequest {
            lease_ttl,
            ..reg("hb", "a")
        })
        .await;
    let (tx, mut replies) = s.open_stream().await;
    let at = |t: prost_types::Timestamp| (t.seconds, t.nanos);
    let registered = at(i.last_heartbeat.unwrap());
    let mut last_expiry = (registered.0 + 30, registered.1);
    for seq in [1, 2, 3, 7, 42] {
        tx.send(beat(&i.instance_id, seq, InstanceStatus::Unspecified))
            .await
            .unwrap();
        let ack = replies.message().await.unwrap().expect("an ack per beat");
        assert_eq!(ack.sequence, seq);
        assert_eq!(ack.directive, Directive::None as i32);
        assert_eq!(
            ack.heartbeat_interval,
            Some(prost_types::Duration {
                seconds: 10,
                nanos: 0
            })
        );
        let expiry = at(ack.lease_expires_at.unwrap());
        assert!(
            expiry >= last_expiry,
            "each beat renews the 30 s lease from now"
        );
        last_expiry = expiry;
    }
    // The id may be spelled in upper case; it is the same instance.
    tx.send(beat(
        &i.instance_id.to_uppercase(),
        43,
        InstanceStatus::Unspecified,
    ))
    .await
    .unwrap();
    assert_eq!(replies.message().await.unwrap().unwrap().sequence, 43);
    // Renewals are not state changes.
    assert_eq!(s.instance(&i.instance_id).await.revision, i.revision);
    s.stop().await;
}

async fn status_changes_are_persisted_before_their_ack(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut s = TestServer::start(&db).await;
    let i = s
        .register(proto::RegisterRequest {
            ready: false,
            ..reg("hb", "a")
        })
        .await;
    let (tx, mut replies) = s.open_stream().await;
    let id = i.instance_id.clone();
    let mut revision = i.revision;
    for (seq, status) in [
        (1, InstanceStatus::Alive),
        (2, InstanceStatus::Draining),
        (3, InstanceStatus::Draining),
        (4, InstanceStatus::Alive),
    ] {
        tx.send(beat(&id, seq, status)).await.unwrap();
        let ack = replies.message().await.unwrap().unwrap();
        assert_eq!(
            (ack.sequence, ack.directive),
            (seq, Directive::None as i32),
            "no DRAIN echoed back"
        );
        // Acknowledged means committed: the store already has it.
        let sql = format!(
            "SELECT count(*) FROM registry_instance WHERE status = '{}' AND revision > {revision}",
            status.as_str_name().trim_start_matches("INSTANCE_STATUS_")
        );
        let stored = db.query_i64(&sql).await;
        let now = s.instance(&id).await;
        assert_eq!(now.status, status as i32, "beat {seq}");
        if seq == 3 {
            assert_eq!(now.revision, revision, "a repeated status is no change");
        } else {
            assert_eq!(stored, 1, "beat {seq} persisted before its ack");
            assert!(now.revision > revision);
        }
        revision = now.revision;
    }
    tx.send(beat(&id, 5, InstanceStatus::Starting))
        .await
        .unwrap();
    let err = replies.message().await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("status"), "{}", err.message());
    s.stop().await;
}

async fn operator_actions_reach_the_open_stream(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut s = TestServer::start(&db).await;
    let drained = s.register(reg("ops", "a")).await;
    let (tx, mut replies) = s.open_stream().await;
    tx.send(beat(&drained.instance_id, 1, InstanceStatus::Unspecified))
        .await
        .unwrap();
    replies.message().await.unwrap().unwrap();
    let req = proto::DrainInstanceRequest {
        instance_id: drained.instance_id.clone(),
        reason: "maintenance".into(),
    };
    s.admin.drain_instance(req).await.unwrap();
    let pushed = replies.message().await.unwrap().unwrap();
    assert_eq!(pushed.directive, Directive::Drain as i32);

    let req = proto::EvictInstanceRequest {
        instance_id: drained.instance_id.clone(),
        reason: "bad".into(),
    };
    s.admin.evict_instance(req).await.unwrap();
    let pushed = replies.message().await.unwrap().unwrap();
    assert_eq!(pushed.directive, Directive::Reregister as i32);
    assert!(pushed.reason.contains("EVICTED"), "{}", pushed.reason);
    assert!(
        replies.message().await.unwrap().is_none(),
        "the stream ends after REREGISTER"
    );

    // Fencing by epoch reaches streams too.
    let fenced = s.register(reg("ops", "b")).await;
    let (tx, mut replies) = s.open_stream().await;
    tx.send(beat(&fenced.instance_id, 1, InstanceStatus::Unspecified))
        .await
        .unwrap();
    replies.message().await.unwrap().unwrap();
    s.admin
        .advance_epoch(proto::AdvanceEpochRequest {
            namespace: "ops".into(),
        })
        .await
        .unwrap();
    let pushed = replies.message().await.unwrap().unwrap();
    assert_eq!(pushed.directive, Directive::Reregister as i32);
    assert!(
        pushed.reason.contains("EPOCH_SUPERSEDED"),
        "{}",
        pushed.reason
    );
    assert_eq!(
        s.instance(&fenced.instance_id).await.death_reason,
        DeathReason::EpochSuperseded as i32
    );

    // Deregister ends the stream quietly.
    let left = s.register(reg("ops", "c")).await;
    let (tx, mut replies) = s.open_stream().await;
    tx.send(beat(&left.instance_id, 1, InstanceStatus::Unspecified))
        .await
        .unwrap();
    replies.message().await.unwrap().unwrap();
    let req = proto::DeregisterRequest {
        instance_id: left.instance_id.clone(),
        reason: String::new(),
    };
    s.registry.deregister(req).await.unwrap();
    assert!(replies.message().await.unwrap().is_none());
    drop(tx);
    s.stop().await;
}

async fn unknown_or_dead_instances_are_told_to_reregister(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut s = TestServer::start(&db).await;
    let dead = s.register(reg("x", "a")).await;
    let req = proto::DeregisterRequest {
        instance_id: dead.instance_id.clone(),
        reason: String::new(),
    };
    s.registry.deregister(req).await.unwrap();
    for id in [uuid::Uuid::now_v7().to_string(), dead.instance_id] {
        let (tx, mut replies) = s.open_stream().await;
        tx.send(beat(&id, 1, InstanceStatus::Unspecified))
            .await
            .unwrap();
        let reply = replies.message().await.unwrap().unwrap();
        assert_eq!(reply.directive, Directive::Reregister as i32);
        assert!(replies.message().await.unwrap().is_none());
    }
    let (tx, mut replies) = s.open_stream().await;
    tx.send(beat("not-a-uuid", 1, InstanceStatus::Unspecified))
        .await
        .unwrap();
    assert_eq!(
        replies.message().await.unwrap_err().code(),
        Code::InvalidArgument
    );
    s.stop().await;
}

async fn a_second_stream_supersedes_the_first(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut s = TestServer::start(&db).await;
    let i = s.register(reg("x", "a")).await;
    let (old_tx, mut old) = s.open_stream().await;
    old_tx
        .send(beat(&i.instance_id, 1, InstanceStatus::Unspecified))
        .await
        .unwrap();
    old.message().await.unwrap().unwrap();
    let (tx, mut new) = s.open_stream().await;
    tx.send(beat(&i.instance_id, 1, InstanceStatus::Unspecified))
        .await
        .unwrap();
    assert_eq!(new.message().await.unwrap().unwrap().sequence, 1);
    let err = old.message().await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    tx.send(beat(&i.instance_id, 2, InstanceStatus::Unspecified))
        .await
        .unwrap();
    assert_eq!(
        new.message().await.unwrap().unwrap().sequence,
        2,
        "the newer stream carries on"
    );
    s.stop().await;
}

/// A drain made while no stream carried the instance (between reconnects, or while it beat over
/// HTTP) is pushed as DRAIN when a stream opens for it.
async fn a_drain_made_without_a_stream_is_pushed_when_one_opens(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut s = TestServer::start(&db).await;
    let mut r = reg("ops", "later");
    r.ready = true;
    let agent = s.register(r).await;
    let req = proto::DrainInstanceRequest {
        instance_id: agent.instance_id.clone(),
        reason: "maintenance".into(),
    };
    s.admin.drain_instance(req).await.unwrap();
    let (tx, mut replies) = s.open_stream().await;
    tx.send(beat(&agent.instance_id, 1, InstanceStatus::Unspecified))
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..2 {
        let m = replies.message().await.unwrap().unwrap();
        got.push((m.sequence, m.directive));
    }
    got.sort();
    assert_eq!(
        got,
        [(0, Directive::Drain as i32), (1, Directive::None as i32)],
        "the ack, and the DRAIN"
    );
    s.stop().await;
}

on_both_backends!(
    a_drain_made_without_a_stream_is_pushed_when_one_opens,
    every_beat_is_acknowledged_with_its_sequence,
    status_changes_are_persisted_before_their_ack,
    operator_actions_reach_the_open_stream,
    unknown_or_dead_instances_are_told_to_reregister,
    a_second_stream_supersedes_the_first,
);
