//! Search over cards: ranking, exact filters and paging; another replica finds a card
//! published on the first; a card change reaches watchers at once.

use std::time::Duration;

use agent_registry::proto::{self, CardKind};
use tonic::Code;

use super::{names, search, with_card};
use crate::on_both_backends;
use crate::support::{Backend, Http, TestDb, TestServer, cards, eventually};

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

/// Publishing a card changes no instance, yet watchers of its namespace hear of it at once: a
/// bookmark at its revision (the periodic ones are an hour apart here). Another namespace's
/// card wakes nobody.
async fn a_published_card_reaches_watchers_as_a_bookmark(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut s = TestServer::start_with(&db, |args| {
        args.watch_bookmark_interval = Duration::from_secs(3600);
    })
    .await;
    let req = proto::WatchRequest {
        namespace: "heard".into(),
        ..Default::default()
    };
    let mut w = s.discovery.watch(req).await.unwrap().into_inner();
    let first = crate::watch::next(&mut w).await;
    assert!(first.events.is_empty(), "the empty snapshot's bookmark");
    let publish = |ns: &str| proto::PublishCardRequest {
        namespace: ns.into(),
        logical_id: "agent".into(),
        card: Some(cards::proto_card(&cards::simple("Heard"))),
    };
    s.catalog.publish_card(publish("elsewhere")).await.unwrap();
    let published = s.catalog.publish_card(publish("heard")).await.unwrap();
    let revision = published.into_inner().agent.unwrap().revision;
    let heard = crate::watch::next(&mut w).await;
    assert!(heard.events.is_empty());
    assert_eq!(
        heard.bookmark_revision, revision,
        "a bookmark at the card's revision, not at the other namespace's"
    );
    s.stop().await;
}

on_both_backends!(
    search_ranks_filters_and_pages,
    a_card_published_on_one_replica_is_searchable_on_another,
    a_published_card_reaches_watchers_as_a_bookmark,
);
