//! Agent cards bound to leases (SPEC §15), on both backends: cards arrive with a registration
//! or by publishing, are validated before anything is written, are served byte for byte only
//! while an instance is live, and are searched from memory; unserved versions are collected.

use std::time::Duration;

use agent_registry::proto::{self, AgentState, CardKind};
use serde_json::{Value, json};
use tonic::Code;

use crate::on_both_backends;
use crate::support::{Backend, Http, TestDb, TestServer, cards, eventually, reg};

fn with_card(ns: &str, logical_id: &str, card: &Value) -> proto::RegisterRequest {
    proto::RegisterRequest {
        card: Some(cards::proto_card(card)),
        ..reg(ns, logical_id)
    }
}

async fn get_agent(
    s: &mut TestServer,
    ns: &str,
    logical_id: &str,
) -> Result<proto::Agent, tonic::Status> {
    let r = proto::GetAgentRequest {
        namespace: ns.into(),
        logical_id: logical_id.into(),
    };
    Ok(s.catalog.get_agent(r).await?.into_inner().agent.unwrap())
}

async fn search(s: &mut TestServer, r: proto::SearchAgentsRequest) -> proto::SearchAgentsResponse {
    s.catalog
        .search_agents(r)
        .await
        .expect("search")
        .into_inner()
}

fn names(r: &proto::SearchAgentsResponse) -> Vec<String> {
    r.results
        .iter()
        .map(|h| h.agent.as_ref().unwrap().logical_id.clone())
        .collect()
}

async fn a_card_arrives_with_its_registration_then_by_digest(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut s = TestServer::start(&db).await;
    // Pretty-printed: the bytes kept are these, the digest is of the canonical form.
    let card = cards::a2a("Planner", &[("plan-trip", &["travel"])]);
    let pretty = serde_json::to_string_pretty(&card).unwrap();
    let first = s
        .register(proto::RegisterRequest {
            card: Some(proto::Card {
                kind: CardKind::A2a as i32,
                json: pretty.clone(),
            }),
            ..reg("cards", "planner")
        })
        .await;
    assert!(first.card_digest.starts_with("sha256:"), "{first:?}");
    let agent = get_agent(&mut s, "cards", "planner").await.unwrap();
    assert_eq!(agent.digest, first.card_digest);
    assert_eq!(agent.state, AgentState::Live as i32);
    assert_eq!(agent.live_count, 1);
    assert_eq!(agent.name, "Planner");
    assert_eq!(agent.skills[0].id, "plan-trip");
    assert_eq!(agent.card.as_ref().unwrap().json, pretty, "byte for byte");
    // The rest of the fleet sends the digest alone.
    let second = s
        .register(proto::RegisterRequest {
            card_digest: first.card_digest.clone(),
            ..reg("cards", "planner")
        })
        .await;
    assert_eq!(second.card_digest, first.card_digest);
    assert_eq!(
        get_agent(&mut s, "cards", "planner")
            .await
            .unwrap()
            .live_count,
        2
    );
    // The same card compact: the same digest, no new version.
    let third = s.register(with_card("cards", "planner", &card)).await;
    assert_eq!(third.card_digest, first.card_digest);

    let before = s.node.revision();
    let unknown = format!("sha256:{}", "0".repeat(64));
    let err = s
        .registry
        .register(proto::RegisterRequest {
            card_digest: unknown.clone(),
            ..reg("cards", "planner")
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().contains("card_digest"), "{}", err.message());
    // A digest is per agent: another logical id has no such card.
    let err = s
        .registry
        .register(proto::RegisterRequest {
            card_digest: first.card_digest.clone(),
            ..reg("cards", "someone-else")
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = s
        .registry
        .register(proto::RegisterRequest {
            card_digest: unknown,
            ..with_card("cards", "planner", &card)
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().starts_with("card_digest"),
        "{}",
        err.message()
    );
    assert_eq!(s.node.revision(), before, "nothing written");
    s.stop().await;
}

async fn an_invalid_card_is_named_by_path_and_writes_nothing(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut s = TestServer::start(&db).await;
    let mut card = cards::simple("Broken");
    card["skills"][0].as_object_mut().unwrap().remove("id");
    let before = s.node.revision();
    let err = s
        .registry
        .register(with_card("fresh", "broken", &card))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "card.skills[0].id: required");
    for (json, path) in [
        ("[1]", "card"),
        ("{\"name\": 1}", "card.name"),
        ("not json", "card"),
    ] {
        let err = s
            .catalog
            .publish_card(proto::PublishCardRequest {
                namespace: "fresh".into(),
                logical_id: "broken".into(),
                card: Some(proto::Card {
                    kind: CardKind::A2a as i32,
                    json: json.into(),
                }),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{json}");
        assert!(
            err.message().starts_with(&format!("{path}:")),
            "{json}: {}",
            err.message()
        );
    }
    // Over HTTP too, naming the path; and too large a card names the limit.
    let h = Http::new(&s.http_url, None);
    let (code, body) = h
        .put_raw("/v1/namespaces/fresh/agents/broken/card", &card.to_string())
        .await;
    assert_eq!(
        (code, body["code"].as_str()),
        (400, Some("INVALID_ARGUMENT"))
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("card.skills[0].id"),
        "{body}"
    );
    let mut big = cards::simple("Big");
    big["x-padding"] = json!("x".repeat(70 * 1024));
    let (code, body) = h
        .put_raw("/v1/namespaces/fresh/agents/big/card", &big.to_string())
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("--max-card-size"),
        "{body}"
    );
    assert_eq!(s.node.revision(), before, "nothing written");
    let (code, _) = h.get("/v1/namespaces/fresh").await;
    assert_eq!(code, 404, "not even the namespace");
    s.stop().await;
}

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

/// Text search ranks names above descriptions, filters exactly, and pages through every hit
/// once.
async fn search_ranks_filters_and_pages(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut s = TestServer::start(&db).await;
    let corpus = [
        (
            "trips",
            cards::a2a("Travel planner", &[("plan-trip", &["travel", "itinerary"])]),
        ),
        (
            "trains",
            cards::a2a("Rail booker", &[("book-train", &["travel", "rail"])]),
        ),
        (
            "weather",
            cards::a2a("Weather", &[("forecast", &["weather"])]),
        ),
        (
            "notes",
            cards::a2a("Note taker", &[("take-notes", &["writing"])]),
        ),
    ];
    for (lid, card) in &corpus {
        s.register(with_card("search", lid, card)).await;
    }
    let base = proto::SearchAgentsRequest {
        namespace: "search".into(),
        ..Default::default()
    };
    let ranked = search(
        &mut s,
        proto::SearchAgentsRequest {
            query: "travel".into(),
            ..base.clone()
        },
    )
    .await;
    assert_eq!(names(&ranked), ["trips", "trains"], "the name weighs most");
    assert!(ranked.results[0].score > ranked.results[1].score);
    assert_eq!(ranked.results[0].matched_skills, ["plan-trip"]);
    let filtered = search(
        &mut s,
        proto::SearchAgentsRequest {
            tags: vec!["rail".into()],
            ..base.clone()
        },
    )
    .await;
    assert_eq!(names(&filtered), ["trains"]);
    let by_skill = search(
        &mut s,
        proto::SearchAgentsRequest {
            query: "travel".into(),
            skills: vec!["book-train".into()],
            ..base.clone()
        },
    )
    .await;
    assert_eq!(names(&by_skill), ["trains"]);
    assert_eq!(by_skill.results[0].matched_skills, ["book-train"]);
    let none = search(
        &mut s,
        proto::SearchAgentsRequest {
            kinds: vec![CardKind::Mcp as i32],
            ..base.clone()
        },
    )
    .await;
    assert!(none.results.is_empty());
    // Pages of one: every agent once, in logical id order.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = search(
            &mut s,
            proto::SearchAgentsRequest {
                page_size: 1,
                page_token: token.clone(),
                ..base.clone()
            },
        )
        .await;
        seen.extend(names(&page));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen, ["notes", "trains", "trips", "weather"]);
    // A token from another search is refused, naming it.
    let other = search(
        &mut s,
        proto::SearchAgentsRequest {
            page_size: 1,
            query: "travel".into(),
            ..base.clone()
        },
    )
    .await;
    let err = s
        .catalog
        .search_agents(proto::SearchAgentsRequest {
            page_token: other.next_page_token,
            ..base.clone()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("page_token"), "{}", err.message());
    // The same search over HTTP, in the proto3 JSON mapping.
    let h = Http::new(&s.http_url, None);
    let (code, body) = h
        .get("/v1/namespaces/search/agents?query=travel&tag=rail")
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["results"][0]["agent"]["logicalId"], "trains");
    assert_eq!(body["results"][0]["matchedSkills"][0], "book-train");
    let (code, body) = h.get("/v1/namespaces/search/agents?colour=red").await;
    assert_eq!(
        (code, body["code"].as_str()),
        (400, Some("INVALID_ARGUMENT"))
    );
    s.stop().await;
}

/// A card published on one replica is searchable on another within the fan-out bound.
async fn a_card_published_on_one_replica_is_searchable_on_another(backend: Backend) {
    if backend == Backend::Sqlite {
        return; // one replica per file
    }
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut a = TestServer::start_with(&db, |args| {
        args.change_poll_interval = Duration::from_millis(50);
    })
    .await;
    let mut b = TestServer::start_with(&db, |args| {
        args.change_poll_interval = Duration::from_millis(50);
    })
    .await;
    a.register(with_card("fan", "agent", &cards::simple("Fanned out")))
        .await;
    let r = proto::SearchAgentsRequest {
        namespace: "fan".into(),
        query: "fanned".into(),
        ..Default::default()
    };
    let catalog = b.catalog.clone();
    eventually("replica B finds the card", || {
        let (mut c, r) = (catalog.clone(), r.clone());
        async move {
            c.search_agents(r)
                .await
                .is_ok_and(|p| p.into_inner().results.len() == 1)
        }
    })
    .await;
    assert_eq!(names(&search(&mut b, r).await), ["agent"]);
    a.stop().await;
    b.stop().await;
}

on_both_backends!(
    a_card_arrives_with_its_registration_then_by_digest,
    an_invalid_card_is_named_by_path_and_writes_nothing,
    a_card_is_served_only_while_an_instance_is_live,
    the_active_instance_card_is_current_during_a_rollout,
    unserved_versions_are_collected_with_dead_instances,
    the_active_agent_view_agrees_with_get_agent,
    search_ranks_filters_and_pages,
    a_card_published_on_one_replica_is_searchable_on_another,
);

mod lapsing {
    use super::*;

    /// On the paused clock: an agent leaves live search, and its well-known answer, when its last
    /// lease lapses; it comes back when an instance registers again.
    async fn a_card_leaves_live_search_when_its_last_lease_lapses(backend: Backend) {
        use agent_registry_core::domain::RegisterInput;
        use agent_registry_core::domain::card::CardInput;
        use agent_registry_core::liveness::LivenessConfig;
        use agent_registry_core::registry::AgentQuery;

        let Some((_db, node)) =
            crate::support::node::Node::paused(backend, LivenessConfig::default()).await
        else {
            return;
        };
        let card = CardInput {
            kind: "a2a".into(),
            json: cards::simple("Lapsing").to_string().into_bytes(),
        };
        let register = |card: Option<CardInput>, digest: String| {
            let registry = node.registry.clone();
            crate::support::node::settle(async move {
                let input = RegisterInput {
                    namespace: "lapse".into(),
                    logical_id: "agent".into(),
                    ready: true,
                    lease_ttl: Some(Ok(Duration::from_secs(6))),
                    card,
                    card_digest: digest,
                    ..Default::default()
                };
                registry.register(input).await.expect("register")
            })
        };
        let first = register(Some(card), String::new()).await;
        let live = || {
            let q = AgentQuery {
                namespace: "lapse".into(),
                ..Default::default()
            };
            node.registry.search_agents(q).unwrap().hits.len()
        };
        let agent = node.agent(&first, Duration::from_secs(2));
        node.advance(Duration::from_secs(10)).await;
        assert_eq!(live(), 1, "beating: found");
        assert!(node.registry.agent("lapse", "agent").unwrap().is_live());
        agent.abort();
        node.eventually("the lease lapses", Duration::from_secs(30), || live() == 0)
            .await;
        let offline = node.registry.agent("lapse", "agent").unwrap();
        assert!(!offline.is_live(), "shown, never as reachable");
        assert_eq!(offline.card.digest, first.card_digest);
        let again = register(None, first.card_digest.clone()).await;
        assert_eq!(again.card_digest, first.card_digest);
        assert_eq!(live(), 1, "back with a new instance");
        node.stop().await;
    }

    crate::on_both_backends!(paused: a_card_leaves_live_search_when_its_last_lease_lapses);
}
