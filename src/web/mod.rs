//! The HTTP/JSON front end (SPEC §12): the contract's operations as REST resources and custom
//! methods, a Server-Sent Events watch, the OpenAPI document and the web console, on a
//! listener of its own with the gRPC port's TLS, tokens, roles and limits.
//!
//! Each route binds one of `api::ops` — the functions the gRPC services bind too — so both
//! front ends authorize and answer alike by construction; this module only reads HTTP and
//! writes JSON.

mod agents;
mod call;
mod console;
mod error;
mod json;
mod params;
mod routes;
mod sse;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use tokio::sync::watch;

use crate::security::conn::Conn;
use crate::security::limits::CallKind;
use crate::security::{Access, layer::Admitted};
use agent_registry_core::registry::Registry;

pub use error::{ApiError, code_name, http_status};
/// The HTTP API's routes over one `HttpApi`, for serving in-process (tests on the paused clock).
pub use routes::router;

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
        peer: Option<SocketAddr>,
        kind: CallKind,
    ) -> Result<Admitted, ApiError> {
        self.access
            .admit_call(headers, peer, kind)
            .map_err(|e| ApiError(e.into()))
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

/// How long a client may take to send a request's head (the request line and headers).
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client may take to send a request's body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The accepted connections, plain or TLS, from `security::conn`.
pub struct Incoming(pub tokio_stream::wrappers::ReceiverStream<Result<Conn, std::io::Error>>);

impl Incoming {
    /// The next connection and its peer; `None` once the accept loop has ended.
    async fn accept(&mut self) -> Option<(Conn, SocketAddr)> {
        use tokio_stream::StreamExt;
        use tonic::transport::server::Connected;
        loop {
            match self.0.next().await? {
                Ok(conn) => {
                    let peer = conn
                        .connect_info()
                        .remote_addr
                        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
                    return Some((conn, peer));
                }
                Err(e) => tracing::debug!(error = %e, "HTTP accept failed"),
            }
        }
    }
}

/// The peer of a connection, as handlers extract it (`ConnectInfo<Peer>`).
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

/// Serves the HTTP API on `incoming` until `shutdown` resolves; then no connection is accepted,
/// and this returns once every connection has finished its request (open watches end with the
/// registry's shutdown). Each connection is a task of this future's own: dropping the future
/// (the grace ran out) ends them all.
pub async fn serve(
    api: Arc<HttpApi>,
    mut incoming: Incoming,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let router = routes::router(api);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (conn, peer) = tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = incoming.accept() => match accepted {
                Some(accepted) => accepted,
                None => break,
            },
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: http::Request<_>| {
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(Peer(peer)));
            tower_service::Service::call(&mut router.clone(), req)
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEAD_TIMEOUT)
            .serve_connection(TokioIo::new(conn), service);
        let connection = graceful.watch(connection);
        connections.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "HTTP connection ended");
            }
        });
    }
    // Stop accepting (the accept loop ends and closes the port), then let every connection
    // finish the request it serves.
    drop(incoming);
    graceful.shutdown().await;
}
