//! One admitted HTTP call (`Call`): the caller established and the limits applied before
//! anything of the request is read, as the access layer does for an RPC; its body read under
//! the write rules; its reply written as JSON.

use std::future::Future;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use tonic::Status;

use super::error::{ApiError, invalid};
use super::json::{self, Named};
use super::{BODY_TIMEOUT, HttpApi, Peer};
use crate::api::status::cross_site;
use crate::security::Caller;
use crate::security::limits::{CallKind, Slot};
use agent_registry_core::registry::Registry;

/// One admitted unary call: extracted before anything else of the request (path, query,
/// body), so the caller is known — and the limits applied — before the request is read, as
/// the access layer does for an RPC. Holds its place in the call counts until dropped.
pub(super) struct Call {
    pub(super) api: Arc<HttpApi>,
    pub(super) caller: Caller,
    pub(super) headers: HeaderMap,
    pub(super) _slot: Slot,
}

impl FromRequestParts<Arc<HttpApi>> for Call {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        api: &Arc<HttpApi>,
    ) -> Result<Call, ApiError> {
        let peer = parts.extensions.get::<ConnectInfo<Peer>>().map(|c| c.0.0);
        let admitted = api.admit(&parts.headers, peer, CallKind::Unary)?;
        Ok(Call {
            api: api.clone(),
            caller: admitted.caller,
            headers: parts.headers.clone(),
            _slot: admitted.slot,
        })
    }
}

impl Call {
    /// Runs `op` as the caller; its reply as JSON.
    pub(super) async fn answer<M, F, Fut>(self, op: F) -> Result<Response, ApiError>
    where
        M: Named,
        F: FnOnce(Arc<Registry>, Caller) -> Fut,
        Fut: Future<Output = Result<M, Status>>,
    {
        let reply = op(self.api.registry.clone(), self.caller.clone()).await?;
        Ok(super::json(StatusCode::OK, &json::to_value(&reply)))
    }

    /// A POST's JSON body as `M`. Refused, naming the header or what was wrong in the body: a
    /// content type other than JSON (which a cross-site form or a `no-cors` fetch cannot
    /// send), a request a browser marks as coming from another site, a body over
    /// `--max-message-size` (RESOURCE_EXHAUSTED) or one not sent within 30 s.
    pub(super) async fn read<M: Named>(&self, body: Body) -> Result<M, ApiError> {
        let bytes = self.read_bytes(body).await?;
        json::from_slice(&bytes).map_err(|e| invalid("body", &e))
    }

    /// A write's body as sent, after the checks [`Call::read`] describes.
    pub(super) async fn read_bytes(&self, body: Body) -> Result<bytes::Bytes, ApiError> {
        let headers = &self.headers;
        let json_type = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json_type {
            return Err(invalid(
                "content-type",
                "must be application/json (curl: --json)",
            ));
        }
        let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
        if matches!(site, Some("cross-site" | "same-site")) {
            return Err(ApiError(cross_site()));
        }
        let limit = self.api.access.limits.max_message_bytes;
        let read = tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, limit));
        let bytes = match read.await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(e)) if too_long(&e) => {
                return Err(ApiError(
                    crate::security::AccessError::Limited(format!(
                        "the request body is longer than {limit} bytes (--max-message-size)"
                    ))
                    .into(),
                ));
            }
            Ok(Err(_)) => return Err(invalid("body", "cut short")),
            Err(_) => return Err(invalid("body", "not received within 30 s")),
        };
        Ok(bytes)
    }
}

/// Whether reading a body failed on the length limit (rather than the client going away).
fn too_long(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}
