//! Watch: snapshot then live, resume from a revision (from memory and from the change log),
//! PUT/DELETE as instances enter and leave the filter, the compaction horizon, a slow watcher,
//! bookmarks on tokio's paused clock.

use std::time::Duration;

use agent_registry::proto::{self, watch_event::Type};
use agent_registry_core::domain::{InstanceFilter, InstanceStatus};
use agent_registry_core::liveness::LivenessConfig;
use agent_registry_core::registry::{Output, Watcher};
use tonic::Code;

use crate::support::node::{Node, settle};
use crate::support::{Backend, TestDb, TestServer, reg};

/// (type, instance id, status, revision) of one event: what a watcher's sequence is compared by.
pub type Seen = (Type, String, i32, i64);

pub fn seen(e: &proto::WatchEvent) -> Seen {
    let i = e.instance.as_ref().expect("event instance");
    (e.r#type(), i.instance_id.clone(), i.status, e.revision)
}

pub fn watch_req(namespace: &str, start_revision: i64) -> proto::WatchRequest {
    proto::WatchRequest {
        namespace: namespace.into(),
        start_revision,
        ..Default::default()
    }
}

/// The next message, failing the test if none comes within 10 s.
pub async fn next(stream: &mut tonic::Streaming<proto::WatchResponse>) -> proto::WatchResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a watch message within 10 s")
        .expect("watch stream healthy")
        .expect("watch stream open")
}

/// Events (bookmarks skipped) until `count` have arrived; fails if they take over 15 s.
pub async fn events(
    stream: &mut tonic::Streaming<proto::WatchResponse>,
    count: usize,
) -> Vec<Seen> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while out.len() < count {
        let m = tokio::time::timeout_at(deadline, next(stream)).await;
        let m = m.unwrap_or_else(|_| panic!("{count} events expected, got {}: {out:?}", out.len()));
        out.extend(m.events.iter().map(seen));
    }
    assert_eq!(out.len(), count, "no more events than expected: {out:?}");
    out
}

/// Opens a Watch on `s` and returns its stream.
pub async fn open(
    s: &mut TestServer,
    req: proto::WatchRequest,
) -> tonic::Streaming<proto::WatchResponse> {
    s.discovery
        .watch(req)
        .await
        .expect("watch opens")
        .into_inner()
}

async fn deregister(s: &mut TestServer, id: &str) {
    let req = proto::DeregisterRequest {
        instance_id: id.into(),
        reason: "test".into(),
    };
    s.registry.deregister(req).await.expect("deregister");
}

async fn drain(s: &mut TestServer, id: &str) {
    let req = proto::DrainInstanceRequest {
        instance_id: id.into(),
        reason: "test".into(),
    };
    s.admin.drain_instance(req).await.expect("drain");
}

const ALIVE: i32 = proto::InstanceStatus::Alive as i32;
const DRAINING: i32 = proto::InstanceStatus::Draining as i32;
const DEAD: i32 = proto::InstanceStatus::Dead as i32;

async fn snapshot_then_bookmark_then_live_changes(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut s = TestServer::start(&db).await;
    let a = s.register(reg("w", "a")).await;
    let b = s.register(reg("w", "b")).await;
    s.register(reg("elsewhere", "x")).await;
    let listed = s
        .discovery
        .discover(crate::support::view("w", proto::DiscoverView::All))
        .await
        .unwrap()
        .into_inner();

    let mut w = open(&mut s, watch_req("w", 0)).await;
    let snapshot = next(&mut w).await;
    let mut got: Vec<_> = snapshot.events.iter().map(seen).collect();
    got.sort_by_key(|e| e.3);
    assert_eq!(
        got,
        vec![
            (Type::Put, a.instance_id.clone(), ALIVE, a.revision),
            (Type::Put, b.instance_id.clone(), ALIVE, b.revision),
        ]
    );
    let bookmark = next(&mut w).await;
    assert!(bookmark.events.is_empty());
    assert_eq!(bookmark.bookmark_revision, listed.revision);

    let c = s.register(reg("w", "c")).await;
    drain(&mut s, &a.instance_id).await;
    deregister(&mut s, &b.instance_id).await;
    let live = events(&mut w, 3).await;
    assert_eq!(
        live[0],
        (Type::Put, c.instance_id.clone(), ALIVE, c.revision)
    );
    assert_eq!(live[1].0, Type::Put);
    assert_eq!(
        (live[1].1.as_str(), live[1].2),
        (a.instance_id.as_str(), DRAINING)
    );
    assert_eq!(live[2].0, Type::Delete);
    assert_eq!(
        (live[2].1.as_str(), live[2].2),
        (b.instance_id.as_str(), DEAD)
    );
    assert!(
        live[0].3 < live[1].3 && live[1].3 < live[2].3,
        "in revision order"
    );
    s.stop().await;
}

/// Every change after R, including a row's intermediate states, then live changes.
async fn resume_replays_every_change(s: &mut TestServer) {
    let a = s.register(reg("r", "a")).await;
    let start = a.revision;
    let b = s.register(reg("r", "b")).await;
    drain(s, &b.instance_id).await;
    deregister(s, &b.instance_id).await;
    deregister(s, &a.instance_id).await;

    let mut w = open(s, watch_req("r", start)).await;
    let got = events(&mut w, 4).await;
    let kinds: Vec<_> = got.iter().map(|e| (e.0, e.1.clone(), e.2)).collect();
    assert_eq!(
        kinds,
        vec![
            (Type::Put, b.instance_id.clone(), ALIVE),
            (Type::Put, b.instance_id.clone(), DRAINING),
            (Type::Delete, b.instance_id.clone(), DEAD),
            (Type::Delete, a.instance_id.clone(), DEAD),
        ]
    );
    assert!(
        got.windows(2).all(|p| p[0].3 < p[1].3),
        "strictly increasing revisions"
    );
    assert_eq!(got[0].3, b.revision);
    // Then live.
    let c = s.register(reg("r", "c")).await;
    assert_eq!(
        events(&mut w, 1).await,
        vec![(Type::Put, c.instance_id, ALIVE, c.revision)]
    );
}

async fn resume_from_memory(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut s = TestServer::start(&db).await;
    resume_replays_every_change(&mut s).await;
    s.stop().await;
}

/// With a history of one change, a resume must come from the store's change log.
async fn resume_from_the_change_log(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut s = TestServer::start_with(&db, |a| a.watch_history = 1).await;
    resume_replays_every_change(&mut s).await;
    s.stop().await;
}

async fn filter_enter_and_leave(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut s = TestServer::start(&db).await;
    let mut req = watch_req("f", 0);
    req.label_selector.insert("tier".into(), "gold".into());
    req.capabilities.push("plan".into());
    let mut w = open(&mut s, req).await;
    assert_eq!(
        next(&mut w).await.bookmark_revision,
        0,
        "empty snapshot, then its bookmark"
    );

    let mut gold = reg("f", "gold");
    gold.labels.insert("tier".into(), "gold".into());
    gold.capabilities = vec!["plan".into(), "act".into()];
    let mut silver = gold.clone();
    silver.logical_id = "silver".into();
    silver.labels.insert("tier".into(), "silver".into());
    let mut no_cap = gold.clone();
    no_cap.logical_id = "no-cap".into();
    no_cap.capabilities = vec!["act".into()];
    let mut other_ns = gold.clone();
    other_ns.namespace = "g".into();

    let g = s.register(gold).await;
    for r in [silver, no_cap, other_ns] {
        s.register(r).await;
    }
    // Enters the filter: PUT.
    assert_eq!(
        events(&mut w, 1).await,
        vec![(Type::Put, g.instance_id.clone(), ALIVE, g.revision)]
    );
    // Leaves it by dying (an epoch advance fences it): DELETE.
    let advanced = s
        .admin
        .advance_epoch(proto::AdvanceEpochRequest {
            namespace: "f".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(advanced.fenced_instances, 3);
    let gone = events(&mut w, 1).await;
    assert_eq!(
        (gone[0].0, gone[0].1.as_str(), gone[0].2),
        (Type::Delete, g.instance_id.as_str(), DEAD)
    );
    s.stop().await;
}

async fn compaction_horizon_and_retention(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    // Keep next to nothing (the least the poll interval allows): whatever changed a moment
    // before a collection is collected.
    let mut s = TestServer::start_with(&db, |a| {
        a.change_poll_interval = Duration::from_millis(10);
        a.dead_retention = Duration::from_millis(100);
    })
    .await;
    let a = s.register(reg("c", "a")).await;
    let b = s.register(reg("c", "b")).await;
    deregister(&mut s, &a.instance_id).await;
    // Ages are measured by the store's clock.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let done = collect_now(&s).await;
    assert!(
        done.horizon >= a.revision,
        "the horizon covers the collected changes"
    );

    // The dead row went from the store and from the index; the live one stayed.
    let sql = format!(
        "SELECT count(*) FROM registry_instance WHERE instance_id = '{}'",
        a.instance_id
    );
    assert_eq!(db.query_i64(&sql).await, 0);
    let missing = s
        .discovery
        .get_instance(proto::GetInstanceRequest {
            instance_id: a.instance_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let all = s
        .discover_all(crate::support::view("c", proto::DiscoverView::All))
        .await;
    assert_eq!(crate::support::ids(&all), vec![b.instance_id.clone()]);

    // Below the horizon: OUT_OF_RANGE, naming the way out.
    let err = s.discovery.watch(watch_req("c", 1)).await.unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    assert!(err.message().contains("re-list"), "{}", err.message());
    // At the horizon: fine, and the snapshot (0) always is.
    let mut w = open(&mut s, watch_req("c", done.horizon)).await;
    let c = s.register(reg("c", "c")).await;
    assert_eq!(
        events(&mut w, 1).await,
        vec![(Type::Put, c.instance_id, ALIVE, c.revision)]
    );
    s.stop().await;
}

async fn collect_now(s: &TestServer) -> agent_registry_core::storage::Compacted {
    s.node.retention().collect_once().await.expect("collect")
}

async fn bad_requests_are_refused(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut s = TestServer::start(&db).await;
    let err = s.discovery.watch(watch_req("v", -1)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("start_revision"),
        "{}",
        err.message()
    );
    let err = s
        .discovery
        .watch(watch_req("Not A Namespace", 0))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("namespace"), "{}", err.message());
    let err = s.discovery.watch(watch_req("v", 1_000)).await.unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange);
    assert!(err.message().contains("ahead"), "{}", err.message());
    s.stop().await;
}

/// A watcher that does not read is cut off once it is `buffer` changes behind — the server
/// holds no more for it — and resuming from the revision it was told picks up exactly the rest.
async fn slow_watcher_is_cut_off_and_resumes(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut s = TestServer::start_with(&db, |a| a.watch_buffer = 8).await;
    let filter = InstanceFilter {
        namespace: "slow".into(),
        ..Default::default()
    };
    let mut w = Watcher::start(&s.node, filter.clone(), 0)
        .await
        .expect("watch");
    assert_eq!(w.next().await.unwrap(), Output::Bookmark(0));
    let first = s.register(reg("slow", "first")).await;
    let Output::Events(rows) = w.next().await.unwrap() else {
        panic!("the first registration");
    };
    assert_eq!(rows[0].instance_id.to_string(), first.instance_id);
    // Now it stops reading while 20 changes happen.
    let mut registered = Vec::new();
    for n in 0..20 {
        registered.push(s.register(reg("slow", &format!("a{n}"))).await);
    }
    let err = w.next().await.expect_err("cut off");
    let status = agent_registry::api::status::registry(err);
    assert_eq!(status.code(), Code::ResourceExhausted);
    let resume = format!("resume from revision {}", first.revision);
    assert!(status.message().contains(&resume), "{}", status.message());
    assert_eq!(w.position(), first.revision);

    let mut again = Watcher::start(&s.node, filter, w.position())
        .await
        .expect("resume");
    let Output::Events(rows) = again.next().await.unwrap() else {
        panic!("events expected");
    };
    let got: Vec<_> = rows.iter().map(|r| r.instance_id.to_string()).collect();
    let want: Vec<_> = registered.iter().map(|i| i.instance_id.clone()).collect();
    assert_eq!(got, want);
    s.stop().await;
}

crate::on_both_backends!(
    snapshot_then_bookmark_then_live_changes,
    resume_from_memory,
    resume_from_the_change_log,
    filter_enter_and_leave,
    compaction_horizon_and_retention,
    bad_requests_are_refused,
    slow_watcher_is_cut_off_and_resumes,
);

/// On tokio's paused clock (a current-thread runtime of their own).
mod paused {
    use super::*;

    /// Bookmarks come every interval (10 s by default) and carry the revision reached.
    async fn periodic_bookmarks(backend: Backend) {
        let Some((_db, node)) = Node::paused(backend, LivenessConfig::default()).await else {
            return;
        };
        let registry = node.registry.clone();
        let filter = InstanceFilter {
            namespace: "bm".into(),
            ..Default::default()
        };
        let mut w =
            settle(async move { Watcher::start(&registry, filter, 0).await.unwrap() }).await;
        assert_eq!(w.next().await.unwrap(), Output::Bookmark(0));

        let started = tokio::time::Instant::now();
        let i = node.register("bm", "a").await;
        let _beats = node.agent(&i, Duration::from_secs(5));
        let Output::Events(rows) = w.next().await.unwrap() else {
            panic!("the registration")
        };
        assert_eq!(rows[0].instance_id, i.instance_id);
        assert_eq!(rows[0].status, InstanceStatus::Alive);

        // Nothing changes: the next message is a bookmark, one interval after the stream opened.
        let waiting = tokio::spawn(async move { (w.next().await, w) });
        node.advance(Duration::from_secs(9)).await;
        assert!(!waiting.is_finished(), "no bookmark before the interval");
        node.advance(Duration::from_secs(2)).await;
        let (out, mut w) = waiting.await.unwrap();
        assert_eq!(out.unwrap(), Output::Bookmark(i.revision));
        assert!(started.elapsed() >= Duration::from_secs(10));

        let other = node.register("elsewhere", "b").await;
        let waiting = tokio::spawn(async move { w.next().await });
        node.advance(Duration::from_secs(11)).await;
        // A change outside the filter still moves the bookmark.
        assert_eq!(
            waiting.await.unwrap().unwrap(),
            Output::Bookmark(other.revision)
        );
        node.stop().await;
    }

    crate::on_both_backends!(paused: periodic_bookmarks);
}
