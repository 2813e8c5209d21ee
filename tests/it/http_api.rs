//! The HTTP/JSON API (SPEC §12): every endpoint gives the gRPC answer, bad input is a 400 that
//! names the field and writes nothing, the unary heartbeat renews without a write, and the
//! role × namespace matrix is the gRPC one (`security::allowed`).

use agent_registry::proto;
use agent_registry::security::Action;
use serde_json::{Value, json};

use crate::security::{fixture, matrix};
use crate::support::{Backend, Http, TestDb, TestServer, cards, ids, reg, view};

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("a string, got {v}"))
}

/// (instanceId, status) of every instance of a JSON listing.
fn listing(v: &Value) -> Vec<(String, String)> {
    v["instances"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| (s(&i["instanceId"]).to_string(), s(&i["status"]).to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn grpc_listing(instances: &[proto::Instance]) -> Vec<(String, String)> {
    instances
        .iter()
        .map(|i| {
            let status = proto::InstanceStatus::try_from(i.status).unwrap();
            (i.instance_id.clone(), status.as_str_name().to_string())
        })
        .collect()
}

async fn every_endpoint_answers_as_grpc_does(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut srv = TestServer::start(&db).await;
    let h = Http::new(&srv.http_url, None);

    // Register through HTTP, in the proto3 JSON mapping.
    let (code, reply) = h
        .post(
            "/v1/namespaces/web/instances",
            json!({"logicalId": "planner", "agentType": "llm", "endpoint": "10.0.0.1:7000",
                   "capabilities": ["plan"], "labels": {"zone": "eu-1"}, "leaseTtl": "30s",
                   "ready": true}),
        )
        .await;
    assert_eq!(code, 200, "{reply}");
    let id = s(&reply["instance"]["instanceId"]).to_string();
    assert_eq!(s(&reply["instance"]["status"]), "INSTANCE_STATUS_ALIVE");
    assert_eq!(s(&reply["instance"]["leaseTtl"]), "30s");
    assert_eq!(s(&reply["heartbeatInterval"]), "10s");
    let stored = srv.instance(&id).await;
    assert_eq!(stored.logical_id, "planner");
    assert_eq!(stored.labels["zone"], "eu-1");
    assert_eq!(
        reply["instance"]["revision"],
        json!(stored.revision.to_string())
    );
    // And through gRPC: a second instance of the same role, and another role.
    let mut r = reg("web", "planner");
    r.ready = true;
    let second = srv.register(r).await;
    let mut r = reg("web", "critic");
    r.agent_type = "llm".into();
    srv.register(r).await;

    // GET instance: the same instance as GetInstance gives.
    let (code, got) = h.get(&format!("/v1/instances/{id}")).await;
    assert_eq!(code, 200);
    assert_eq!(s(&got["instance"]["instanceId"]), id);
    assert_eq!(s(&got["instance"]["endpoint"]), "10.0.0.1:7000");
    assert_eq!(got["instance"]["capabilities"], json!(["plan"]));

    // Discover: each view, with filters, the same set as gRPC's Discover.
    for (param, v) in [
        ("active", proto::DiscoverView::Active),
        ("live", proto::DiscoverView::Live),
        ("all", proto::DiscoverView::All),
    ] {
        let (code, page) = h
            .get(&format!("/v1/namespaces/web/instances?view={param}"))
            .await;
        assert_eq!(code, 200, "{page}");
        let want = srv.discover_all(view("web", v)).await;
        assert_eq!(listing(&page), grpc_listing(&want), "view {param}");
        assert!(page["revision"].as_str().is_some());
    }
    let (_, page) = h
        .get("/v1/namespaces/web/instances?view=live&agentType=llm&label=zone%3Deu-1&capability=plan")
        .await;
    assert_eq!(listing(&page).len(), 1);
    assert_eq!(listing(&page)[0].0, id);
    let (_, page) = h
        .get("/v1/namespaces/web/instances?view=live&logicalId=planner&logicalId=critic")
        .await;
    assert_eq!(listing(&page).len(), 3);
    // Paging: pages of one, then the token, until the end; every live instance once.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let (code, page) = h
            .get(&format!(
                "/v1/namespaces/web/instances?view=live&pageSize=1&pageToken={token}"
            ))
            .await;
        assert_eq!(code, 200, "{page}");
        seen.extend(listing(&page));
        token = page["nextPageToken"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if token.is_empty() {
            break;
        }
    }
    let want = srv
        .discover_all(view("web", proto::DiscoverView::Live))
        .await;
    assert_eq!(seen, grpc_listing(&want));

    // Namespaces: the list and one, as AdminService gives them.
    let (code, list) = h.get("/v1/namespaces").await;
    assert_eq!(code, 200);
    let names: Vec<&str> = list["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| s(&n["name"]))
        .collect();
    assert!(names.contains(&"web"), "{list}");
    let (code, ns) = h.get("/v1/namespaces/web").await;
    assert_eq!(code, 200);
    let grpc = srv
        .admin
        .get_namespace(proto::GetNamespaceRequest { name: "web".into() })
        .await
        .unwrap()
        .into_inner()
        .namespace
        .unwrap();
    assert_eq!(s(&ns["namespace"]["currentEpoch"]), grpc.current_epoch);
    assert_eq!(
        ns["namespace"]["liveCount"],
        json!(grpc.live_count.to_string())
    );
    assert_eq!(grpc.live_count, 3);

    // Heartbeat: renews the lease, changes no revision.
    let before = srv.node.revision();
    let (code, ack) = h
        .post(
            &format!("/v1/instances/{id}:heartbeat"),
            json!({"sequence": "7"}),
        )
        .await;
    assert_eq!(code, 200, "{ack}");
    assert_eq!(s(&ack["sequence"]), "7");
    assert!(ack["leaseExpiresAt"].as_str().is_some());
    assert_eq!(s(&ack["directive"]), "DIRECTIVE_NONE");
    assert_eq!(srv.node.revision(), before, "a beat is not a state change");

    // Drain: DRAINING for gRPC too, and the next beat says DRAIN.
    let (code, drained) = h
        .post(
            &format!("/v1/instances/{id}:drain"),
            json!({"reason": "test"}),
        )
        .await;
    assert_eq!(code, 200, "{drained}");
    assert_eq!(
        s(&drained["instance"]["status"]),
        "INSTANCE_STATUS_DRAINING"
    );
    assert_eq!(
        srv.instance(&id).await.status,
        proto::InstanceStatus::Draining as i32
    );
    let (_, ack) = h
        .post(&format!("/v1/instances/{id}:heartbeat"), json!({}))
        .await;
    assert_eq!(s(&ack["directive"]), "DIRECTIVE_DRAIN");
    let (_, ack) = h
        .post(&format!("/v1/instances/{id}:heartbeat"), json!({}))
        .await;
    assert_eq!(
        s(&ack["directive"]),
        "DIRECTIVE_NONE",
        "told once, as a stream is"
    );
    // A beat may undrain, as on a stream.
    let (code, ack) = h
        .post(
            &format!("/v1/instances/{id}:heartbeat"),
            json!({"status": "INSTANCE_STATUS_ALIVE"}),
        )
        .await;
    assert_eq!(code, 200, "{ack}");
    assert_eq!(
        srv.instance(&id).await.status,
        proto::InstanceStatus::Alive as i32
    );
    // A drain the agent asks for itself is not echoed back as DRAIN.
    let third = srv.register(reg("web", "worker")).await;
    for status in [json!({"status": "INSTANCE_STATUS_DRAINING"}), json!({})] {
        let (code, ack) = h
            .post(
                &format!("/v1/instances/{}:heartbeat", third.instance_id),
                status,
            )
            .await;
        assert_eq!(code, 200, "{ack}");
        assert_eq!(s(&ack["directive"]), "DIRECTIVE_NONE", "{ack}");
    }
    let drained = srv.instance(&third.instance_id).await;
    assert_eq!(drained.status, proto::InstanceStatus::Draining as i32);

    // Evict: DEAD (EVICTED); a beat now says REREGISTER.
    let (code, evicted) = h
        .post(
            &format!("/v1/instances/{id}:evict"),
            json!({"reason": "test"}),
        )
        .await;
    assert_eq!(code, 200, "{evicted}");
    assert_eq!(
        s(&evicted["instance"]["deathReason"]),
        "DEATH_REASON_EVICTED"
    );
    let (code, ack) = h
        .post(&format!("/v1/instances/{id}:heartbeat"), json!({}))
        .await;
    assert_eq!(code, 200);
    assert_eq!(s(&ack["directive"]), "DIRECTIVE_REREGISTER");

    // Deregister the gRPC-registered one through HTTP.
    let (code, gone) = h
        .post(
            &format!("/v1/instances/{}:deregister", second.instance_id),
            json!({"reason": "done"}),
        )
        .await;
    assert_eq!(code, 200, "{gone}");
    assert_eq!(
        s(&gone["instance"]["deathReason"]),
        "DEATH_REASON_DEREGISTERED"
    );
    let dead = srv.instance(&second.instance_id).await;
    assert_eq!(dead.status, proto::InstanceStatus::Dead as i32);

    // AdvanceEpoch: the instances still not dead are fenced.
    let (code, adv) = h.post("/v1/namespaces/web:advanceEpoch", json!({})).await;
    assert_eq!(code, 200, "{adv}");
    assert_eq!(
        s(&adv["fencedInstances"]),
        "2",
        "the live one and the draining one"
    );
    assert_ne!(s(&adv["namespace"]["currentEpoch"]), grpc.current_epoch);
    let live = srv
        .discover_all(view("web", proto::DiscoverView::Live))
        .await;
    assert!(ids(&live).is_empty());

    // The replica's own state and the caller, for the console.
    let (code, state) = h.get("/v1/status").await;
    assert_eq!(code, 200);
    assert_eq!(state["ready"], json!(true));
    // The suite's servers take REDIS_URL from the environment, as the binary does.
    let redis = s(&state["redis"]);
    match std::env::var("REDIS_URL") {
        Ok(_) => assert!(["subscribed", "unreachable"].contains(&redis), "{state}"),
        Err(_) => assert_eq!(redis, "not configured"),
    }
    assert_eq!(state["selfPreservation"]["holding"], json!(false));
    assert_eq!(state["revision"], json!(srv.node.revision().to_string()));
    let (_, me) = h.get("/v1/caller").await;
    assert_eq!(me["open"], json!(true));

    // Unknown things are 404 in the error shape.
    let (code, err) = h
        .get("/v1/instances/00000000-0000-7000-8000-000000000001")
        .await;
    assert_eq!((code, s(&err["code"])), (404, "NOT_FOUND"));
    let (code, err) = h
        .post(&format!("/v1/instances/{id}:explode"), json!({}))
        .await;
    assert_eq!((code, s(&err["code"])), (404, "NOT_FOUND"));
    let (code, err) = h.get("/v2/nothing").await;
    assert_eq!((code, s(&err["code"])), (404, "NOT_FOUND"));

    // Counted in /metrics by declared route, never by the ids clients send.
    let exposition = srv.node.metrics().render();
    for line in [
        r#"agent_registry_http_requests_total{route="/v1/instances/{id}",method="GET",status="200"} 1"#,
        r#"agent_registry_http_requests_total{route="/v1/instances/{id}",method="GET",status="404"} 1"#,
        r#"agent_registry_http_requests_total{route="/v1/namespaces/{ns}/instances",method="POST",status="200"} 1"#,
    ] {
        assert!(exposition.contains(line), "{line} in\n{exposition}");
    }
    assert!(!exposition.contains(&id), "no instance id in a label");
    srv.stop().await;
}

/// Bad input is 400 INVALID_ARGUMENT naming the field or parameter, and nothing is written.
async fn bad_input_names_the_field_and_writes_nothing(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let srv = TestServer::start(&db).await;
    let h = Http::new(&srv.http_url, None);
    let before = srv.node.revision();
    let cases: [(&str, Value, &str); 6] = [
        (
            "/v1/namespaces/fresh/instances",
            json!({"logicalId": ""}),
            "logical_id",
        ),
        (
            "/v1/namespaces/fresh/instances",
            json!({"logicalId": "a", "labels": {"-x": "1"}}),
            "labels",
        ),
        (
            "/v1/namespaces/fresh/instances",
            json!({"logicalID": "a"}),
            "logicalID",
        ),
        (
            "/v1/namespaces/fresh/instances",
            json!({"logicalId": "a", "leaseTtl": 5}),
            "body",
        ),
        (
            "/v1/namespaces/fresh/instances",
            json!({"logicalId": "a", "namespace": "other"}),
            "namespace",
        ),
        (
            "/v1/namespaces/Not_A_Label/instances",
            json!({"logicalId": "a"}),
            "namespace",
        ),
    ];
    for (path, body, field) in cases {
        let (code, err) = h.post(path, body.clone()).await;
        assert_eq!(code, 400, "{body}: {err}");
        assert_eq!(s(&err["code"]), "INVALID_ARGUMENT");
        assert!(
            s(&err["message"]).contains(field),
            "{body}: {err} should name {field}"
        );
    }
    for (query, field) in [
        ("view=sideways", "view"),
        ("pageSize=-1", "page_size"),
        ("pageSize=many", "pageSize"),
        ("capabilty=x", "capabilty"),
        ("label=nokey", "label"),
        ("pageToken=garbage", "page_token"),
    ] {
        let (code, err) = h
            .get(&format!("/v1/namespaces/fresh/instances?{query}"))
            .await;
        assert_eq!(code, 400, "{query}: {err}");
        assert!(
            s(&err["message"]).contains(field),
            "{query}: {err} should name {field}"
        );
    }
    let (code, err) = h.get("/v1/instances/not-a-uuid").await;
    assert_eq!(code, 400, "{err}");
    assert!(s(&err["message"]).contains("instance_id"), "{err}");
    assert_eq!(srv.node.revision(), before, "nothing was written");
    let (_, ns) = h.get("/v1/namespaces/fresh").await;
    assert_eq!(s(&ns["code"]), "NOT_FOUND", "not even the namespace: {ns}");
    srv.stop().await;
}

/// Calls `action` over HTTP as `h` on namespace `ns` (or its instance `id`): the outcome's
/// gRPC code name (`OK` for a 2xx).
async fn call(h: &Http, action: Action, ns: &str, id: &str, n: usize) -> String {
    let outcome = |(code, body): (u16, Value)| match code {
        200 => "OK".to_string(),
        _ => body["code"].as_str().unwrap_or("?").to_string(),
    };
    let reason = json!({"reason": "test"});
    match action {
        Action::Register => outcome(
            h.post(
                &format!("/v1/namespaces/{ns}/instances"),
                json!({"logicalId": format!("new-{n}")}),
            )
            .await,
        ),
        Action::Heartbeat => outcome(
            h.post(&format!("/v1/instances/{id}:heartbeat"), json!({}))
                .await,
        ),
        Action::Deregister => outcome(
            h.post(&format!("/v1/instances/{id}:deregister"), reason)
                .await,
        ),
        Action::Drain => outcome(h.post(&format!("/v1/instances/{id}:drain"), reason).await),
        Action::Evict => outcome(h.post(&format!("/v1/instances/{id}:evict"), reason).await),
        Action::AdvanceEpoch => outcome(
            h.post(&format!("/v1/namespaces/{ns}:advanceEpoch"), json!({}))
                .await,
        ),
        Action::Discover => outcome(
            h.get(&format!("/v1/namespaces/{ns}/instances?view=all"))
                .await,
        ),
        Action::GetInstance => outcome(h.get(&format!("/v1/instances/{id}")).await),
        Action::Watch => {
            let mut w = h.sse(&format!("/v1/namespaces/{ns}/watch"), None).await;
            match w.status {
                200 => {
                    assert_eq!(w.expect().await.event, "snapshot");
                    "OK".to_string()
                }
                _ => w.error().await["code"].as_str().unwrap().to_string(),
            }
        }
        Action::ListNamespaces => outcome(h.get("/v1/namespaces").await),
        Action::GetNamespace => outcome(h.get(&format!("/v1/namespaces/{ns}")).await),
        Action::PublishCard => outcome(
            h.put_raw(
                &format!("/v1/namespaces/{ns}/agents/published-{n}/card"),
                &cards::simple("published").to_string(),
            )
            .await,
        ),
        Action::SearchAgents => outcome(
            h.get(&format!("/v1/namespaces/{ns}/agents?query=cell"))
                .await,
        ),
        Action::GetAgent => outcome(h.get(&format!("/v1/namespaces/{ns}/agents/cell-{n}")).await),
        Action::GetCard => outcome(h.get(&format!("/v1/instances/{id}/card")).await),
        Action::ListCardVersions => outcome(
            h.get(&format!("/v1/namespaces/{ns}/agents/cell-{n}/cards"))
                .await,
        ),
    }
}

/// The code a JSON error names, back as the gRPC code.
fn grpc_code(name: &str) -> tonic::Code {
    (0..=16)
        .map(tonic::Code::from_i32)
        .find(|c| agent_registry::web::code_name(*c) == name)
        .unwrap_or(tonic::Code::Unknown)
}

/// The gRPC matrix (`security::matrix` and its `allowed` table), over HTTP: every role ×
/// action × namespace.
async fn role_action_namespace_matrix_over_http(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let f = fixture(&db).await;
    let base = f.server.http_url.clone();
    let failures = matrix(&f, |secret, action, ns, id, n| {
        let h = Http::new(&base, Some(&secret));
        async move { grpc_code(&call(&h, action, ns, &id, n).await) }
    })
    .await;
    // Listings show only the granted namespaces.
    for secret in [&f.reader.secret, &f.admin.secret] {
        let (_, list) = Http::new(&base, Some(secret)).get("/v1/namespaces").await;
        assert_eq!(list["namespaces"].as_array().unwrap().len(), 1, "{list}");
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // No token, a wrong one: 401 with the challenge; the console's files need none.
    for h in [
        Http::new(&f.server.http_url, None),
        Http::new(&f.server.http_url, Some("not-a-token")),
    ] {
        let (code, err) = h.get("/v1/namespaces").await;
        assert_eq!((code, err["code"].as_str()), (401, Some("UNAUTHENTICATED")));
        assert_eq!(h.get("/v1/caller").await.0, 401);
    }
    let (code, _) = Http::new(&f.server.http_url, None)
        .get("/openapi.json")
        .await;
    assert_eq!(code, 200);
    // The caller is established before the body is read: no token and a bad body is 401.
    let anonymous = Http::new(&f.server.http_url, None);
    let (code, _) = anonymous
        .post("/v1/namespaces/a/instances", json!({"no": "such field"}))
        .await;
    assert_eq!(code, 401);
    let w = anonymous.sse("/v1/namespaces/a/watch", None).await;
    assert_eq!(w.status, 401);
    // A reader of `a` sees the replica's state, with no other namespace named in it.
    let (code, state) = Http::new(&f.server.http_url, Some(&f.reader.secret))
        .get("/v1/status")
        .await;
    assert_eq!(code, 200, "{state}");
    assert!(
        state["selfPreservation"]["namespaces"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let (code, _) = Http::new(&f.server.http_url, Some(&f.agent.secret))
        .get("/v1/status")
        .await;
    assert_eq!(code, 403, "an agent token may not list");
    let (_, me) = Http::new(&f.server.http_url, Some(&f.reader.secret))
        .get("/v1/caller")
        .await;
    assert_eq!(
        me,
        json!({"open": false, "name": "reader-a", "role": "reader", "namespaces": ["a"]})
    );
    f.server.stop().await;
}

/// The limits apply as on gRPC: a body over `--max-message-size` is RESOURCE_EXHAUSTED (429).
async fn limits_apply_over_http(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let srv = TestServer::start_with(&db, |a| a.max_message_size = 4096).await;
    let h = Http::new(&srv.http_url, None);
    let (code, err) = h
        .post(
            "/v1/namespaces/big/instances",
            json!({"logicalId": "a", "version": "x".repeat(5000)}),
        )
        .await;
    assert_eq!(
        (code, err["code"].as_str()),
        (429, Some("RESOURCE_EXHAUSTED")),
        "{err}"
    );
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("--max-message-size"),
        "{err}"
    );
    srv.stop().await;
}

/// Writes take JSON only and not from another site's page, so a cross-site form or `no-cors`
/// fetch cannot write to an open registry; nothing is written when refused.
async fn writes_refuse_forms_and_other_sites(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let srv = TestServer::start(&db).await;
    let h = Http::new(&srv.http_url, None);
    let before = srv.node.revision();
    let body = r#"{"logicalId": "a"}"#;
    for (headers, field, code) in [
        (vec![], "content-type", 400),
        (vec![("content-type", "text/plain")], "content-type", 400),
        (
            vec![("content-type", "application/x-www-form-urlencoded")],
            "content-type",
            400,
        ),
        (
            vec![
                ("content-type", "application/json"),
                ("sec-fetch-site", "cross-site"),
            ],
            "sec-fetch-site",
            403,
        ),
    ] {
        let (got, err) = h
            .post_raw("/v1/namespaces/csrf/instances", body, &headers)
            .await;
        assert_eq!(got, code, "{headers:?}: {err}");
        assert!(s(&err["message"]).starts_with(field), "{headers:?}: {err}");
    }
    assert_eq!(srv.node.revision(), before, "nothing was written");
    let same_origin = [
        ("content-type", "application/json; charset=utf-8"),
        ("sec-fetch-site", "same-origin"),
    ];
    let (got, reply) = h
        .post_raw("/v1/namespaces/csrf/instances", body, &same_origin)
        .await;
    assert_eq!(got, 200, "{reply}");
    srv.stop().await;
}

/// A rule's refusal is FAILED_PRECONDITION, 412, naming what was stale, and writes nothing:
/// a Register whose `expectedEpoch` is not the namespace's, a drain of a deregistered instance.
async fn refused_by_a_rule_is_412_and_writes_nothing(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let srv = TestServer::start(&db).await;
    let h = Http::new(&srv.http_url, None);
    let (code, reg) = h
        .post("/v1/namespaces/rules/instances", json!({"logicalId": "a"}))
        .await;
    assert_eq!(code, 200, "{reg}");
    let id = s(&reg["instance"]["instanceId"]).to_string();
    let (code, gone) = h
        .post(&format!("/v1/instances/{id}:deregister"), json!({}))
        .await;
    assert_eq!(code, 200, "{gone}");
    let before = srv.node.revision();
    let stale = uuid::Uuid::new_v4().to_string();
    let (code, err) = h
        .post(
            "/v1/namespaces/rules/instances",
            json!({"logicalId": "b", "expectedEpoch": stale}),
        )
        .await;
    assert_eq!(
        (code, s(&err["code"])),
        (412, "FAILED_PRECONDITION"),
        "{err}"
    );
    assert!(s(&err["message"]).contains("expected_epoch"), "{err}");
    let (code, err) = h
        .post(&format!("/v1/instances/{id}:drain"), json!({}))
        .await;
    assert_eq!(
        (code, s(&err["code"])),
        (412, "FAILED_PRECONDITION"),
        "{err}"
    );
    assert!(s(&err["message"]).contains(&id), "{err}");
    assert_eq!(srv.node.revision(), before, "nothing was written");
    srv.stop().await;
}

crate::on_both_backends!(
    refused_by_a_rule_is_412_and_writes_nothing,
    writes_refuse_forms_and_other_sites,
    every_endpoint_answers_as_grpc_does,
    bad_input_names_the_field_and_writes_nothing,
    role_action_namespace_matrix_over_http,
    limits_apply_over_http,
);
