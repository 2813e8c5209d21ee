//! The client library's keeper against a real server: resume across a restart, register anew
//! on REREGISTER, deregister on shutdown.

use std::time::Duration;

use agent_registry::proto::{self, InstanceStatus};
use agent_registry_client::Client;
use agent_registry_client::backoff::Backoff;
use agent_registry_client::cache::{CacheView, WatchCache};
use agent_registry_client::keeper::{AgentState, Keeper};
use tokio::sync::watch;

use crate::support::{Backend, TestDb, TestServer, lease, reg};

/// Waits (up to 20 s) until the keeper's state satisfies `cond`; returns that state.
async fn until(
    state: &mut watch::Receiver<AgentState>,
    what: &str,
    cond: impl Fn(&AgentState) -> bool,
) -> AgentState {
    let waited = tokio::time::timeout(Duration::from_secs(20), async {
        state.wait_for(|s| cond(s)).await.map(|s| s.clone())
    })
    .await;
    match waited {
        Ok(s) => s.expect("keeper alive"),
        Err(_) => panic!("{what}: not within 20 s ({:?})", *state.borrow()),
    }
}

fn fast() -> Backoff {
    Backoff::new(Duration::from_millis(50), Duration::from_millis(500))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeper_resumes_its_instance_across_a_server_restart() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let first = TestServer::start(&db).await;
    let listen: std::net::SocketAddr = first.url.trim_start_matches("http://").parse().unwrap();
    let client = Client::connect(&first.url).unwrap();
    let mut req = reg("keep", "agent");
    req.lease_ttl = lease(3);
    let keeper = Keeper::spawn(client, req, fast());
    let mut state = keeper.state();
    let before = until(&mut state, "first acks", |s| s.connected && s.acks >= 1).await;
    let id = before.instance.clone().unwrap().instance_id;

    // The server goes away (streams end with UNAVAILABLE) and comes back on the same address.
    first.stop().await;
    until(&mut state, "disconnected", |s| !s.connected).await;
    let second = TestServer::start_with(&db, |a| a.listen = listen).await;
    let acks = state.borrow().acks;
    let after = until(&mut state, "beating again", |s| {
        s.connected && s.acks > acks + 1
    })
    .await;
    assert_eq!(
        after.instance.unwrap().instance_id,
        id,
        "same instance resumed"
    );
    assert_eq!(after.registrations, 1, "no second registration");
    keeper.shutdown().await.unwrap();
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeper_registers_anew_when_told_and_deregisters_on_shutdown() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let mut s = TestServer::start(&db).await;
    let keeper = Keeper::spawn(
        Client::connect(&s.url).unwrap(),
        reg("keep", "agent"),
        fast(),
    );
    let mut state = keeper.state();
    let first = until(&mut state, "registered", |s| s.connected).await;
    let old = first.instance.unwrap().instance_id;

    // DRAIN is followed and surfaced.
    let req = proto::DrainInstanceRequest {
        instance_id: old.clone(),
        reason: "test".into(),
    };
    s.admin.drain_instance(req).await.unwrap();
    until(&mut state, "drain seen", |s| s.drain_requested).await;
    // The agent undrains itself; the server records it.
    keeper.set_status(InstanceStatus::Alive).await;
    until(&mut state, "status ALIVE", |s| {
        s.status == Some(InstanceStatus::Alive)
    })
    .await;

    // Evicted: the server answers REREGISTER, the keeper registers a new instance.
    let req = proto::EvictInstanceRequest {
        instance_id: old.clone(),
        reason: "test".into(),
    };
    s.admin.evict_instance(req).await.unwrap();
    let renewed = until(&mut state, "registered anew", |s| {
        s.registrations == 2 && s.connected
    })
    .await;
    let new = renewed.instance.unwrap().instance_id;
    assert_ne!(new, old);

    keeper.shutdown().await.unwrap();
    let got = s
        .discovery
        .get_instance(proto::GetInstanceRequest { instance_id: new })
        .await
        .unwrap()
        .into_inner()
        .instance
        .unwrap();
    assert_eq!(got.status, InstanceStatus::Dead as i32);
    assert_eq!(got.death_reason, proto::DeathReason::Deregistered as i32);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_cache_follows_changes_and_resumes_after_a_restart() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let mut first = TestServer::start(&db).await;
    let listen: std::net::SocketAddr = first.url.trim_start_matches("http://").parse().unwrap();
    let a = first.register(reg("cache", "a")).await;
    let filter = proto::WatchRequest {
        namespace: "cache".into(),
        ..Default::default()
    };
    let cache = WatchCache::spawn(Client::connect(&first.url).unwrap(), filter, fast());
    let view = cache.view();
    let wait = |what: &'static str, cond: Box<dyn Fn(&CacheView) -> bool + Send + Sync>| {
        let mut view = view.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(20), view.wait_for(|v| cond(v)))
                .await
                .unwrap_or_else(|_| panic!("{what}: not within 20 s"))
                .unwrap()
                .clone()
        }
    };
    let v = wait("the snapshot", Box::new(|v| v.synced)).await;
    assert_eq!(
        v.instances.keys().cloned().collect::<Vec<_>>(),
        vec![a.instance_id.clone()]
    );

    let b = first.register(reg("cache", "b")).await;
    let id_b = b.instance_id.clone();
    wait(
        "b arrives",
        Box::new(move |v| v.instances.contains_key(&id_b)),
    )
    .await;

    // While the cache is disconnected, a dies and c registers; it resumes and catches up.
    first.stop().await;
    let mut second = TestServer::start_with(&db, |x| x.listen = listen).await;
    let req = proto::DeregisterRequest {
        instance_id: a.instance_id.clone(),
        reason: "test".into(),
    };
    second.registry.deregister(req).await.unwrap();
    let c = second.register(reg("cache", "c")).await;
    let (id_a, id_c) = (a.instance_id.clone(), c.instance_id.clone());
    let v = wait(
        "caught up",
        Box::new(move |v| !v.instances.contains_key(&id_a) && v.instances.contains_key(&id_c)),
    )
    .await;
    let mut ids: Vec<_> = v.instances.keys().cloned().collect();
    ids.sort();
    let mut want = vec![b.instance_id.clone(), c.instance_id.clone()];
    want.sort();
    assert_eq!(ids, want);
    assert!(v.revision >= c.revision);
    cache.stop().await;
    second.stop().await;
}

/// What a registry that records every Register saw, and answers as the real one does about
/// cards: a digest it does not hold is NOT_FOUND.
#[derive(Default)]
struct Recorded {
    seen: std::sync::Mutex<Vec<(bool, String)>>,
    held: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

#[derive(Clone, Default)]
struct Recorder(std::sync::Arc<Recorded>);

#[tonic::async_trait]
impl proto::registry_service_server::RegistryService for Recorder {
    async fn register(
        &self,
        r: tonic::Request<proto::RegisterRequest>,
    ) -> Result<tonic::Response<proto::RegisterResponse>, tonic::Status> {
        let r = r.into_inner();
        self.0
            .seen
            .lock()
            .unwrap()
            .push((r.card.is_some(), r.card_digest.clone()));
        let digest = match &r.card {
            Some(c) => agent_registry_client::card::digest(&c.json).unwrap(),
            None if self.0.held.lock().unwrap().contains(&r.card_digest) => r.card_digest.clone(),
            None => return Err(tonic::Status::not_found("card_digest")),
        };
        self.0.held.lock().unwrap().insert(digest.clone());
        Ok(tonic::Response::new(proto::RegisterResponse {
            instance: Some(proto::Instance {
                instance_id: uuid::Uuid::now_v7().to_string(),
                card_digest: digest,
                ..Default::default()
            }),
            heartbeat_interval: lease(5),
        }))
    }

    type HeartbeatStream = tokio_stream::Empty<Result<proto::HeartbeatResponse, tonic::Status>>;

    async fn heartbeat(
        &self,
        _: tonic::Request<tonic::Streaming<proto::HeartbeatRequest>>,
    ) -> Result<tonic::Response<Self::HeartbeatStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("not here"))
    }

    async fn deregister(
        &self,
        _: tonic::Request<proto::DeregisterRequest>,
    ) -> Result<tonic::Response<proto::DeregisterResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("not here"))
    }
}

/// A card is sent once: a registration names it by digest first, and sends the bytes only when
/// the registry does not hold it; the second replica of a fleet sends none.
#[tokio::test]
async fn the_client_sends_a_card_once_then_by_digest() {
    let recorder = Recorder::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = proto::registry_service_server::RegistryServiceServer::new(recorder.clone());
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let client = Client::connect(&format!("http://{addr}")).unwrap();
    let card = crate::support::cards::proto_card(&crate::support::cards::simple("Fleet"));
    let req = proto::RegisterRequest {
        card: Some(card.clone()),
        ..reg("fleet", "agent")
    };
    let first = client.register(req.clone()).await.unwrap();
    let second = client.register(req).await.unwrap();
    let digest = agent_registry_client::card::digest(&card.json).unwrap();
    assert_eq!(first.instance.card_digest, digest);
    assert_eq!(second.instance.card_digest, digest);
    let seen = recorder.0.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            (false, digest.clone()),
            (true, String::new()),
            (false, digest.clone()),
        ],
        "by digest, then the bytes once; then by digest alone"
    );
    server.abort();
}

/// A keeper keeps its agent's card served: LIVE while it holds its stream, offline once it
/// stops; a second keeper of the fleet serves the same card (that it is sent by digest is
/// `the_client_sends_a_card_once_then_by_digest`'s to show).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepers_serve_their_agents_card_while_they_run() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let s = TestServer::start(&db).await;
    let card = crate::support::cards::proto_card(&crate::support::cards::simple("Kept"));
    let req = proto::RegisterRequest {
        card: Some(card.clone()),
        ..reg("kept", "agent")
    };
    let client = Client::connect(&s.url).unwrap();
    let keepers = [
        Keeper::spawn(client.clone(), req.clone(), fast()),
        Keeper::spawn(client.clone(), req, fast()),
    ];
    for k in &keepers {
        until(&mut k.state(), "acknowledged", |s| s.acks >= 1).await;
    }
    let agent = client.agent("kept", "agent").await.unwrap();
    assert_eq!(agent.state, proto::AgentState::Live as i32);
    assert_eq!(agent.live_count, 2);
    assert_eq!(
        agent.digest,
        agent_registry_client::card::digest(&card.json).unwrap()
    );
    let found = client
        .search_agents(proto::SearchAgentsRequest {
            namespace: "kept".into(),
            query: "kept".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(found.results.len(), 1);
    for k in keepers {
        k.shutdown().await.unwrap();
    }
    let agent = client.agent("kept", "agent").await.unwrap();
    assert_eq!(agent.state, proto::AgentState::NoLiveInstances as i32);
    s.stop().await;
}
