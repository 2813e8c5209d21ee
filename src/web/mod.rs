//! The HTTP/JSON front end (SPEC §12): the contract's operations as REST resources and custom
//! methods, a Server-Sent Events watch, the OpenAPI document and the web console, on a
//! listener of its own with the gRPC port's TLS, tokens, roles and limits.
//!
//! Each route binds one of `api::ops` — the functions the gRPC services bind too — so both
//! front ends authorize and answer alike by construction; this module only reads HTTP and
//! writes JSON.

mod console;
mod error;
mod json;
mod params;
mod routes;
mod sse;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use tokio::sync::watch;

use crate::registry::Registry;
use crate::security::conn::Conn;
use crate::security::limits::CallKind;
use crate::security::{Access, layer::Admitted};

pub use error::{ApiError, code_name, http_status};

/// What every route shares.
pub struct HttpApi {
    pub registry: Arc<Registry>,
    pub access: Arc<Access>,
    /// Whether Redis carries change notifications: `None` when it is not configured, else
    /// the bell's state (`Some(true)` while subscribed).
    pub redis: Option<watch::Receiver<Option<bool>>>,
}

impl HttpApi {
    /// The access layer's admission for one call: who calls, within which limits.
    fn admit(
        &self,
        headers: &HeaderMap,
        peer: SocketAddr,
        kind: CallKind,
    ) -> Result<Admitted, ApiError> {
        self.access
            .admit_call(headers, Some(peer), kind)
            .map_err(|e| ApiError(e.into()))
    }

    /// A request body, at most `--max-message-size` long.
    async fn body(&self, body: Body) -> Result<bytes::Bytes, ApiError> {
        let limit = self.access.limits.max_message_bytes;
        axum::body::to_bytes(body, limit).await.map_err(|_| {
            ApiError(tonic::Status::from(crate::security::AccessError::Limited(
                format!(
                    "the request body is longer than {limit} bytes (--max-message-size), or was cut short"
                ),
            )))
        })
    }
}

/// A JSON response.
fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    let mut response = Response::new(Body::from(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// Accepted connections as axum's listener: plain or TLS, from `security::conn`.
pub struct Incoming(pub tokio_stream::wrappers::ReceiverStream<Result<Conn, std::io::Error>>);

impl axum::serve::Listener for Incoming {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        use tokio_stream::StreamExt;
        use tonic::transport::server::Connected;
        loop {
            match self.0.next().await {
                Some(Ok(conn)) => {
                    let peer = conn
                        .connect_info()
                        .remote_addr
                        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
                    return (conn, peer);
                }
                Some(Err(e)) => tracing::debug!(error = %e, "HTTP accept failed"),
                // The accept loop ended (shutdown): accept nothing more.
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(SocketAddr::from(([0, 0, 0, 0], 0)))
    }
}

/// The peer of a connection, as handlers extract it (`ConnectInfo<Peer>`).
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Incoming>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, Incoming>) -> Self {
        Peer(*stream.remote_addr())
    }
}

/// Serves the HTTP API on `incoming` until `shutdown` resolves; then no new requests are
/// taken, and open watches end as every watcher does at shutdown.
pub async fn serve(
    api: Arc<HttpApi>,
    incoming: Incoming,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = routes::router(api).into_make_service_with_connect_info::<Peer>();
    axum::serve(incoming, app)
        .with_graceful_shutdown(shutdown)
        .await
}
