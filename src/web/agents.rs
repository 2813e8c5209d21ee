//! The catalog over HTTP (SPEC §15): search, one agent, publishing a card, card versions, a
//! card by digest or by instance, and each agent's card at the well-known path A2A clients
//! resolve — served byte for byte, and only while an instance of the agent is live.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::call::Call;
use super::error::{ApiError, invalid};
use super::{HttpApi, Peer, params};
use crate::api::{ops, status};
use crate::proto;
use crate::security::{Action, Scope};

/// How long a client told that nothing live serves an agent should wait before asking again.
const RETRY_AFTER_SECONDS: u64 = 5;

/// `GET /v1/namespaces/{ns}/agents?…`: SearchAgents.
pub(super) async fn search(
    call: Call,
    Path(namespace): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let r = params::search(namespace, query.as_deref())?;
    call.answer(|reg, c| async move { ops::search_agents(&reg, &c, r).await })
        .await
}

/// `GET /v1/namespaces/{ns}/agents/{logical_id}`: GetAgent.
pub(super) async fn get_agent(
    call: Call,
    Path((namespace, logical_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let r = proto::GetAgentRequest {
        namespace,
        logical_id,
    };
    call.answer(|reg, c| async move { ops::get_agent(&reg, &c, r).await })
        .await
}

/// `PUT /v1/namespaces/{ns}/agents/{logical_id}/card?kind=…`: PublishCard, the body being the
/// card itself.
pub(super) async fn publish(
    call: Call,
    Path((namespace, logical_id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let kind = params::card_kind(query.as_deref())?;
    let bytes = call.read_bytes(body).await?;
    let json = String::from_utf8(bytes.to_vec()).map_err(|_| invalid("card", "is not UTF-8"))?;
    let r = proto::PublishCardRequest {
        namespace,
        logical_id,
        card: Some(proto::Card {
            kind: kind as i32,
            json,
        }),
    };
    call.answer(|reg, c| async move { ops::publish_card(&reg, &c, r).await })
        .await
}

/// `GET /v1/namespaces/{ns}/agents/{logical_id}/cards`: ListCardVersions.
pub(super) async fn versions(
    call: Call,
    Path((namespace, logical_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let r = proto::ListCardVersionsRequest {
        namespace,
        logical_id,
    };
    call.answer(|reg, c| async move { ops::list_card_versions(&reg, &c, r).await })
        .await
}

/// `GET /v1/cards/{digest}`: a card by digest, from any agent the caller may read.
pub(super) async fn card_by_digest(
    call: Call,
    Path(digest): Path<String>,
) -> Result<Response, ApiError> {
    let r = proto::GetCardRequest {
        digest,
        ..Default::default()
    };
    let found = ops::get_card(&call.api.registry, &call.caller, r).await?;
    Ok(card_bytes(&call.headers, found, None))
}

/// `GET /v1/instances/{id}/card`: the card the instance serves.
pub(super) async fn instance_card(
    call: Call,
    Path(instance_id): Path<String>,
) -> Result<Response, ApiError> {
    let r = proto::GetCardRequest {
        instance_id,
        ..Default::default()
    };
    let found = ops::get_card(&call.api.registry, &call.caller, r).await?;
    Ok(card_bytes(&call.headers, found, None))
}

/// `GET /a2a/{ns}/{logical_id}/.well-known/agent-card.json`: the agent's current card, byte
/// for byte, while an instance is live (503 with `Retry-After` when none is, 404 without a
/// card). Readable without a token in the namespaces `--public-card-namespaces` opens.
pub(super) async fn well_known(
    State(api): State<Arc<HttpApi>>,
    Path((namespace, logical_id)): Path<(String, String)>,
    parts: http::request::Parts,
) -> Result<Response, ApiError> {
    let headers = &parts.headers;
    let peer: Option<SocketAddr> = parts.extensions.get::<ConnectInfo<Peer>>().map(|c| c.0.0);
    let ns = agent_registry_core::domain::normalize_namespace("namespace", &namespace)
        .map_err(|e| ApiError(status::registry(e.into())))?;
    let admitted = api
        .access
        .admit_card_read(headers, peer, &ns)
        .map_err(|e| ApiError(e.into()))?;
    admitted
        .caller
        .authorize(Action::GetAgent, Scope::Namespace(&ns))
        .map_err(|d| ApiError(d.into()))?;
    let agent = api
        .registry
        .agent(&ns, &logical_id)
        .map_err(|e| ApiError(status::registry(e)))?;
    if !agent.is_live() {
        let mut response = ApiError(status::no_live_instance(&ns, &logical_id)).into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        return Ok(response);
    }
    // Cached no longer than the soonest lease of a live instance may run out.
    let max_age = agent.cacheable_for().as_secs();
    let found = proto::GetCardResponse {
        card: Some(crate::api::cards::stored_card(&agent.card)),
    };
    Ok(card_bytes(headers, found, Some(max_age)))
}

/// A card as its own bytes: `application/json`, its digest as the entity tag (304 when the
/// client holds it), never sniffed as anything else; cacheable for `max_age` seconds when
/// given, else revalidated.
fn card_bytes(
    request: &HeaderMap,
    found: proto::GetCardResponse,
    max_age: Option<u64>,
) -> Response {
    let stored = found.card.unwrap_or_default();
    let etag = format!("\"{}\"", stored.digest);
    let cache = match max_age {
        Some(s) => format!("max-age={s}"),
        None => "no-cache".to_string(),
    };
    let fresh = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*");
    let mut response = match fresh {
        true => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            r
        }
        false => {
            let json = stored.card.map(|c| c.json).unwrap_or_default();
            let mut r = Response::new(Body::from(json));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&cache) {
        h.insert(header::CACHE_CONTROL, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
