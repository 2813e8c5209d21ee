//! Every validation rule: INVALID_ARGUMENT naming the field, and nothing written.

use agent_registry::proto::{self, DiscoverView};
use tonic::Code;

use crate::on_both_backends;
use crate::support::{Backend, TestDb, TestServer, reg, view};

type Mutation = Box<dyn Fn(&mut proto::RegisterRequest)>;

fn cases() -> Vec<(&'static str, Mutation)> {
    let long = |n: usize| "x".repeat(n);
    vec![
        ("logical_id", Box::new(|r| r.logical_id.clear())),
        ("logical_id", Box::new(move |r| r.logical_id = long(254))),
        (
            "logical_id",
            Box::new(|r| r.logical_id = "tab\there".into()),
        ),
        ("logical_id", Box::new(|r| r.logical_id = "café".into())),
        ("namespace", Box::new(|r| r.namespace = "Upper".into())),
        (
            "namespace",
            Box::new(|r| r.namespace = "under_score".into()),
        ),
        ("namespace", Box::new(move |r| r.namespace = long(64))),
        ("namespace", Box::new(|r| r.namespace = "-lead".into())),
        ("agent_type", Box::new(move |r| r.agent_type = long(254))),
        ("version", Box::new(|r| r.version = "1.0\n".into())),
        ("endpoint", Box::new(move |r| r.endpoint = long(1025))),
        ("actor_name", Box::new(move |r| r.actor_name = long(254))),
        ("node_id", Box::new(|r| r.node_id = "n\u{7}".into())),
        (
            "ip_address",
            Box::new(|r| r.ip_address = "10.0.0.300".into()),
        ),
        ("pid", Box::new(|r| r.pid = -1)),
        (
            "labels",
            Box::new(|r| r.labels = (0..65).map(|i| (format!("k{i}"), "v".into())).collect()),
        ),
        (
            "labels[\"-bad\"]",
            Box::new(|r| {
                r.labels.insert("-bad".into(), "v".into());
            }),
        ),
        (
            "labels[\"a/b/c\"]",
            Box::new(|r| {
                r.labels.insert("a/b/c".into(), "v".into());
            }),
        ),
        (
            "labels[\"ok\"]",
            Box::new(move |r| {
                r.labels.insert("ok".into(), long(257));
            }),
        ),
        (
            "labels",
            Box::new(move |r| {
                // 64 labels of 255 bytes plus a 1 KiB endpoint: over 16 KiB of metadata.
                r.labels = (0..64).map(|i| (format!("k{i:02}"), long(252))).collect();
                r.endpoint = long(1024);
            }),
        ),
        (
            "capabilities",
            Box::new(|r| r.capabilities = (0..65).map(|i| format!("c{i}")).collect()),
        ),
        (
            "capabilities[1]",
            Box::new(|r| r.capabilities = vec!["a".into(), "".into()]),
        ),
        (
            "capabilities[1]",
            Box::new(|r| r.capabilities = vec!["a".into(), "a".into()]),
        ),
        (
            "lease_ttl",
            Box::new(|r| {
                r.lease_ttl = Some(prost_types::Duration {
                    seconds: -5,
                    nanos: 0,
                })
            }),
        ),
        (
            "instance_id",
            Box::new(|r| r.instance_id = "not-a-uuid".into()),
        ),
        (
            "instance_id",
            Box::new(|r| r.instance_id = "00000000-0000-0000-0000-000000000000".into()),
        ),
        (
            "instance_id",
            Box::new(|r| r.instance_id = "0190b5d0f1a07c3e8b1a2b3c4d5e6f70".into()),
        ),
        (
            "expected_epoch",
            Box::new(|r| r.expected_epoch = "epoch-1".into()),
        ),
    ]
}

async fn every_register_rule_names_its_field_and_writes_nothing(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut s = TestServer::start(&db).await;
    for (i, (field, mutate)) in cases().into_iter().enumerate() {
        let mut req = reg("ns", "planner");
        mutate(&mut req);
        let err = s.registry.register(req).await.expect_err(field);
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "case {i}: {}",
            err.message()
        );
        assert!(
            err.message().starts_with(&format!("{field}:")),
            "case {i}: expected field {field}, got {:?}",
            err.message()
        );
    }
    let namespaces = s
        .admin
        .list_namespaces(proto::ListNamespacesRequest::default())
        .await
        .unwrap();
    assert!(
        namespaces.into_inner().namespaces.is_empty(),
        "nothing may be written"
    );
    let page = s
        .discovery
        .discover(view("ns", DiscoverView::All))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (page.instances.len(), page.revision),
        (0, 0),
        "no revision consumed"
    );
    s.stop().await;
}

/// Asserts the call failed with `code` and a message that starts with `field`.
fn expect<T>(r: Result<tonic::Response<T>, tonic::Status>, code: Code, field: &str) {
    let err = r
        .err()
        .unwrap_or_else(|| panic!("{field}: expected an error"));
    assert_eq!(err.code(), code, "{field}: {}", err.message());
    assert!(
        err.message().starts_with(field),
        "{field}: {}",
        err.message()
    );
}

async fn read_and_admin_rules_name_their_field(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut s = TestServer::start(&db).await;
    s.register(reg("", "planner")).await;
    let d = |f: fn(&mut proto::DiscoverRequest)| {
        let mut r = view("", DiscoverView::All);
        f(&mut r);
        r
    };
    let bad = Code::InvalidArgument;
    expect(
        s.discovery.discover(d(|r| r.page_size = -1)).await,
        bad,
        "page_size",
    );
    expect(
        s.discovery
            .discover(d(|r| r.page_token = "garbage".into()))
            .await,
        bad,
        "page_token",
    );
    expect(
        s.discovery.discover(d(|r| r.namespace = "NS".into())).await,
        bad,
        "namespace",
    );
    expect(
        s.discovery
            .discover(d(|r| r.logical_ids = vec!["".into()]))
            .await,
        bad,
        "logical_ids[0]",
    );
    expect(s.discovery.discover(d(|r| r.view = 99)).await, bad, "view");
    expect(
        s.discovery
            .discover(d(|r| {
                r.label_selector.insert("$".into(), "x".into());
            }))
            .await,
        bad,
        "label_selector",
    );

    // A token only works for the query that issued it.
    for _ in 0..2 {
        s.register(reg("", "planner")).await;
    }
    let mut first = d(|r| r.page_size = 1);
    let token = s
        .discovery
        .discover(first.clone())
        .await
        .unwrap()
        .into_inner()
        .next_page_token;
    assert!(!token.is_empty());
    first.page_token = token;
    first.agent_type = "other".into();
    expect(s.discovery.discover(first).await, bad, "page_token");

    let id = |s: &str| s.to_string();
    let get = proto::GetInstanceRequest {
        instance_id: id("nope"),
    };
    expect(s.discovery.get_instance(get).await, bad, "instance_id");
    let drain = proto::DrainInstanceRequest {
        instance_id: id(""),
        reason: id(""),
    };
    expect(s.admin.drain_instance(drain).await, bad, "instance_id");
    let evict = proto::EvictInstanceRequest {
        instance_id: id("x"),
        reason: id(""),
    };
    expect(s.admin.evict_instance(evict).await, bad, "instance_id");
    let dereg = proto::DeregisterRequest {
        instance_id: id("x"),
        reason: id(""),
    };
    expect(s.registry.deregister(dereg).await, bad, "instance_id");
    let ns = proto::GetNamespaceRequest { name: id("") };
    expect(s.admin.get_namespace(ns).await, bad, "name");
    let adv = proto::AdvanceEpochRequest { namespace: id("") };
    expect(s.admin.advance_epoch(adv).await, bad, "namespace");
    let list = proto::ListNamespacesRequest {
        page_size: -3,
        page_token: id(""),
    };
    expect(s.admin.list_namespaces(list).await, bad, "page_size");

    // Well-formed ids that name nothing are NOT_FOUND.
    let missing = uuid::Uuid::now_v7().to_string();
    let nf = Code::NotFound;
    let get = proto::GetInstanceRequest {
        instance_id: missing.clone(),
    };
    expect(s.discovery.get_instance(get).await, nf, "instance_id");
    let drain = proto::DrainInstanceRequest {
        instance_id: missing,
        reason: id(""),
    };
    expect(s.admin.drain_instance(drain).await, nf, "instance_id");
    let ns = proto::GetNamespaceRequest { name: id("absent") };
    expect(s.admin.get_namespace(ns).await, nf, "namespace");
    let adv = proto::AdvanceEpochRequest {
        namespace: id("absent"),
    };
    expect(s.admin.advance_epoch(adv).await, nf, "namespace");
    s.stop().await;
}

on_both_backends!(
    every_register_rule_names_its_field_and_writes_nothing,
    read_and_admin_rules_name_their_field,
);
