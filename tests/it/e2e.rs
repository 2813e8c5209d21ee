//! The real binary on a free port, over TCP: health, reflection, a write and a read, SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use agent_registry::proto::{
    self, DiscoverView, discovery_service_client::DiscoveryServiceClient,
    registry_service_client::RegistryServiceClient,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::support::{Backend, TestDb, reg, view};

/// Starts the binary on port 0 and reads the address it logged.
async fn spawn_binary(db: &TestDb) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_agent-registry"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &db.url,
        ])
        .env("RUST_LOG", "info")
        .env("LOG_FORMAT", "text")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn agent-registry");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("listening on ").nth(1) {
                return rest.trim().to_string();
            }
        }
        panic!("the server exited before listening");
    })
    .await
    .expect("server started in time");
    // Keep draining its log so the pipe never fills.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
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
    let unimplemented = discovery
        .watch(proto::WatchRequest::default())
        .await
        .unwrap_err();
    assert_eq!(unimplemented.code(), tonic::Code::Unimplemented);

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
