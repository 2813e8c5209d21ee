//! The routes: each admits the call through the access layer, reads the request from the
//! path, query and body, runs the contract operation `api::ops` names, and writes its reply
//! as JSON. Custom methods follow AIP-136 (`POST /v1/instances/{id}:drain`).

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Path, RawQuery, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use http::{HeaderMap, StatusCode};
use tonic::Status;

use crate::api::status::{cross_site, no_route};

use super::error::{ApiError, invalid};
use super::json::{self, Named};
use super::{BODY_TIMEOUT, HttpApi, Peer, params};
use crate::api::ops;
use crate::proto;
use crate::security::limits::{CallKind, Slot};
use crate::security::policy::Namespaces;
use crate::security::{Action, Caller, Scope};
use agent_registry_core::registry::{Registry, Source};

pub fn router(api: Arc<HttpApi>) -> Router {
    Router::new()
        .route("/v1/namespaces", get(list_namespaces))
        .route(
            "/v1/namespaces/{ns}",
            get(get_namespace).post(namespace_method),
        )
        .route(
            "/v1/namespaces/{ns}/instances",
            get(discover).post(register),
        )
        .route("/v1/namespaces/{ns}/watch", get(super::sse::watch))
        .route(
            "/v1/instances/{id}",
            get(get_instance).post(instance_method),
        )
        .route("/v1/status", get(status))
        .route("/v1/caller", get(caller))
        .route_layer(axum::middleware::from_fn_with_state(api.clone(), count))
        .merge(super::console::routes())
        .fallback(|| async { ApiError(no_route("no such resource; see /openapi.json")) })
        .with_state(api)
}

/// Counts each answered API request by its route (as declared), method and status.
async fn count(
    State(api): State<Arc<HttpApi>>,
    route: MatchedPath,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    api.registry
        .metrics()
        .http_request(route.as_str(), method.as_str(), status);
    response
}

/// One admitted unary call: extracted before anything else of the request (path, query,
/// body), so the caller is known — and the limits applied — before the request is read, as
/// the access layer does for an RPC. Holds its place in the call counts until dropped.
struct Call {
    api: Arc<HttpApi>,
    caller: Caller,
    headers: HeaderMap,
    _slot: Slot,
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
    async fn answer<M, F, Fut>(self, op: F) -> Result<Response, ApiError>
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
    async fn read<M: Named>(&self, body: Body) -> Result<M, ApiError> {
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
        json::from_slice(&bytes).map_err(|e| invalid("body", &e))
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

/// A field the path names too: empty in the body, or the same.
fn same(field: &str, in_body: &mut String, in_path: &str) -> Result<(), ApiError> {
    if !in_body.is_empty() && in_body != in_path {
        return Err(invalid(field, "differs from the one in the path"));
    }
    *in_body = in_path.to_string();
    Ok(())
}

/// `{name}:{verb}` as (name, verb).
fn custom_method(segment: &str) -> Result<(&str, &str), ApiError> {
    segment.rsplit_once(':').ok_or_else(|| {
        ApiError(no_route(
            "POST needs a custom method here, e.g. `…:drain`; see /openapi.json",
        ))
    })
}

async fn list_namespaces(call: Call, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    let r = params::namespaces(query.as_deref())?;
    call.answer(|reg, c| async move { ops::list_namespaces(&reg, &c, r).await })
        .await
}

async fn get_namespace(call: Call, Path(name): Path<String>) -> Result<Response, ApiError> {
    let r = proto::GetNamespaceRequest { name };
    call.answer(|reg, c| async move { ops::get_namespace(&reg, &c, r).await })
        .await
}

/// `POST /v1/namespaces/{ns}:advanceEpoch`
async fn namespace_method(
    call: Call,
    Path(segment): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let (name, verb) = custom_method(&segment)?;
    if verb != "advanceEpoch" {
        return Err(ApiError(no_route(format!(
            "no method `{verb}` on a namespace; it has `advanceEpoch`"
        ))));
    }
    let mut r: proto::AdvanceEpochRequest = call.read(body).await?;
    same("namespace", &mut r.namespace, name)?;
    call.answer(|reg, c| async move { ops::advance_epoch(&reg, &c, r).await })
        .await
}

async fn discover(
    call: Call,
    Path(namespace): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let r = params::discover(namespace, query.as_deref())?;
    call.answer(|reg, c| async move { ops::discover(&reg, &c, r).await })
        .await
}

/// `POST /v1/namespaces/{ns}/instances`: Register.
async fn register(
    call: Call,
    Path(namespace): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let mut r: proto::RegisterRequest = call.read(body).await?;
    same("namespace", &mut r.namespace, &namespace)?;
    call.answer(|reg, c| async move { ops::register(&reg, &c, r).await })
        .await
}

async fn get_instance(call: Call, Path(instance_id): Path<String>) -> Result<Response, ApiError> {
    let r = proto::GetInstanceRequest { instance_id };
    call.answer(|reg, c| async move { ops::get_instance(&reg, &c, r).await })
        .await
}

/// `POST /v1/instances/{id}:heartbeat|:drain|:evict|:deregister`
async fn instance_method(
    call: Call,
    Path(segment): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let (id, verb) = custom_method(&segment)?;
    macro_rules! bind {
        ($req:ty, $op:path) => {{
            let mut r: $req = call.read(body).await?;
            same("instanceId", &mut r.instance_id, id)?;
            call.answer(|reg, c| async move { $op(&reg, &c, r).await })
                .await
        }};
    }
    match verb {
        "heartbeat" => bind!(proto::HeartbeatRequest, ops::beat_once),
        "drain" => bind!(proto::DrainInstanceRequest, ops::drain_instance),
        "evict" => bind!(proto::EvictInstanceRequest, ops::evict_instance),
        "deregister" => bind!(proto::DeregisterRequest, ops::deregister),
        _ => Err(ApiError(no_route(format!(
            "no method `{verb}` on an instance; it has heartbeat, drain, evict and deregister"
        )))),
    }
}

/// `GET /v1/caller`: who the token is (the console shows admin actions to admins only).
async fn caller(call: Call) -> Result<Response, ApiError> {
    let value = match &call.caller {
        Caller::Open => serde_json::json!({ "open": true, "role": "admin", "namespaces": ["*"] }),
        Caller::Token(grant) => serde_json::json!({
            "open": false,
            "name": grant.name,
            "role": grant.role.to_string(),
            "namespaces": match &grant.namespaces {
                Namespaces::All => vec!["*".to_string()],
                Namespaces::Only(names) => names.iter().cloned().collect(),
            },
        }),
    };
    Ok(super::json(StatusCode::OK, &value))
}

/// `GET /v1/status`: this replica's own state, for any caller who may list namespaces.
async fn status(call: Call) -> Result<Response, ApiError> {
    let (api, caller) = (&call.api, &call.caller);
    caller
        .authorize(Action::ListNamespaces, Scope::Listing)
        .map_err(|d| ApiError(d.into()))?;
    let health = api.registry.health();
    let r = api.registry.readings();
    let redis = match &api.redis {
        None => "not configured",
        Some(up) if *up.borrow() == Some(true) => "subscribed",
        Some(_) => "unreachable",
    };
    let holding: Vec<&String> = r
        .guard_holding
        .iter()
        .filter(|ns| caller.sees(ns))
        .collect();
    let value = serde_json::json!({
        "ready": health.store_reachable && health.streams_stopped.is_none(),
        "store": {
            "reachable": health.store_reachable,
            "vouchingForBeats": health.streams_stopped.is_none(),
            "unpersistedMs": r.unpersisted_ms.to_string(),
            "outages": r.store_outages.to_string(),
        },
        "redis": redis,
        "revision": r.revision.to_string(),
        "changeFeedLagSeconds": r.feed_lag_seconds.to_string(),
        "selfPreservation": {
            "holding": !holding.is_empty(),
            "namespaces": holding,
            "trips": r.guard_trips.to_string(),
        },
        "heartbeatStreams": r.heartbeat_streams,
        "watchers": r.watchers,
        "wedged": health.wedged,
    });
    Ok(super::json(StatusCode::OK, &value))
}
