//! The real binary on a free port, over TCP: health, reflection, a write and a read, SIGTERM.

use std::time::Duration;

use agent_registry::proto::{
    self, DiscoverView, discovery_service_client::DiscoveryServiceClient,
    registry_service_client::RegistryServiceClient,
};
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::support::binary::spawn_binary;
use crate::support::{Backend, TestDb, reg, view};
use tokio::process::Command;

const OUR_SERVICES: [&str; 3] = [
    "agentregistry.v1.AdminService",
    "agentregistry.v1.DiscoveryService",
    "agentregistry.v1.RegistryService",
];

/// The service names one reflection version lists; the versions differ only in their module.
macro_rules! listed_services {
    ($version:ident, $channel:expr) => {{
        use tonic_reflection::pb::$version as r;
        let request = r::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(r::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            )),
        };
        let mut client = r::server_reflection_client::ServerReflectionClient::new($channel.clone());
        let reply = client
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner()
            .message()
            .await
            .unwrap()
            .unwrap();
        match reply.message_response {
            Some(r::server_reflection_response::MessageResponse::ListServicesResponse(list)) => {
                list.service
                    .into_iter()
                    .map(|s| s.name)
                    .collect::<Vec<String>>()
            }
            other => panic!("{}: unexpected reply {other:?}", stringify!($version)),
        }
    }};
}

/// Both reflection versions list every service of the contract (what `grpcurl list` shows).
async fn assert_reflection_lists_our_services(channel: &Channel) {
    for (version, names) in [
        ("v1", listed_services!(v1, channel)),
        ("v1alpha", listed_services!(v1alpha, channel)),
    ] {
        for ours in OUR_SERVICES {
            assert!(
                names.iter().any(|n| n == ours),
                "{version} lists {ours}: {names:?}"
            );
        }
    }
}

async fn serve_register_discover_and_stop(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let (mut child, addr) = spawn_binary(&db).await;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();

    let mut health = HealthClient::new(channel.clone());
    for service in [
        "",
        "agentregistry.v1.RegistryService",
        "agentregistry.v1.DiscoveryService",
    ] {
        let req = HealthCheckRequest {
            service: service.into(),
        };
        let status = health.check(req).await.unwrap().into_inner().status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }

    assert_reflection_lists_our_services(&channel).await;

    let mut registry = RegistryServiceClient::new(channel.clone());
    let mut discovery = DiscoveryServiceClient::new(channel.clone());
    let i = registry
        .register(reg("e2e", "planner"))
        .await
        .unwrap()
        .into_inner()
        .instance
        .unwrap();
    let found = discovery
        .discover(view("e2e", DiscoverView::Active))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.instances, vec![i.clone()]);
    // Watch through the binary: the snapshot as PUTs, then a bookmark at its revision.
    let mut watch = discovery
        .watch(proto::WatchRequest {
            namespace: "e2e".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().expect("snapshot");
    assert_eq!(first.events.len(), 1);
    assert_eq!(first.events[0].r#type, proto::watch_event::Type::Put as i32);
    assert_eq!(first.events[0].instance.as_ref(), Some(&i));
    let bookmark = watch.message().await.unwrap().expect("bookmark");
    assert!(bookmark.events.is_empty());
    assert_eq!(bookmark.bookmark_revision, found.revision);

    // SIGTERM: a graceful stop with exit status 0.
    let pid = child.id().expect("running").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits")
        .unwrap();
    assert!(status.success(), "exit status {status}");

    // A new process on the same database still has the instance.
    let (_child, addr) = spawn_binary(&db).await;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let req = proto::GetInstanceRequest {
        instance_id: i.instance_id.clone(),
    };
    let again = DiscoveryServiceClient::new(channel)
        .get_instance(req)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.instance, Some(i));
}

#[tokio::test]
async fn binary_on_sqlite() {
    serve_register_discover_and_stop(Backend::Sqlite).await
}

#[tokio::test]
async fn binary_on_postgres() {
    serve_register_discover_and_stop(Backend::Postgres).await
}

const STREAMS: usize = 300;

/// Hundreds of agents beating at once through the real binary; SIGTERM tells every stream,
/// flushes the leases and exits 0; a restart finds every instance with its beats recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_hundreds_of_heartbeat_streams() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let (mut child, addr) = spawn_binary(&db).await;
    let channels: Vec<Channel> = futures_util::future::join_all((0..10).map(|_| async {
        Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }))
    .await;

    let agents = (0..STREAMS).map(|n| {
        let channel = channels[n % channels.len()].clone();
        async move {
            let mut client = RegistryServiceClient::new(channel);
            let i = client
                .register(reg("fleet", &format!("agent-{n}")))
                .await
                .unwrap();
            let id = i.into_inner().instance.unwrap().instance_id;
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            let mut replies = client
                .heartbeat(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .unwrap()
                .into_inner();
            for seq in 1..=3 {
                let beat = proto::HeartbeatRequest {
                    instance_id: id.clone(),
                    sequence: seq,
                    status: 0,
                };
                tx.send(beat).await.unwrap();
                let ack = replies.message().await.unwrap().expect("ack");
                assert_eq!(ack.sequence, seq);
            }
            (tx, replies)
        }
    });
    let mut open = futures_util::future::join_all(agents).await;

    let mut admin = proto::admin_service_client::AdminServiceClient::new(channels[0].clone());
    let ns = admin
        .get_namespace(proto::GetNamespaceRequest {
            name: "fleet".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .namespace
        .unwrap();
    assert_eq!(
        (ns.alive_count, ns.live_count),
        (STREAMS as i64, STREAMS as i64)
    );

    let pid = child.id().expect("running").to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap()
            .success()
    );
    for (_tx, replies) in &mut open {
        let end = replies.message().await;
        let code = end.err().map(|s| s.code());
        assert_eq!(
            code,
            Some(tonic::Code::Unavailable),
            "each stream is told to reconnect"
        );
    }
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits")
        .unwrap();
    assert!(status.success(), "exit status {status}");

    let beaten = db
        .query_i64("SELECT count(*) FROM registry_instance WHERE status = 'ALIVE' AND last_heartbeat > started_at")
        .await;
    assert_eq!(
        beaten as usize, STREAMS,
        "the final flush recorded every agent's beats"
    );
}
