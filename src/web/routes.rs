//! The routes: each admits the call through the access layer, reads the request from the
//! path, query and body, runs the contract operation `api::ops` names, and writes its reply
//! as JSON. Custom methods follow AIP-136 (`POST /v1/instances/{id}:drain`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use http::{HeaderMap, StatusCode};
use tonic::Status;

use super::error::ApiError;
use super::json::{self, Named};
use super::{BODY_TIMEOUT, HttpApi, params};
use crate::api::{ops, status};
use crate::proto;
use crate::registry::{Registry, Source};
use crate::security::limits::CallKind;
use crate::security::policy::Namespaces;
use crate::security::{Action, Caller, Scope};

type Api = State<Arc<HttpApi>>;
type Peer = ConnectInfo<super::Peer>;

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
        .merge(super::console::routes())
        .fallback(|| async { ApiError(Status::not_found("no such resource; see /openapi.json")) })
        .with_state(api)
}

/// Admits a unary call, runs `op` as the admitted caller and answers with its reply.
async fn unary<M, F, Fut>(
    api: &HttpApi,
    headers: &HeaderMap,
    peer: SocketAddr,
    op: F,
) -> Result<Response, ApiError>
where
    M: Named,
    F: FnOnce(Arc<Registry>, Caller) -> Fut,
    Fut: Future<Output = Result<M, Status>>,
{
    let admitted = api.admit(headers, peer, CallKind::Unary)?;
    let reply = op(api.registry.clone(), admitted.caller.clone()).await?;
    Ok(super::json(StatusCode::OK, &json::to_value(&reply)))
}

/// A POST's JSON body as `M`, read once the call is admitted. Refused, naming the header or
/// what was wrong in the body: a content type other than JSON (which a cross-site form or a
/// `no-cors` fetch cannot send), a request a browser marks as coming from another site, a
/// body over `limit` bytes (RESOURCE_EXHAUSTED) or one not sent within 30 s.
async fn read<M: Named>(headers: &HeaderMap, body: Body, limit: usize) -> Result<M, Status> {
    let json_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json_type {
        return Err(status::invalid(
            "content-type",
            "must be application/json (curl: --json)",
        ));
    }
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if matches!(site, Some("cross-site" | "same-site")) {
        return Err(Status::permission_denied(
            "sec-fetch-site: writes are not taken from another site's page",
        ));
    }
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => {
            return Err(crate::security::AccessError::Limited(format!(
                "the request body is longer than {limit} bytes (--max-message-size)"
            ))
            .into());
        }
        Err(_) => return Err(status::invalid("body", "not received within 30 s")),
    };
    json::from_slice(&bytes).map_err(|e| status::invalid("body", &e))
}

/// A field the path names too: empty in the body, or the same.
fn same(field: &str, in_body: &mut String, in_path: &str) -> Result<(), Status> {
    if !in_body.is_empty() && in_body != in_path {
        return Err(status::invalid(field, "differs from the one in the path"));
    }
    *in_body = in_path.to_string();
    Ok(())
}

/// `{name}:{verb}` as (name, verb).
fn custom_method(segment: &str) -> Result<(&str, &str), ApiError> {
    segment.rsplit_once(':').ok_or_else(|| {
        ApiError(Status::not_found(
            "POST needs a custom method here, e.g. `…:drain`; see /openapi.json",
        ))
    })
}

async fn list_namespaces(
    State(api): Api,
    ConnectInfo(super::Peer(peer)): Peer,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let r = params::namespaces(query.as_deref())?;
    unary(&api, &headers, peer, |reg, c| async move {
        ops::list_namespaces(&reg, &c, r).await
    })
    .await
}

async fn get_namespace(
    State(api): Api,
    ConnectInfo(super::Peer(peer)): Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let r = proto::GetNamespaceRequest { name };
    unary(&api, &headers, peer, |reg, c| async move {
        ops::get_namespace(&reg, &c, r).await
    })
    .await
}

/// `POST /v1/namespaces/{ns}:advanceEpoch`
async fn namespace_method(
    State(api): Api,
    ConnectInfo(super::Peer(peer)): Peer,
    headers: HeaderMap,
    Path(segment): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let (name, verb) = custom_method(&segment)?;
    if verb != "advanceEpoch" {
        return Err(ApiError(Status::not_found(format!(
            "no method `{verb}` on a namespace; it has `advanceEpoch`"
        ))));
    }
    let (name, limit, h) = (name.to_string(), api.body_limit(), headers.clone());
    unary(&api, &headers, peer, |reg, c| async move {
        let mut r: proto::AdvanceEpochRequest = read(&h, body, limit).await?;
        same("namespace", &mut r.namespace, &name)?;
        ops::advance_epoch(&reg, &c, r).await
    })
    .await
}

async fn discover(
    State(api): Api,
    ConnectInfo(super::Peer(peer)): Peer,
    headers: HeaderMap,
    Path(namespace): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let r = params::discover(namespace, query.as_deref())?;
    unary(&api, &headers, peer, |reg, c| async move {
        ops::discover(&reg, &c, r).await
    })
    .await
}

/// `POST /v1/namespaces/{ns}/instances`: Register.
async fn register(
    State(api): Api,
    ConnectInfo(super::Peer(peer)): Peer,
    headers: HeaderMap,
    Path(namespace): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let (limit, h) = (api.body_limit(), headers.clone());
    unary(&api, &headers, peer, |reg, c| async move {
        let mut r: proto::RegisterRequest = read(&h, body, limit).await?;
        same("namespace", &mut r.namespace, &namespace)?;
        ops::register(&reg, &c, r).await
    })
    .await
}

async fn get_instance(
    State(api): Api,
    ConnectInfo(super::Peer(peer)): Peer,
    headers: HeaderMap,
    Path(instance_id): Path<String>,
) -> Result<Response, ApiError> {
    let r = proto::GetInstanceRequest { instance_id };
    unary(&api, &headers, peer, |reg, c| async move {
        ops::get_instance(&reg, &c, r).await
    })
    .await
}

/// `POST /v1/instances/{id}:heartbeat|:drain|:evict|:deregister`
async fn instance_method(
    State(api): Api,
    ConnectInfo(super::Peer(peer)): Peer,
    headers: HeaderMap,
    Path(segment): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let (id, verb) = custom_method(&segment)?;
    let (id, limit, h) = (id.to_string(), api.body_limit(), headers.clone());
    macro_rules! bind {
        ($req:ty, $op:path) => {
            unary(&api, &headers, peer, |reg, c| async move {
                let mut r: $req = read(&h, body, limit).await?;
                same("instanceId", &mut r.instance_id, &id)?;
                $op(&reg, &c, r).await
            })
            .await
        };
    }
    match verb {
        "heartbeat" => bind!(proto::HeartbeatRequest, ops::beat_once),
        "drain" => bind!(proto::DrainInstanceRequest, ops::drain_instance),
        "evict" => bind!(proto::EvictInstanceRequest, ops::evict_instance),
        "deregister" => bind!(proto::DeregisterRequest, ops::deregister),
        _ => Err(ApiError(Status::not_found(format!(
            "no method `{verb}` on an instance; it has heartbeat, drain, evict and deregister"
        )))),
    }
}

/// `GET /v1/caller`: who the token is (the console shows admin actions to admins only).
async fn caller(
    State(api): Api,
    ConnectInfo(super::Peer(peer)): Peer,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let admitted = api.admit(&headers, peer, CallKind::Unary)?;
    let value = match &admitted.caller {
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
async fn status(
    State(api): Api,
    ConnectInfo(super::Peer(peer)): Peer,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let admitted = api.admit(&headers, peer, CallKind::Unary)?;
    let caller = &admitted.caller;
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
