//! On the paused clock: an agent's card follows its leases, in search and at the well-known
//! path (the HTTP routes served in-process over the paused-clock node's registry).

use std::sync::Arc;
use std::time::Duration;

use agent_registry::security::{Access, AccessLimits};
use agent_registry::web::{HttpApi, router};
use http_body_util::BodyExt;
use tower_service::Service;

use crate::support::{Backend, cards};

/// `GET path` through the HTTP routes: the status and the body.
async fn get(api: &Arc<HttpApi>, path: &str) -> (u16, Vec<u8>) {
    let mut routes = router(api.clone());
    let req = http::Request::get(path)
        .body(axum::body::Body::empty())
        .unwrap();
    std::future::poll_fn(|cx| {
        Service::<http::Request<axum::body::Body>>::poll_ready(&mut routes, cx)
    })
    .await
    .unwrap();
    let res = routes.call(req).await.unwrap();
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
    (status, body)
}

/// An agent leaves live search, and its well-known path answers 503, when its last lease
/// lapses; it comes back when an instance registers again.
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
    let json = card.json.clone();
    let first = register(Some(card), String::new()).await;
    let api = Arc::new(HttpApi {
        registry: node.registry.clone(),
        access: Arc::new(Access::new(None, AccessLimits::default())),
        redis: None,
    });
    let well_known = "/a2a/lapse/agent/.well-known/agent-card.json";
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
    assert_eq!(
        get(&api, well_known).await,
        (200, json.clone()),
        "byte for byte"
    );
    assert!(node.registry.agent("lapse", "agent").unwrap().is_live());
    agent.abort();
    node.eventually("the lease lapses", Duration::from_secs(30), || live() == 0)
        .await;
    let offline = node.registry.agent("lapse", "agent").unwrap();
    assert!(!offline.is_live(), "shown, never as reachable");
    assert_eq!(offline.card.digest, first.card_digest);
    assert_eq!(get(&api, well_known).await.0, 503, "nothing live serves it");
    let again = register(None, first.card_digest.clone()).await;
    assert_eq!(again.card_digest, first.card_digest);
    assert_eq!(live(), 1, "back with a new instance");
    assert_eq!(get(&api, well_known).await, (200, json), "served again");
    node.stop().await;
}

crate::on_both_backends!(paused: a_card_leaves_live_search_when_its_last_lease_lapses);
