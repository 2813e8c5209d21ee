//! The limits of SPEC §9 against a running server: each breach is RESOURCE_EXHAUSTED naming
//! its flag, nothing is written, and the server goes on serving.

use agent_registry::proto::{
    self, DiscoverView, discovery_service_client::DiscoveryServiceClient,
    registry_service_client::RegistryServiceClient,
};
use agent_registry::security::Role;
use tonic::Code;
use tonic::transport::Channel;

use crate::security::{as_caller, token, write_tokens};
use crate::support::{Backend, TestDb, TestServer, reg, view};
use crate::watch::watch_req;

fn exhausted(status: &tonic::Status, flag: &str) {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains(flag),
        "{} names {flag}",
        status.message()
    );
}

async fn channel(server: &TestServer) -> Channel {
    Channel::from_shared(server.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_refused_and_nothing_is_written() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let mut s = TestServer::start_with(&db, |a| a.max_message_size = 1024).await;
    let mut big = reg("lim", "big");
    // Valid for the registry (under its 16 KiB of labels), too long for this server.
    big.labels.insert("blob".into(), "x".repeat(2000));
    let err = s.registry.register(big).await.unwrap_err();
    exhausted(&err, "--max-message-size");
    assert!(
        s.discover_all(view("lim", DiscoverView::All))
            .await
            .is_empty()
    );

    // On a heartbeat stream the oversized message ends the stream with the same status.
    let id = s.register(reg("lim", "small")).await.instance_id;
    let (tx, mut replies) = s.open_stream().await;
    let mut beat = proto::HeartbeatRequest {
        instance_id: id.clone(),
        sequence: 1,
        ..Default::default()
    };
    tx.send(beat.clone()).await.unwrap();
    assert_eq!(replies.message().await.unwrap().unwrap().sequence, 1);
    beat.instance_id = "y".repeat(4096);
    tx.send(beat).await.unwrap();
    let err = replies.message().await.unwrap_err();
    exhausted(&err, "--max-message-size");
    // A normal call still works.
    s.register(reg("lim", "after")).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_metadata_is_refused() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let mut s = TestServer::start_with(&db, |a| a.max_metadata_size = 1024).await;
    let mut req = tonic::Request::new(reg("lim", "meta"));
    req.metadata_mut()
        .insert("x-padding", "p".repeat(2048).parse().unwrap());
    let err = s.registry.register(req).await.unwrap_err();
    exhausted(&err, "--max-metadata-size");
    assert!(
        s.discover_all(view("lim", DiscoverView::All))
            .await
            .is_empty()
    );
    s.register(reg("lim", "plain")).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_per_connection_are_bounded() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let s = TestServer::start_with(&db, |a| a.max_streams_per_connection = 2).await;
    let one = channel(&s).await;
    let mut d = DiscoveryServiceClient::new(one.clone());
    let w1 = d.watch(watch_req("lim", 0)).await.unwrap().into_inner();
    let w2 = d.watch(watch_req("lim", 0)).await.unwrap().into_inner();
    let err = d
        .discover(view("lim", DiscoverView::All))
        .await
        .unwrap_err();
    exhausted(&err, "--max-streams-per-connection");
    // Another connection is not affected; the first recovers when a stream ends.
    let mut other = DiscoveryServiceClient::new(channel(&s).await);
    other
        .discover(view("lim", DiscoverView::All))
        .await
        .unwrap();
    drop(w1);
    crate::support::eventually("a slot is free again", || {
        let mut d = d.clone();
        async move { d.discover(view("lim", DiscoverView::All)).await.is_ok() }
    })
    .await;
    drop(w2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_streams_per_replica_are_bounded() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let s = TestServer::start_with(&db, |a| a.max_open_streams = 2).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut d = DiscoveryServiceClient::new(channel(&s).await);
        held.push(d.watch(watch_req("lim", 0)).await.unwrap().into_inner());
    }
    let mut r = RegistryServiceClient::new(channel(&s).await);
    let (_tx, rx) = tokio::sync::mpsc::channel::<proto::HeartbeatRequest>(1);
    let err = r
        .heartbeat(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap_err();
    exhausted(&err, "--max-open-streams");
    // Unary calls are not streams: they still pass.
    r.register(reg("lim", "unary")).await.unwrap();
    drop(held);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_per_connection_are_bounded() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let s = TestServer::start_with(&db, |a| a.max_watches_per_connection = 2).await;
    let one = channel(&s).await;
    let mut d = DiscoveryServiceClient::new(one.clone());
    let w1 = d.watch(watch_req("lim", 0)).await.unwrap().into_inner();
    let _w2 = d.watch(watch_req("lim", 0)).await.unwrap().into_inner();
    let err = d.watch(watch_req("lim", 0)).await.unwrap_err();
    exhausted(&err, "--max-watches-per-connection");
    // Other calls on the connection, and watches on another, are not affected.
    d.discover(view("lim", DiscoverView::All)).await.unwrap();
    let mut other = DiscoveryServiceClient::new(channel(&s).await);
    other.watch(watch_req("lim", 0)).await.unwrap();
    drop(w1);
    crate::support::eventually("a watch slot is free again", || {
        let mut d = d.clone();
        async move { d.watch(watch_req("lim", 0)).await.is_ok() }
    })
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_second_are_limited_per_token() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.toml");
    let (busy, calm) = (
        token("busy", Role::Reader, &["*"]),
        token("calm", Role::Reader, &["*"]),
    );
    write_tokens(&path, &[&busy, &calm]);
    let s = TestServer::start_with(&db, |a| {
        a.auth_tokens_file = Some(path.clone());
        a.max_requests_per_second = 3;
    })
    .await;
    let mut c = as_caller(&s.url, Some(&busy.secret));
    let mut codes = Vec::new();
    for _ in 0..10 {
        let r = c.discovery.discover(view("lim", DiscoverView::All)).await;
        codes.push(r.err().map_or(Code::Ok, |e| {
            exhausted(&e, "--max-requests-per-second");
            e.code()
        }));
    }
    assert_eq!(&codes[..3], [Code::Ok; 3], "a full bucket admits its burst");
    assert!(codes.contains(&Code::ResourceExhausted), "{codes:?}");
    // Another token has its own bucket.
    let mut other = as_caller(&s.url, Some(&calm.secret));
    other
        .discovery
        .discover(view("lim", DiscoverView::All))
        .await
        .expect("another caller is not limited by the first");
    s.stop().await;
}
