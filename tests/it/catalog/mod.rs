//! Agent cards bound to leases (SPEC §15), on both backends: cards arrive with a registration
//! or by publishing, are validated before anything is written, are served byte for byte only
//! while an instance is live, and are searched from memory; unserved versions are collected.

use agent_registry::proto::{self, AgentState, CardKind};
use serde_json::{Value, json};
use tonic::Code;

use crate::on_both_backends;
use crate::support::{Backend, Http, TestDb, TestServer, cards, reg};

mod hydrate;
mod lapsing;
mod search;
mod serving;

pub(super) fn with_card(ns: &str, logical_id: &str, card: &Value) -> proto::RegisterRequest {
    proto::RegisterRequest {
        card: Some(cards::proto_card(card)),
        ..reg(ns, logical_id)
    }
}

pub(super) async fn get_agent(
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

pub(super) async fn search(
    s: &mut TestServer,
    r: proto::SearchAgentsRequest,
) -> proto::SearchAgentsResponse {
    s.catalog
        .search_agents(r)
        .await
        .expect("search")
        .into_inner()
}

pub(super) fn names(r: &proto::SearchAgentsResponse) -> Vec<String> {
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

on_both_backends!(
    a_card_arrives_with_its_registration_then_by_digest,
    an_invalid_card_is_named_by_path_and_writes_nothing,
);
