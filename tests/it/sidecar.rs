//! The sidecar binary against a real server and a tiny HTTP app whose health flips:
//! ALIVE → DRAINING → ALIVE, then SIGTERM → DRAINING → DEAD (deregistered), exit 0.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agent_registry::proto::{self, DiscoverView, InstanceStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::support::{Backend, TestDb, TestServer, eventually, view};

/// An HTTP server answering `/healthz` with 200 while `healthy`, else 503.
async fn app(healthy: Arc<AtomicBool>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let healthy = healthy.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf).await;
                let status = match healthy.load(Ordering::SeqCst) {
                    true => "200 OK",
                    false => "503 Service Unavailable",
                };
                let reply = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                let _ = conn.write_all(reply.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/healthz")
}

async fn status_of(s: &mut TestServer) -> Option<(i32, i32)> {
    let all = s.discover_all(view("side", DiscoverView::All)).await;
    all.iter()
        .find(|i| i.logical_id == "web-0")
        .map(|i| (i.status, i.death_reason))
}

async fn until_status(s: &mut TestServer, want: InstanceStatus) {
    let s = &*s;
    eventually(&format!("status {want:?}"), move || async move {
        let mut d = s.discovery.clone();
        let page = d.discover(view("side", DiscoverView::All)).await.unwrap();
        let found = page
            .into_inner()
            .instances
            .into_iter()
            .find(|i| i.logical_id == "web-0");
        found.map(|i| i.status) == Some(want as i32)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_follows_the_app_and_leaves_on_sigterm() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let mut s = TestServer::start(&db).await;
    let healthy = Arc::new(AtomicBool::new(true));
    let probe = app(healthy.clone()).await;
    let mut sidecar = Command::new(env!("CARGO_BIN_EXE_agent-registry"))
        .args(["sidecar", "--registry", &s.url, "--probe-http", &probe])
        .args([
            "--probe-interval",
            "100ms",
            "--probe-failure-threshold",
            "2",
        ])
        .args(["--drain-grace", "5s", "--label", "tier=web"])
        .env("POD_NAME", "web-0")
        .env("POD_NAMESPACE", "side")
        .env("POD_IP", "10.1.2.3")
        .env("NODE_NAME", "node-a")
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sidecar");

    until_status(&mut s, InstanceStatus::Alive).await;
    let all = s.discover_all(view("side", DiscoverView::All)).await;
    let i = all.iter().find(|i| i.logical_id == "web-0").unwrap();
    assert_eq!(
        (i.ip_address.as_str(), i.node_id.as_str()),
        ("10.1.2.3", "node-a")
    );
    assert_eq!(i.labels.get("tier").map(String::as_str), Some("web"));

    healthy.store(false, Ordering::SeqCst);
    until_status(&mut s, InstanceStatus::Draining).await;
    healthy.store(true, Ordering::SeqCst);
    until_status(&mut s, InstanceStatus::Alive).await;

    let pid = sidecar.id().unwrap().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(sent.success());
    until_status(&mut s, InstanceStatus::Draining).await;
    until_status(&mut s, InstanceStatus::Dead).await;
    assert_eq!(
        status_of(&mut s).await.unwrap().1,
        proto::DeathReason::Deregistered as i32
    );
    let exit = tokio::time::timeout(Duration::from_secs(20), sidecar.wait())
        .await
        .expect("sidecar exited")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    s.stop().await;
}

/// The sidecar with `--card-file`: a card read from disk, registered with the pod.
fn sidecar_with_card(s: &TestServer, probe: &str, card: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_agent-registry"));
    c.args(["sidecar", "--registry", &s.url, "--probe-http", probe])
        .args(["--probe-interval", "100ms"])
        .arg("--card-file")
        .arg(card)
        .env("POD_NAME", "carded-0")
        .env("POD_NAMESPACE", "side-cards")
        .env("POD_IP", "10.1.2.4")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_registers_the_card_file_and_fails_loudly_on_a_bad_one() {
    use crate::support::cards;
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let s = TestServer::start(&db).await;
    let probe = app(Arc::new(AtomicBool::new(true))).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent-card.json");
    let card = cards::simple("Carded").to_string();
    std::fs::write(&path, &card).unwrap();

    let mut sidecar = sidecar_with_card(&s, &probe, &path).spawn().unwrap();
    {
        let s = &s;
        let card = &card;
        eventually("the agent is live with its card", move || async move {
            let req = proto::GetAgentRequest {
                namespace: "side-cards".into(),
                logical_id: "carded-0".into(),
            };
            match s.catalog.clone().get_agent(req).await {
                Ok(r) => r.into_inner().agent.is_some_and(|a| {
                    a.state == proto::AgentState::Live as i32
                        && a.card.is_some_and(|c| c.json == *card)
                }),
                Err(_) => false,
            }
        })
        .await;
    }
    sidecar.kill().await.unwrap();

    // A card missing its name: the sidecar exits non-zero, naming the JSON path.
    let mut bad = cards::simple("Carded");
    bad.as_object_mut().unwrap().remove("name");
    std::fs::write(&path, bad.to_string()).unwrap();
    let child = sidecar_with_card(&s, &probe, &path).spawn().unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("the sidecar gave up")
        .unwrap();
    // The log (on stdout, as a container's is) says why.
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{log}");
    assert!(
        log.contains("registering") && log.contains("card.name"),
        "{log}"
    );
    s.stop().await;
}
