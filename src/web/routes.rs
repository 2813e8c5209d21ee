//! The routes: each admits the call through the access layer, reads the request from the
//! path, query and body, runs the contract operation `api::ops` names, and writes its reply
//! as JSON. Custom methods follow AIP-136 (`POST /v1/instances/{id}:drain`).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Path, RawQuery, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use http::StatusCode;

use crate::api::status::no_route;

use super::call::Call;
use super::error::{ApiError, invalid};
use super::{HttpApi, params};
use crate::api::ops;
use crate::proto;
use crate::security::policy::Namespaces;
use crate::security::{Action, Caller, Scope};
use agent_registry_core::registry::Source;

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
        .route("/v1/namespaces/{ns}/agents", get(super::agents::search))
        .route(
            "/v1/namespaces/{ns}/agents/{logical_id}",
            get(super::agents::get_agent),
        )
        .route(
            "/v1/namespaces/{ns}/agents/{logical_id}/card",
            axum::routing::put(super::agents::publish),
        )
        .route(
            "/v1/namespaces/{ns}/agents/{logical_id}/cards",
            get(super::agents::versions),
        )
        .route("/v1/cards/{digest}", get(super::agents::card_by_digest))
        .route("/v1/instances/{id}/card", get(super::agents::instance_card))
        .route(
            "/a2a/{ns}/{logical_id}/.well-known/agent-card.json",
            get(super::agents::well_known),
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
