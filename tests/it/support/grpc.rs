//! gRPC helpers: requests, channels, health.

use std::time::Duration;

use agent_registry::proto::{self, discovery_service_client::DiscoveryServiceClient};
use tonic::transport::Channel;

/// A Register request for `logical_id` in `namespace`, ready unless changed.
pub fn reg(namespace: &str, logical_id: &str) -> proto::RegisterRequest {
    proto::RegisterRequest {
        namespace: namespace.into(),
        logical_id: logical_id.into(),
        ready: true,
        ..Default::default()
    }
}

/// A lease of `seconds`, as a request carries it.
pub fn lease(seconds: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration { seconds, nanos: 0 })
}

/// A Discover request for `view` in `ns`.
pub fn view(ns: &str, view: proto::DiscoverView) -> proto::DiscoverRequest {
    proto::DiscoverRequest {
        namespace: ns.into(),
        view: view as i32,
        ..Default::default()
    }
}

/// Every instance Discover returns for `req`, across all pages.
pub async fn discover_all(
    discovery: &mut DiscoveryServiceClient<Channel>,
    mut req: proto::DiscoverRequest,
) -> Vec<proto::Instance> {
    let mut out = Vec::new();
    loop {
        let page = discovery
            .discover(req.clone())
            .await
            .expect("discover")
            .into_inner();
        out.extend(page.instances);
        if page.next_page_token.is_empty() {
            return out;
        }
        req.page_token = page.next_page_token;
    }
}

/// The ids of `instances`, sorted.
pub fn ids(instances: &[proto::Instance]) -> Vec<String> {
    let mut v: Vec<_> = instances.iter().map(|i| i.instance_id.clone()).collect();
    v.sort();
    v
}

/// A grpc.health.v1 status of `service` ("" for the overall entry), or UNKNOWN when the check
/// itself fails.
pub async fn health(channel: &Channel, service: &str) -> i32 {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let req = HealthCheckRequest {
        service: service.into(),
    };
    let mut client = HealthClient::new(channel.clone());
    match tokio::time::timeout(Duration::from_secs(5), client.check(req)).await {
        Ok(Ok(r)) => r.into_inner().status,
        _ => 0,
    }
}

/// A connection to a server at `host:port`, made now.
pub async fn connect(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect")
}

/// A connection with small HTTP/2 receive windows: a stream on it that is not read soon stops
/// the server sending, so what the server holds for it shows.
pub async fn small_window(addr: &str) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .unwrap()
}
