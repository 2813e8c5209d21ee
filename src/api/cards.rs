//! Conversions of the catalog's answers (agents, cards, card versions) to the contract's
//! messages, and of its requests to the core's queries.

use agent_registry_core::domain::StoredCard;
use agent_registry_core::domain::card::{CardInput, CardKind, SkillRef};
use agent_registry_core::registry::{AgentQuery, AgentView, CardVersion};

use super::convert::timestamp;
use crate::proto;

pub fn kind(k: CardKind) -> proto::CardKind {
    match k {
        CardKind::A2a => proto::CardKind::A2a,
        CardKind::Mcp => proto::CardKind::Mcp,
    }
}

/// A kind the contract names; `None` for unspecified or a value it lacks.
fn named_kind(k: i32) -> Option<CardKind> {
    match proto::CardKind::try_from(k).ok()? {
        proto::CardKind::Unspecified => None,
        proto::CardKind::A2a => Some(CardKind::A2a),
        proto::CardKind::Mcp => Some(CardKind::Mcp),
    }
}

/// A kind as a request gives it (unspecified: A2A); `None` for a value the contract lacks.
pub fn kind_of(k: i32) -> Option<CardKind> {
    match k == proto::CardKind::Unspecified as i32 {
        true => Some(CardKind::A2a),
        false => named_kind(k),
    }
}

/// A card as a request carries it; an unknown kind is left for validation to name.
pub fn card_input(c: proto::Card) -> CardInput {
    CardInput {
        kind: match kind_of(c.kind) {
            Some(k) => k.as_str().to_string(),
            None => format!("{}", c.kind),
        },
        json: c.json.into_bytes(),
    }
}

/// The card's JSON text, byte for byte (cards are validated UTF-8 when stored).
pub fn card(c: &StoredCard) -> Option<proto::Card> {
    let body = c.card.as_ref()?;
    Some(proto::Card {
        kind: kind(c.kind) as i32,
        json: String::from_utf8_lossy(&body.bytes).into_owned(),
    })
}

/// Owned copies of a summary's strings.
fn owned<'a>(items: impl Iterator<Item = &'a str>) -> Vec<String> {
    items.map(str::to_string).collect()
}

/// A skill; with its description and examples when `full` (search results leave them out).
fn skill(s: SkillRef, full: bool) -> proto::Skill {
    proto::Skill {
        id: s.id().to_string(),
        name: s.name().to_string(),
        description: match full {
            true => s.description().to_string(),
            false => String::new(),
        },
        tags: owned(s.tags()),
        examples: match full {
            true => owned(s.examples()),
            false => Vec::new(),
        },
        input_modes: owned(s.input_modes()),
        output_modes: owned(s.output_modes()),
    }
}

/// An agent; with its card's bytes and its skills' descriptions and examples when
/// `with_card` (GetAgent, PublishCard), without them in search results.
pub fn agent(a: &AgentView, with_card: bool) -> proto::Agent {
    let current = &a.card;
    let summary = current.card.as_ref().map(|c| &*c.summary);
    proto::Agent {
        namespace: a.namespace.clone(),
        logical_id: a.logical_id.clone(),
        kind: kind(current.kind) as i32,
        digest: current.digest.clone(),
        name: summary.map(|s| s.name().to_string()).unwrap_or_default(),
        description: summary
            .map(|s| s.description().to_string())
            .unwrap_or_default(),
        version: summary.map(|s| s.version().to_string()).unwrap_or_default(),
        skills: summary
            .map(|s| s.skills().map(|k| skill(k, with_card)).collect())
            .unwrap_or_default(),
        default_input_modes: summary
            .map(|s| owned(s.default_input_modes()))
            .unwrap_or_default(),
        default_output_modes: summary
            .map(|s| owned(s.default_output_modes()))
            .unwrap_or_default(),
        state: match a.is_live() {
            true => proto::AgentState::Live,
            false => proto::AgentState::NoLiveInstances,
        } as i32,
        live_count: a.live.len() as i32,
        live_instances: a
            .live
            .iter()
            .map(|l| proto::LiveInstance {
                instance_id: l.instance_id.to_string(),
                endpoint: l.endpoint.clone(),
                version: l.version.clone(),
                card_digest: l.card_digest.clone(),
                started_at: Some(timestamp(l.started_at)),
                lease_expires_at: Some(timestamp(l.lease_expires_at())),
            })
            .collect(),
        revision: a.revision,
        published_at: Some(timestamp(current.published_at)),
        card: with_card.then(|| card(current)).flatten(),
    }
}

pub fn stored_card(c: &StoredCard) -> proto::StoredCard {
    proto::StoredCard {
        namespace: c.namespace.clone(),
        logical_id: c.logical_id.clone(),
        digest: c.digest.clone(),
        card: card(c),
        published_at: Some(timestamp(c.published_at)),
        revision: c.revision,
    }
}

pub fn card_version(v: &CardVersion, current: &str) -> proto::CardVersion {
    let summary = v.card.card.as_ref().map(|c| &c.summary);
    proto::CardVersion {
        digest: v.card.digest.clone(),
        kind: kind(v.card.kind) as i32,
        name: summary.map(|s| s.name().to_string()).unwrap_or_default(),
        version: summary.map(|s| s.version().to_string()).unwrap_or_default(),
        published_at: Some(timestamp(v.card.published_at)),
        revision: v.card.revision,
        instance_count: v.instances as i32,
        live_count: v.live as i32,
        current: v.card.digest == current,
    }
}

/// A search as the core reads it; an unknown kind in `kinds` is `Err` with its value.
pub fn agent_query(r: proto::SearchAgentsRequest) -> Result<AgentQuery, i32> {
    let kinds = r
        .kinds
        .iter()
        .map(|k| named_kind(*k).ok_or(*k))
        .collect::<Result<_, _>>()?;
    Ok(AgentQuery {
        namespace: r.namespace,
        query: r.query,
        skills: r.skills.into_iter().collect(),
        tags: r.tags.into_iter().collect(),
        input_modes: r.input_modes.into_iter().collect(),
        output_modes: r.output_modes.into_iter().collect(),
        kinds,
        include_offline: r.include_offline,
        page_size: r.page_size,
        page_token: r.page_token,
    })
}
