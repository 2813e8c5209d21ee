//! `CatalogService`: agents' cards, searched and served bound to their leases (SPEC §15).
//! Reads take the Discover role (reader), publishing the Register role (agent).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::status::{self, invalid};
use super::{authorize_instance, authorize_namespace, caller, cards};
use crate::proto::{self, catalog_service_server::CatalogService};
use crate::security::{Action, Caller, Scope};
use agent_registry_core::registry::Registry;

pub struct CatalogApi(pub Arc<Registry>);

/// SearchAgents: one page of the namespace's agents the query selects.
pub async fn search_agents(
    registry: &Registry,
    caller: &Caller,
    r: proto::SearchAgentsRequest,
) -> Result<proto::SearchAgentsResponse, Status> {
    authorize_namespace(caller, Action::SearchAgents, &r.namespace)?;
    let query =
        cards::agent_query(r).map_err(|k| invalid("kinds", &format!("{k} is not a CardKind")))?;
    let page = registry.search_agents(query).map_err(status::registry)?;
    Ok(proto::SearchAgentsResponse {
        results: page
            .hits
            .iter()
            .map(|h| proto::SearchResult {
                agent: Some(cards::agent(&h.agent, false)),
                score: h.score,
                matched_skills: h.matched_skills.clone(),
            })
            .collect(),
        next_page_token: page.next_page_token,
        revision: page.revision,
    })
}

/// GetAgent: the agent's current card and live instances.
pub async fn get_agent(
    registry: &Registry,
    caller: &Caller,
    r: proto::GetAgentRequest,
) -> Result<proto::GetAgentResponse, Status> {
    authorize_namespace(caller, Action::GetAgent, &r.namespace)?;
    let agent = registry
        .agent(&r.namespace, &r.logical_id)
        .map_err(status::registry)?;
    Ok(proto::GetAgentResponse {
        agent: Some(cards::agent(&agent, true)),
    })
}

/// PublishCard: the card stored (or published again) for the agent.
pub async fn publish_card(
    registry: &Registry,
    caller: &Caller,
    r: proto::PublishCardRequest,
) -> Result<proto::PublishCardResponse, Status> {
    authorize_namespace(caller, Action::PublishCard, &r.namespace)?;
    let card = r.card.ok_or_else(|| invalid("card", "required"))?;
    let (digest, agent) = registry
        .publish_card(&r.namespace, &r.logical_id, cards::card_input(card))
        .await
        .map_err(status::registry)?;
    Ok(proto::PublishCardResponse {
        agent: Some(cards::agent(&agent, true)),
        digest,
    })
}

/// GetCard: by the instance serving it, by digest of one agent, or by digest of any agent in a
/// namespace the caller may read.
pub async fn get_card(
    registry: &Registry,
    caller: &Caller,
    r: proto::GetCardRequest,
) -> Result<proto::GetCardResponse, Status> {
    let card = if !r.instance_id.is_empty() {
        authorize_instance(registry, caller, Action::GetCard, &r.instance_id).await?;
        registry.instance_card(&r.instance_id)
    } else if !r.logical_id.is_empty() {
        authorize_namespace(caller, Action::GetCard, &r.namespace)?;
        registry.agent_card(&r.namespace, &r.logical_id, &r.digest)
    } else {
        caller.authorize(Action::GetCard, Scope::Listing)?;
        let readable = |ns: &str| {
            caller
                .authorize(Action::GetCard, Scope::Namespace(ns))
                .is_ok()
        };
        registry.card_by_digest(&r.digest, &readable)
    }
    .map_err(status::registry)?;
    Ok(proto::GetCardResponse {
        card: Some(cards::stored_card(&card)),
    })
}

/// ListCardVersions: every version still kept, newest first, which one is current marked.
pub async fn list_card_versions(
    registry: &Registry,
    caller: &Caller,
    r: proto::ListCardVersionsRequest,
) -> Result<proto::ListCardVersionsResponse, Status> {
    authorize_namespace(caller, Action::ListCardVersions, &r.namespace)?;
    let versions = registry
        .card_versions(&r.namespace, &r.logical_id)
        .map_err(status::registry)?;
    let current = registry
        .agent(&r.namespace, &r.logical_id)
        .map(|a| a.card.digest.clone())
        .unwrap_or_default();
    Ok(proto::ListCardVersionsResponse {
        versions: versions
            .iter()
            .map(|v| cards::card_version(v, &current))
            .collect(),
    })
}

bind! {
    impl CatalogService for CatalogApi {
        search_agents: SearchAgentsRequest => SearchAgentsResponse;
        get_agent: GetAgentRequest => GetAgentResponse;
        publish_card: PublishCardRequest => PublishCardResponse;
        get_card: GetCardRequest => GetCardResponse;
        list_card_versions: ListCardVersionsRequest => ListCardVersionsResponse;
    }
}
