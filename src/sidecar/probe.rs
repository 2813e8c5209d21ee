//! The application's health, as the sidecar sees it: an HTTP GET that must answer 2xx, or a
//! `grpc.health.v1` check that must answer SERVING.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where the application reports its health.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// `http://host:port/path` (plain HTTP/1.1).
    Http { host: String, path: String },
    /// `host:port`, optionally `/service`.
    Grpc { endpoint: String, service: String },
    /// No probe: the application counts as healthy once it is registered.
    None,
}

impl Probe {
    pub fn http(url: &str) -> Result<Probe, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("--probe-http {url:?}: only http:// URLs are supported"))?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        Ok(Probe::Http {
            host: host.to_string(),
            path: path.to_string(),
        })
    }

    pub fn grpc(target: &str) -> Probe {
        let (endpoint, service) = match target.split_once('/') {
            Some((e, s)) => (e, s),
            None => (target, ""),
        };
        Probe::Grpc {
            endpoint: endpoint.to_string(),
            service: service.to_string(),
        }
    }

    /// Whether the application is healthy now; any failure or timeout is "no".
    pub async fn healthy(&self, timeout: Duration) -> bool {
        let check = async {
            match self {
                Probe::None => true,
                Probe::Http { host, path } => http_ok(host, path).await.unwrap_or(false),
                Probe::Grpc { endpoint, service } => grpc_serving(endpoint, service).await,
            }
        };
        tokio::time::timeout(timeout, check).await.unwrap_or(false)
    }
}

async fn http_ok(host: &str, path: &str) -> std::io::Result<bool> {
    let mut conn = tokio::net::TcpStream::connect(host).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await?;
    let mut head = [0u8; 16];
    let n = conn.read(&mut head).await?;
    // "HTTP/1.1 200 ..." — the status code is the second word.
    let status = std::str::from_utf8(&head[..n])
        .ok()
        .and_then(|s| s.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok());
    Ok(status.is_some_and(|c| (200..300).contains(&c)))
}

async fn grpc_serving(endpoint: &str, service: &str) -> bool {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let Ok(channel) = tonic::transport::Endpoint::from_shared(format!("http://{endpoint}")) else {
        return false;
    };
    let Ok(channel) = channel.connect().await else {
        return false;
    };
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    let req = HealthCheckRequest {
        service: service.to_string(),
    };
    matches!(client.check(req).await, Ok(r) if r.get_ref().status == ServingStatus::Serving as i32)
}
