//! The HTTP watch as Server-Sent Events: a snapshot then live changes, resume by
//! `Last-Event-ID` with nothing missed or repeated, and a client that stops reading cut off.

use std::time::Duration;

use agent_registry::proto;
use agent_registry_core::metrics::Source as _;
use serde_json::json;

use crate::support::{Backend, Http, SseEvent, TestDb, TestServer, eventually, lease, reg};

fn instance_id(e: &SseEvent) -> String {
    e.data["instance"]["instanceId"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn sse_snapshot_live_changes_and_resume(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut srv = TestServer::start(&db).await;
    let h = Http::new(&srv.http_url, None);
    let a = srv.register(reg("sse", "a")).await;
    let b = srv.register(reg("sse", "b")).await;
    srv.register(reg("other", "x")).await;

    let mut w = h.sse("/v1/namespaces/sse/watch", None).await;
    assert_eq!(w.status, 200);
    assert!(
        w.content_type.starts_with("text/event-stream"),
        "{}",
        w.content_type
    );
    assert_eq!(w.expect().await.event, "snapshot");
    let mut listed = vec![
        instance_id(&w.expect().await),
        instance_id(&w.expect().await),
    ];
    listed.sort();
    let mut want = vec![a.instance_id.clone(), b.instance_id.clone()];
    want.sort();
    assert_eq!(listed, want);
    let bookmark = w.expect().await;
    assert_eq!(bookmark.event, "bookmark");
    let resume_at = bookmark.id.clone().expect("a bookmark is a resume point");

    // A live change arrives with its revision as the event id.
    let c = srv.register(reg("sse", "c")).await;
    let put = w.expect().await;
    assert_eq!(
        (put.event.as_str(), instance_id(&put)),
        ("put", c.instance_id.clone())
    );
    assert_eq!(put.id, Some(c.revision.to_string()));
    drop(w);

    // Changes while disconnected; a reconnect with Last-Event-ID gets exactly those, in order.
    srv.admin
        .drain_instance(proto::DrainInstanceRequest {
            instance_id: a.instance_id.clone(),
            reason: "test".into(),
        })
        .await
        .unwrap();
    srv.registry
        .deregister(proto::DeregisterRequest {
            instance_id: b.instance_id.clone(),
            reason: "test".into(),
        })
        .await
        .unwrap();
    let d = srv.register(reg("sse", "d")).await;
    let mut w = h.sse("/v1/namespaces/sse/watch", Some(&resume_at)).await;
    assert_eq!(w.status, 200);
    let mut got = Vec::new();
    while got.len() < 4 {
        let e = w.expect().await;
        if e.event != "bookmark" {
            got.push((e.event.clone(), instance_id(&e), e.id.clone().unwrap()));
        }
    }
    let want = vec![
        ("put".to_string(), c.instance_id.clone()),
        ("put".to_string(), a.instance_id.clone()),
        ("delete".to_string(), b.instance_id.clone()),
        ("put".to_string(), d.instance_id.clone()),
    ];
    let got_pairs: Vec<_> = got.iter().map(|(e, i, _)| (e.clone(), i.clone())).collect();
    assert_eq!(got_pairs, want);
    let revisions: Vec<i64> = got.iter().map(|(_, _, r)| r.parse().unwrap()).collect();
    assert!(
        revisions.windows(2).all(|w| w[0] < w[1]),
        "in order: {revisions:?}"
    );
    // Nothing more than those changes: the next change is the next event.
    let e = srv.register(reg("sse", "e")).await;
    let next = loop {
        let ev = w.expect().await;
        if ev.event != "bookmark" {
            break ev;
        }
    };
    assert_eq!(instance_id(&next), e.instance_id);

    // A revision ahead of the registry is OUT_OF_RANGE before the stream starts.
    let (code, err) = h
        .get("/v1/namespaces/sse/watch?startRevision=99999999")
        .await;
    assert_eq!(code, 400, "{err}");
    assert_eq!(err["code"], json!("OUT_OF_RANGE"));
    // Shutdown ends an open watch (within the grace), and the server stops.
    tokio::time::timeout(Duration::from_secs(20), srv.stop())
        .await
        .expect("the server stops with a watch open");
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while w.next().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the watch ended with the server");
}

/// A client that opens the watch and reads nothing is cut off once a message waits longer
/// than the stall timeout: the server releases its watcher although the socket stays open,
/// and the client, reading at last, finds RESOURCE_EXHAUSTED naming where to resume.
async fn a_slow_sse_client_is_cut_off(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut srv = TestServer::start_with(&db, |a| {
        a.watch_stall_timeout = Duration::from_millis(500);
    })
    .await;
    let h = Http::small_window(&srv.http_url);
    let first = srv.register(reg("slow", "first")).await;
    let path = format!("/v1/namespaces/slow/watch?startRevision={}", first.revision);
    let mut w = h.sse(&path, None).await;
    assert_eq!(w.status, 200);
    eventually("the watcher is open", || async {
        srv.node.readings().watchers == 1
    })
    .await;
    // Up to 12 MB of changes, far past what the sockets' buffers hold; the watcher is released
    // long before.
    let big: std::collections::HashMap<String, String> = (0..60)
        .map(|n| (format!("k{n}"), "v".repeat(240)))
        .collect();
    for n in 0..800 {
        let mut r = reg("slow", &format!("agent-{n}"));
        r.labels = big.clone();
        r.lease_ttl = lease(600);
        srv.register(r).await;
        if srv.node.readings().watchers == 0 {
            break;
        }
    }
    eventually("the unread watcher is released", || async {
        srv.node.readings().watchers == 0
    })
    .await;
    // Reading now: what was handed over, then the error, then the end.
    let mut last = None;
    while let Some(e) = tokio::time::timeout(Duration::from_secs(20), w.next())
        .await
        .expect("the stream ends")
    {
        last = Some(e);
    }
    let last = last.expect("events were sent");
    assert_eq!(last.event, "error", "{last:?}");
    assert_eq!(last.data["code"], json!("RESOURCE_EXHAUSTED"));
    assert!(
        last.data["message"]
            .as_str()
            .unwrap()
            .contains("resume from revision"),
        "{last:?}"
    );
    srv.stop().await;
}

crate::on_both_backends!(
    sse_snapshot_live_changes_and_resume,
    a_slow_sse_client_is_cut_off
);
