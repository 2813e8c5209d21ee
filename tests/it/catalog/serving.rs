//! Which card an agent shows and serves: only while an instance is live, the active
//! instance's during a rollout; versions nobody serves collected; the SQL view in agreement.

use std::time::Duration;

use agent_registry::proto::{self, AgentState, CardKind};
use serde_json::json;
use tonic::Code;

use super::{get_agent, names, search, with_card};
use crate::on_both_backends;
use crate::support::{Backend, Http, TestDb, TestServer, cards, reg};

async fn a_card_is_served_only_while_an_instance_is_live(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut s = TestServer::start(&db).await;
    let h = Http::new(&s.http_url, None);
    // Published ahead of any instance, as MCP's server.json.
    let server = cards::mcp("weather");
    let body = serde_json::to_string_pretty(&server).unwrap();
    let (code, published) = h
        .put_raw("/v1/namespaces/prod/agents/weather/card?kind=mcp", &body)
        .await;
    assert_eq!(code, 200, "{published}");
    let digest = published["digest"].as_str().unwrap().to_string();
    assert_eq!(published["agent"]["state"], "AGENT_STATE_NO_LIVE_INSTANCES");
    assert_eq!(published["agent"]["kind"], "CARD_KIND_MCP");
    let well_known = "/a2a/prod/weather/.well-known/agent-card.json";
    let (code, headers, _) = h.get_bytes(well_known, &[]).await;
    assert_eq!(code, 503);
    assert!(headers.contains_key("retry-after"));
    let live_only = proto::SearchAgentsRequest {
        namespace: "prod".into(),
        ..Default::default()
    };
    assert!(search(&mut s, live_only.clone()).await.results.is_empty());
    let offline = search(
        &mut s,
        proto::SearchAgentsRequest {
            include_offline: true,
            ..live_only.clone()
        },
    )
    .await;
    assert_eq!(names(&offline), ["weather"]);
    let (code, _, _) = h
        .get_bytes("/a2a/prod/nobody/.well-known/agent-card.json", &[])
        .await;
    assert_eq!(code, 404, "no card, no agent");

    // An instance by digest: the card is served, byte for byte, cacheable within its lease.
    let i = s
        .register(proto::RegisterRequest {
            card_digest: digest.clone(),
            lease_ttl: crate::support::lease(30),
            ..reg("prod", "weather")
        })
        .await;
    let (code, headers, bytes) = h.get_bytes(well_known, &[]).await;
    assert_eq!(code, 200);
    assert_eq!(&bytes[..], body.as_bytes());
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["etag"], format!("\"{digest}\"").as_str());
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let max_age: u64 = headers["cache-control"]
        .to_str()
        .unwrap()
        .strip_prefix("max-age=")
        .unwrap()
        .parse()
        .unwrap();
    assert!(max_age <= 30, "{max_age}");
    let etag = format!("\"{digest}\"");
    let (code, _, bytes) = h.get_bytes(well_known, &[("if-none-match", &etag)]).await;
    assert_eq!((code, bytes.len()), (304, 0));
    assert_eq!(names(&search(&mut s, live_only.clone()).await), ["weather"]);
    for path in [
        format!("/v1/cards/{digest}"),
        format!("/v1/instances/{}/card", i.instance_id),
    ] {
        let (code, _, bytes) = h.get_bytes(&path, &[]).await;
        assert_eq!((code, &bytes[..]), (200, body.as_bytes()), "{path}");
    }
    let (_, versions) = h.get("/v1/namespaces/prod/agents/weather/cards").await;
    assert_eq!(versions["versions"][0]["digest"], digest.as_str());
    assert_eq!(versions["versions"][0]["liveCount"], 1);
    assert_eq!(versions["versions"][0]["current"], true);
    // Deregistered: nothing live serves it any more.
    s.registry
        .deregister(proto::DeregisterRequest {
            instance_id: i.instance_id,
            reason: "test".into(),
        })
        .await
        .unwrap();
    let (code, _, _) = h.get_bytes(well_known, &[]).await;
    assert_eq!(code, 503);
    assert!(search(&mut s, live_only).await.results.is_empty());
    s.stop().await;
}

async fn the_active_instance_card_is_current_during_a_rollout(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut s = TestServer::start(&db).await;
    let v1 = cards::a2a("Planner", &[("plan", &["v1"])]);
    let mut v2 = v1.clone();
    v2["version"] = json!("2.0.0");
    let old = s.register(with_card("roll", "planner", &v1)).await;
    let new = s.register(with_card("roll", "planner", &v2)).await;
    assert_ne!(old.card_digest, new.card_digest);
    // The senior instance is active: its card is current, though v2 is the latest published.
    assert_eq!(
        get_agent(&mut s, "roll", "planner").await.unwrap().digest,
        old.card_digest
    );
    s.registry
        .deregister(proto::DeregisterRequest {
            instance_id: old.instance_id,
            reason: "rolled".into(),
        })
        .await
        .unwrap();
    let agent = get_agent(&mut s, "roll", "planner").await.unwrap();
    assert_eq!(agent.digest, new.card_digest);
    assert_eq!(agent.version, "2.0.0");
    let versions = s
        .catalog
        .list_card_versions(proto::ListCardVersionsRequest {
            namespace: "roll".into(),
            logical_id: "planner".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .versions;
    assert_eq!(versions.len(), 2);
    assert!(versions[0].current && versions[0].digest == new.card_digest);
    // Watch and the instance itself carry the digest each instance serves.
    let got = s.instance(&new.instance_id).await;
    assert_eq!(got.card_digest, new.card_digest);
    s.stop().await;
}

async fn unserved_versions_are_collected_with_dead_instances(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut s = TestServer::start_with(&db, |a| {
        a.change_poll_interval = Duration::from_millis(10);
        a.dead_retention = Duration::from_millis(100);
    })
    .await;
    let v1 = cards::a2a("Collector", &[("keep", &["v1"])]);
    let mut v2 = v1.clone();
    v2["version"] = json!("2.0.0");
    let mut v3 = v1.clone();
    v3["version"] = json!("3.0.0");
    let old = s.register(with_card("gc", "collector", &v1)).await;
    let served = s.register(with_card("gc", "collector", &v2)).await;
    s.registry
        .deregister(proto::DeregisterRequest {
            instance_id: old.instance_id.clone(),
            reason: "gone".into(),
        })
        .await
        .unwrap();
    // v3, published last, is the latest; v2 is still served; v1 is neither.
    s.catalog
        .publish_card(proto::PublishCardRequest {
            namespace: "gc".into(),
            logical_id: "collector".into(),
            card: Some(cards::proto_card(&v3)),
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let done = s.node.retention().collect_once().await.expect("collect");
    assert_eq!(done.changes.cards.len(), 1, "{done:?}");
    let kept: Vec<String> = s
        .catalog
        .list_card_versions(proto::ListCardVersionsRequest {
            namespace: "gc".into(),
            logical_id: "collector".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .versions
        .into_iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(kept, ["3.0.0", "2.0.0"]);
    let err = s
        .catalog
        .get_card(proto::GetCardRequest {
            digest: old.card_digest.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // The store agrees: the collected row is a tombstone without its bytes, then gone.
    let sql = format!(
        "SELECT count(*) FROM agent_card WHERE digest = '{}' AND length(card) > 0",
        old.card_digest
    );
    assert_eq!(db.query_i64(&sql).await, 0);
    // Registering by the collected digest is NOT_FOUND; with the card itself it is back.
    let err = s
        .registry
        .register(proto::RegisterRequest {
            card_digest: old.card_digest.clone(),
            ..reg("gc", "collector")
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let again = s.register(with_card("gc", "collector", &v1)).await;
    assert_eq!(again.card_digest, old.card_digest);
    assert!(served.card_digest != again.card_digest);
    s.stop().await;
}

/// What operators read with psql agrees with GetAgent.
async fn the_active_agent_view_agrees_with_get_agent(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut s = TestServer::start(&db).await;
    let v1 = cards::a2a("Viewed", &[("see", &["v1"])]);
    let mut v2 = v1.clone();
    v2["version"] = json!("2.0.0");
    let active = s.register(with_card("sql", "served", &v1)).await;
    s.register(with_card("sql", "served", &v2)).await;
    s.catalog
        .publish_card(proto::PublishCardRequest {
            namespace: "sql".into(),
            logical_id: "idle".into(),
            card: Some(cards::proto_card(&cards::mcp("idle"))),
        })
        .await
        .unwrap();
    let rows = db
        .query_ids(
            "SELECT logical_id || ' ' || digest || ' ' || state || ' ' || kind, live_instances \
             FROM active_agent WHERE namespace = 'sql' ORDER BY logical_id",
        )
        .await;
    let mut want = Vec::new();
    for lid in ["idle", "served"] {
        let a = get_agent(&mut s, "sql", lid).await.unwrap();
        let state = match a.state == AgentState::Live as i32 {
            true => "LIVE",
            false => "NO_LIVE_INSTANCES",
        };
        let kind = match a.kind == CardKind::Mcp as i32 {
            true => "mcp",
            false => "a2a",
        };
        want.push((
            format!("{lid} {} {state} {kind}", a.digest),
            a.live_count as i64,
        ));
    }
    assert_eq!(rows, want);
    assert!(
        rows[1].0.contains(&active.card_digest),
        "the active instance's card"
    );
    s.stop().await;
}

on_both_backends!(
    a_card_is_served_only_while_an_instance_is_live,
    the_active_instance_card_is_current_during_a_rollout,
    unserved_versions_are_collected_with_dead_instances,
    the_active_agent_view_agrees_with_get_agent,
);
