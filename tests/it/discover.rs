//! Discover: each view, each filter, the ACTIVE choice rule, AIP-158 paging.

use std::collections::BTreeSet;

use agent_registry::proto::{self, DiscoverView};

use crate::on_both_backends;
use crate::support::{Backend, TestDb, TestServer, ids, lease, reg, view};

fn described(
    lid: &str,
    agent_type: &str,
    caps: &[&str],
    labels: &[(&str, &str)],
) -> proto::RegisterRequest {
    proto::RegisterRequest {
        agent_type: agent_type.into(),
        capabilities: caps.iter().map(|c| c.to_string()).collect(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..reg("search", lid)
    }
}

async fn each_filter_narrows_the_result(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut s = TestServer::start(&db).await;
    let planner = s
        .register(described(
            "planner",
            "llm",
            &["plan", "chat"],
            &[("zone", "a"), ("tier", "gold")],
        ))
        .await;
    let coder = s
        .register(described("coder", "llm", &["code"], &[("zone", "b")]))
        .await;
    let vision = s
        .register(described(
            "vision/agent-7",
            "cv",
            &["see", "chat"],
            &[("zone", "a")],
        ))
        .await;
    let elsewhere = s.register(reg("other", "planner")).await;

    let all = |f: fn(&mut proto::DiscoverRequest)| {
        let mut r = view("search", DiscoverView::All);
        f(&mut r);
        r
    };
    for (req, want) in [
        (all(|_| {}), vec![&planner, &coder, &vision]),
        (
            all(|r| r.logical_ids = vec!["planner".into(), "vision/agent-7".into()]),
            vec![&planner, &vision],
        ),
        (all(|r| r.agent_type = "llm".into()), vec![&planner, &coder]),
        (
            all(|r| r.capabilities = vec!["chat".into()]),
            vec![&planner, &vision],
        ),
        (
            all(|r| r.capabilities = vec!["chat".into(), "plan".into()]),
            vec![&planner],
        ),
        (
            all(|r| {
                r.label_selector.insert("zone".into(), "a".into());
            }),
            vec![&planner, &vision],
        ),
        (
            all(|r| {
                r.label_selector.insert("zone".into(), "a".into());
                r.label_selector.insert("tier".into(), "gold".into());
            }),
            vec![&planner],
        ),
        (
            all(|r| {
                r.label_selector.insert("zone".into(), "c".into());
            }),
            vec![],
        ),
        (all(|r| r.namespace = "other".into()), vec![&elsewhere]),
        (all(|r| r.namespace = "never-created".into()), vec![]),
    ] {
        let got = s.discover_all(req.clone()).await;
        let want: Vec<_> = want.into_iter().cloned().collect();
        assert_eq!(ids(&got), ids(&want), "{req:?}");
    }
    s.stop().await;
}

async fn views_and_the_active_choice_rule(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut s = TestServer::start(&db).await;
    // Registered in this order, so `senior` has the oldest started_at.
    let senior = s.register(reg("v", "api")).await;
    let junior = s.register(reg("v", "api")).await;
    let starting = s
        .register(proto::RegisterRequest {
            ready: false,
            ..reg("v", "api")
        })
        .await;
    let solo = s.register(reg("v", "db")).await;
    let warming = s
        .register(proto::RegisterRequest {
            ready: false,
            ..reg("v", "cache")
        })
        .await;

    let active = s.discover_all(view("v", DiscoverView::Active)).await;
    assert_eq!(
        ids(&active),
        ids(&[senior.clone(), solo.clone()]),
        "one per logical id, most senior"
    );
    let unspecified = s.discover_all(view("v", DiscoverView::Unspecified)).await;
    assert_eq!(
        ids(&unspecified),
        ids(&active),
        "ACTIVE is the default view"
    );
    let live = s.discover_all(view("v", DiscoverView::Live)).await;
    assert_eq!(
        ids(&live),
        ids(&[senior.clone(), junior.clone(), solo.clone()])
    );
    let all = s.discover_all(view("v", DiscoverView::All)).await;
    assert_eq!(
        ids(&all),
        ids(&[
            senior.clone(),
            junior.clone(),
            starting,
            solo.clone(),
            warming
        ])
    );

    // Stable: a newer registration does not take over; draining the incumbent hands over.
    s.register(reg("v", "api")).await;
    let active = s.discover_all(view("v", DiscoverView::Active)).await;
    assert!(active.iter().any(|i| i.instance_id == senior.instance_id));
    let req = proto::DrainInstanceRequest {
        instance_id: senior.instance_id.clone(),
        reason: String::new(),
    };
    s.admin.drain_instance(req).await.unwrap();
    let active = s.discover_all(view("v", DiscoverView::Active)).await;
    assert_eq!(ids(&active), ids(&[junior, solo]));
    s.stop().await;
}

async fn paging_visits_every_instance_once(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut s = TestServer::start(&db).await;
    let mut registered = Vec::new();
    // Nothing beats for them: leases longer than the test keep them all LIVE.
    for n in 0..150 {
        let req = proto::RegisterRequest {
            lease_ttl: lease(600),
            ..reg("pages", &format!("lid-{:02}", n % 40))
        };
        registered.push(s.register(req).await);
    }
    for (v, expected) in [
        (DiscoverView::All, 150),
        (DiscoverView::Live, 150),
        (DiscoverView::Active, 40),
    ] {
        let mut req = proto::DiscoverRequest {
            page_size: 7,
            ..view("pages", v)
        };
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let page = s
                .discovery
                .discover(req.clone())
                .await
                .unwrap()
                .into_inner();
            assert!(page.instances.len() <= 7);
            seen.extend(page.instances.into_iter().map(|i| i.instance_id));
            pages += 1;
            // Writes between pages must not cause duplicates or skips of older entries.
            if pages == 3 {
                s.register(reg("pages", "zzz-late")).await;
            }
            if page.next_page_token.is_empty() {
                break;
            }
            req.page_token = page.next_page_token;
        }
        let unique: BTreeSet<_> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "{v:?}: no duplicates");
        let originals: BTreeSet<_> = registered.iter().map(|i| &i.instance_id).collect();
        let covered = match v {
            DiscoverView::Active => unique.len() >= expected,
            _ => originals.is_subset(&unique.iter().copied().collect()),
        };
        assert!(
            covered,
            "{v:?}: every instance registered before paging was visited"
        );
    }

    // 0 means the default page of 100.
    let page = s
        .discovery
        .discover(view("pages", DiscoverView::All))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.instances.len(), 100);
    assert!(!page.next_page_token.is_empty());
    s.stop().await;
}

async fn namespaces_are_listed_in_pages(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut s = TestServer::start(&db).await;
    for n in 0..12 {
        s.register(reg(&format!("ns-{n:02}"), "a")).await;
    }
    let mut req = proto::ListNamespacesRequest {
        page_size: 5,
        page_token: String::new(),
    };
    let mut names = Vec::new();
    loop {
        let page = s
            .admin
            .list_namespaces(req.clone())
            .await
            .unwrap()
            .into_inner();
        assert!(page.namespaces.len() <= 5);
        names.extend(page.namespaces.into_iter().map(|n| n.name));
        if page.next_page_token.is_empty() {
            break;
        }
        req.page_token = page.next_page_token;
    }
    let want: Vec<_> = (0..12).map(|n| format!("ns-{n:02}")).collect();
    assert_eq!(names, want);
    s.stop().await;
}

on_both_backends!(
    each_filter_narrows_the_result,
    views_and_the_active_choice_rule,
    paging_visits_every_instance_once,
    namespaces_are_listed_in_pages,
);
