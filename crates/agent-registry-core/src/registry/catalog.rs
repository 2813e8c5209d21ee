//! The catalog use cases (SPEC §15): publish a card for an agent, and read agents, their
//! cards and card versions, and search them — reads from this replica's index, on the store's
//! clock, so an agent is never shown reachable when nothing live serves it.

use std::sync::Arc;

use crate::domain::card::CardInput;
use crate::domain::{
    StoredCard, ValidationError, normalize_namespace, parse_uuid, validate_logical_id,
};
use crate::index::{AgentPage, AgentQuery, AgentView, CardVersion};

use super::{Registry, RegistryError};

/// The namespace and logical id of an agent, validated.
fn agent_name(namespace: &str, logical_id: &str) -> Result<(String, String), ValidationError> {
    let namespace = normalize_namespace("namespace", namespace)?;
    validate_logical_id(logical_id)?;
    Ok((namespace, logical_id.to_string()))
}

fn no_agent(namespace: &str, logical_id: &str) -> RegistryError {
    RegistryError::NotFound(format!("agent {namespace}/{logical_id} (no card)"))
}

impl Registry {
    /// Publishes `card` for `logical_id` in `namespace` (created if new): stored, or published
    /// again; from now on it is the agent's latest. Answers its digest and the agent as it now
    /// is (whose current card is a live instance's, when one serves another).
    pub async fn publish_card(
        &self,
        namespace: &str,
        logical_id: &str,
        card: CardInput,
    ) -> Result<(String, AgentView), RegistryError> {
        let (namespace, logical_id) = agent_name(namespace, logical_id)?;
        let card = card.parse(self.settings.catalog.max_card_bytes)?;
        let store = self.store.clone();
        let (ns, lid) = (namespace.clone(), logical_id.clone());
        let stored = self
            .write(async move {
                let r = store.publish_card(&ns, &lid, card).await?;
                Ok((r.card, r.changes))
            })
            .await?;
        tracing::info!(namespace, logical_id, digest = %stored.digest, kind = stored.kind.as_str(),
            "card published");
        Ok((stored.digest, self.agent(&namespace, &logical_id)?))
    }

    /// The agent as it is now: its current card and live instances.
    pub fn agent(&self, namespace: &str, logical_id: &str) -> Result<AgentView, RegistryError> {
        let (namespace, logical_id) = agent_name(namespace, logical_id)?;
        let now = self.store.clock().now();
        self.index
            .agent(&namespace, &logical_id, now)
            .ok_or_else(|| no_agent(&namespace, &logical_id))
    }

    /// Every version of the agent's card, newest first, with the instances serving each.
    pub fn card_versions(
        &self,
        namespace: &str,
        logical_id: &str,
    ) -> Result<Vec<CardVersion>, RegistryError> {
        let (namespace, logical_id) = agent_name(namespace, logical_id)?;
        let now = self.store.clock().now();
        let versions = self.index.card_versions(&namespace, &logical_id, now);
        match versions.is_empty() {
            true => Err(no_agent(&namespace, &logical_id)),
            false => Ok(versions),
        }
    }

    /// One version of an agent's card, by digest.
    pub fn agent_card(
        &self,
        namespace: &str,
        logical_id: &str,
        digest: &str,
    ) -> Result<Arc<StoredCard>, RegistryError> {
        let (namespace, logical_id) = agent_name(namespace, logical_id)?;
        self.index
            .card(&namespace, &logical_id, digest)
            .ok_or_else(|| {
                RegistryError::NotFound(format!("card {digest} of {namespace}/{logical_id}"))
            })
    }

    /// A card by digest, from any agent in a namespace `visible` admits.
    pub fn card_by_digest(
        &self,
        digest: &str,
        visible: &dyn Fn(&str) -> bool,
    ) -> Result<Arc<StoredCard>, RegistryError> {
        if !crate::domain::card::is_digest(digest) {
            return Err(ValidationError {
                field: "digest".into(),
                message: "must be `sha256:` and 64 lowercase hex digits".into(),
            }
            .into());
        }
        self.index
            .card_by_digest(digest, visible)
            .ok_or_else(|| RegistryError::NotFound(format!("card {digest}")))
    }

    /// The card an instance serves (the version it registered with).
    pub fn instance_card(&self, instance_id: &str) -> Result<Arc<StoredCard>, RegistryError> {
        let id = parse_uuid("instance_id", instance_id)?;
        let instance = self
            .index
            .get(id)
            .ok_or_else(|| RegistryError::NotFound(format!("instance_id {id}")))?;
        if instance.card_digest.is_empty() {
            return Err(RegistryError::NotFound(format!(
                "card of instance_id {id} (it registered without one)"
            )));
        }
        self.agent_card(
            &instance.namespace,
            &instance.logical_id,
            &instance.card_digest,
        )
    }

    /// One page of the agents a search selects (SPEC §15).
    pub fn search_agents(&self, mut query: AgentQuery) -> Result<AgentPage, RegistryError> {
        query.namespace = normalize_namespace("namespace", &query.namespace)?;
        let now = self.store.clock().now();
        Ok(self.index.search_agents(&query, now)?)
    }
}
