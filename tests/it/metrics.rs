//! Metrics: after a scripted sequence of calls, `/metrics` (over HTTP) shows what happened.

use agent_registry::proto::{self, DiscoverView};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Backend, TestDb, TestServer, eventually, reg, view};
use crate::watch::{events, next, open, watch_req};

/// GETs `/metrics` from the server's metrics listener and returns the body.
pub async fn scrape(s: &TestServer) -> String {
    let addr = s.node.metrics().address().expect("metrics listener bound");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap()
}

/// The value of the sample whose name and labels are exactly `series`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

async fn a_scripted_sequence_shows_in_the_metrics(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut s = TestServer::start(&db).await;
    let mut w = open(&mut s, watch_req("m", 0)).await;
    next(&mut w).await;
    let a = s.register(reg("m", "a")).await;
    let b = s.register(reg("m", "b")).await;
    let req = proto::DrainInstanceRequest {
        instance_id: b.instance_id.clone(),
        reason: "test".into(),
    };
    s.admin.drain_instance(req).await.unwrap();
    events(&mut w, 3).await;
    let mut bad = view("m", DiscoverView::All);
    bad.page_size = -1;
    assert!(s.discovery.discover(bad).await.is_err());
    let (tx, mut acks) = s.open_stream().await;
    for seq in 1..=3 {
        let beat = proto::HeartbeatRequest {
            instance_id: a.instance_id.clone(),
            sequence: seq,
            status: 0,
        };
        tx.send(beat).await.unwrap();
        acks.message().await.unwrap().unwrap();
    }

    // The flusher writes the beats within a second; wait for it rather than for a time.
    let server = &s;
    eventually("a flush", move || async move {
        let text = scrape(server).await;
        sample(&text, "agent_registry_flush_batch_size_count").unwrap_or(0.0) >= 1.0
    })
    .await;
    let text = scrape(&s).await;
    let expect = |series: &str, want: f64| {
        assert_eq!(sample(&text, series), Some(want), "{series}\n{text}");
    };
    expect("agent_registry_registrations_total", 2.0);
    expect(
        r#"agent_registry_instances{namespace="m",status="ALIVE"}"#,
        1.0,
    );
    expect(
        r#"agent_registry_instances{namespace="m",status="DRAINING"}"#,
        1.0,
    );
    expect(
        r#"agent_registry_instances{namespace="m",status="LIVE"}"#,
        1.0,
    );
    expect("agent_registry_heartbeats_total", 3.0);
    expect("agent_registry_heartbeat_streams", 1.0);
    expect("agent_registry_watchers", 1.0);
    expect("agent_registry_watch_events_sent_total", 3.0);
    expect("agent_registry_store_reachable", 1.0);
    expect(
        r#"agent_registry_grpc_requests_total{method="/agentregistry.v1.RegistryService/Register",code="Ok"}"#,
        2.0,
    );
    expect(
        r#"agent_registry_grpc_requests_total{method="/agentregistry.v1.AdminService/DrainInstance",code="Ok"}"#,
        1.0,
    );
    expect(
        r#"agent_registry_grpc_requests_total{method="/agentregistry.v1.DiscoveryService/Discover",code="InvalidArgument"}"#,
        1.0,
    );
    expect(
        r#"agent_registry_grpc_request_duration_seconds_count{method="/agentregistry.v1.RegistryService/Register"}"#,
        2.0,
    );
    assert!(
        sample(&text, "agent_registry_flush_batch_size_count").unwrap() >= 1.0,
        "{text}"
    );
    assert!(sample(&text, "agent_registry_change_feed_lag_seconds").unwrap() <= 2.0);
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("agent_registry_store_errors_total"))
            .count(),
        0,
        "no store errors: {text}"
    );

    // A stream that ends counts once, with its code.
    drop(tx);
    while acks.message().await.ok().flatten().is_some() {}
    let req = r#"agent_registry_grpc_requests_total{method="/agentregistry.v1.RegistryService/Heartbeat",code="Ok"}"#;
    let server = &s;
    eventually("the stream counted", move || async move {
        sample(&scrape(server).await, req).is_some()
    })
    .await;
    let text = scrape(&s).await;
    assert_eq!(sample(&text, req), Some(1.0), "{text}");
    s.stop().await;
}

crate::on_both_backends!(a_scripted_sequence_shows_in_the_metrics);
