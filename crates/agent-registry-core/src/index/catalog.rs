//! The cards of one namespace's agents (every version not collected, by logical id and
//! digest) and their text index. An agent's current card — the active instance's, else the
//! latest published — and its liveness are judged when asked, from the instances held beside
//! it, so a lease running out changes answers at once, with no write.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::search::{DocId, SearchIndex};
use super::{Listed, NamespaceEntry};
use crate::domain::StoredCard;

/// One agent as an answer gives it: its current card and its live instances (SPEC §15).
#[derive(Debug, Clone)]
pub struct AgentView {
    pub namespace: String,
    pub logical_id: String,
    /// The current card (never a collected version).
    pub card: Arc<StoredCard>,
    /// Every live instance, active first (then by seniority).
    pub live: Vec<Listed>,
    /// The highest revision of its cards and instances: what last changed about it.
    pub revision: i64,
    /// When it was judged, on the store's clock (the leases' clock).
    pub judged_at: DateTime<Utc>,
}

impl AgentView {
    /// `LIVE`: at least one instance is live.
    pub fn is_live(&self) -> bool {
        !self.live.is_empty()
    }

    /// When the soonest lease of a live instance runs out unless renewed.
    pub fn soonest_lease_end(&self) -> Option<DateTime<Utc>> {
        self.live.iter().map(Listed::lease_expires_at).min()
    }

    /// How long a copy of its card may be kept: until the soonest live lease may run out,
    /// counted on the leases' own clock (zero when nothing is live).
    pub fn cacheable_for(&self) -> std::time::Duration {
        self.soonest_lease_end()
            .and_then(|end| (end - self.judged_at).to_std().ok())
            .unwrap_or_default()
    }
}

/// One version of an agent's card with the instances that serve it.
#[derive(Debug, Clone)]
pub struct CardVersion {
    pub card: Arc<StoredCard>,
    /// Retained instances serving it, and how many of them are live.
    pub instances: usize,
    pub live: usize,
}

#[derive(Debug, Default)]
struct Versions {
    by_digest: HashMap<String, (Arc<StoredCard>, DocId)>,
}

impl Versions {
    /// The latest published version: the highest revision.
    fn latest(&self) -> Option<&Arc<StoredCard>> {
        self.by_digest
            .values()
            .map(|(c, _)| c)
            .max_by_key(|c| c.revision)
    }
}

#[derive(Debug, Default)]
pub(super) struct Catalog {
    agents: BTreeMap<Arc<str>, Versions>,
    pub(super) search: SearchIndex,
    /// Each indexed version, by its place in the text index.
    docs: Vec<Option<(Arc<str>, Arc<StoredCard>)>>,
}

impl Catalog {
    /// Applies a published or collected version, if newer than the one held. The digest's
    /// owners (`by_digest`) follow.
    pub fn apply(
        &mut self,
        card: StoredCard,
        by_digest: &mut HashMap<String, Vec<(String, Arc<str>)>>,
    ) {
        let logical: Arc<str> = match self.agents.get_key_value(card.logical_id.as_str()) {
            Some((k, _)) => k.clone(),
            None => Arc::from(card.logical_id.as_str()),
        };
        let versions = self.agents.entry(logical.clone()).or_default();
        if let Some((held, doc)) = versions.by_digest.get_mut(&card.digest) {
            if held.revision >= card.revision {
                return;
            }
            if let Some(body) = &card.card {
                // Published again: the same content (same digest), a newer revision. Read as
                // another kind, the same bytes have other keys and terms: indexed anew.
                if held.kind != card.kind {
                    if let Some(old) = &held.card {
                        self.search.remove(*doc, held.kind, &old.summary);
                    }
                    *doc = self.search.add(card.kind, &body.summary);
                    if self.docs.len() <= *doc as usize {
                        self.docs.resize(*doc as usize + 1, None);
                    }
                }
                *held = Arc::new(card);
                self.docs[*doc as usize] = Some((logical, held.clone()));
                return;
            }
            let (gone, doc) = versions.by_digest.remove(&card.digest).expect("held");
            if let Some(body) = &gone.card {
                self.search.remove(doc, gone.kind, &body.summary);
            }
            self.docs[doc as usize] = None;
            if let Some(owners) = by_digest.get_mut(&card.digest) {
                owners.retain(|(ns, lid)| !(ns == &card.namespace && lid == &logical));
                if owners.is_empty() {
                    by_digest.remove(&card.digest);
                }
            }
            if versions.by_digest.is_empty() {
                self.agents.remove(&logical);
            }
            return;
        }
        let Some(body) = &card.card else {
            // A tombstone of a version never seen here.
            if versions.by_digest.is_empty() {
                self.agents.remove(&logical);
            }
            return;
        };
        let doc = self.search.add(card.kind, &body.summary);
        let card = Arc::new(card);
        if self.docs.len() <= doc as usize {
            self.docs.resize(doc as usize + 1, None);
        }
        self.docs[doc as usize] = Some((logical.clone(), card.clone()));
        by_digest
            .entry(card.digest.clone())
            .or_default()
            .push((card.namespace.clone(), logical.clone()));
        self.agents
            .get_mut(&logical)
            .expect("inserted above")
            .by_digest
            .insert(card.digest.clone(), (card, doc));
    }

    /// The version of an indexed doc, with its agent.
    pub fn doc(&self, doc: DocId) -> Option<&(Arc<str>, Arc<StoredCard>)> {
        self.docs.get(doc as usize).and_then(Option::as_ref)
    }

    /// Agents with a card and their versions, in logical id order, from after `after` (or the
    /// first).
    fn from<'a>(
        &'a self,
        after: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a Arc<str>, &'a Versions)> {
        use std::ops::Bound;
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.agents.range::<str, _>((start, Bound::Unbounded))
    }

    /// Agents with a card, in logical id order, from after `after` (or the first).
    pub fn agents_after<'a>(
        &'a self,
        after: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Arc<str>> + 'a {
        self.from(after).map(|(k, _)| k)
    }

    /// [`Self::agents_after`], each with whether a version of it `passes`.
    pub fn agents_with<'a>(
        &'a self,
        after: Option<&'a str>,
        passes: impl Fn(DocId) -> bool + 'a,
    ) -> impl Iterator<Item = (&'a Arc<str>, bool)> + 'a {
        self.from(after)
            .map(move |(k, v)| (k, v.by_digest.values().any(|(_, doc)| passes(*doc))))
    }

    pub fn version(&self, logical_id: &str, digest: &str) -> Option<Arc<StoredCard>> {
        let versions = self.agents.get(logical_id)?;
        versions.by_digest.get(digest).map(|(c, _)| c.clone())
    }

    /// Bytes held for cards and their index (an estimate, for memory accounting).
    pub fn approx_size(&self) -> usize {
        let cards: usize = self
            .agents
            .values()
            .flat_map(|v| v.by_digest.values())
            .map(|(c, _)| {
                let body = c.card.as_ref();
                body.map_or(0, |b| b.bytes.len() + b.summary.approx_size())
                    + c.digest.len() * 2
                    + c.logical_id.len()
                    + 160
            })
            .sum();
        cards + self.search.approx_size() + self.docs.len() * 24
    }
}

impl NamespaceEntry {
    /// The agent `logical_id` as it is now, or `None` when it has no card.
    pub(super) fn agent(&self, logical_id: &str, now: DateTime<Utc>) -> Option<AgentView> {
        let versions = self.catalog.agents.get(logical_id)?;
        let epoch = self.namespace.current_epoch;
        let logical: Arc<str> = Arc::from(logical_id);
        let range = (logical.clone(), Uuid::nil())..=(logical, Uuid::max());
        let mut live: Vec<Listed> = Vec::new();
        let mut revision = 0;
        for held in self.instances.range(range).map(|(_, h)| h) {
            revision = revision.max(held.row.revision);
            if held.is_live(epoch, now) {
                live.push(held.listed());
            }
        }
        live.sort_by_key(|l| l.row.seniority());
        let served = live
            .first()
            .and_then(|active| versions.by_digest.get(&active.row.card_digest))
            .map(|(c, _)| c);
        let card = served.or_else(|| versions.latest())?.clone();
        Some(AgentView {
            namespace: self.namespace.name.clone(),
            logical_id: logical_id.to_string(),
            revision: revision.max(card.revision),
            card,
            live,
            judged_at: now,
        })
    }

    /// The agent's current card and whether anything live serves it, as [`Self::agent`]
    /// judges them, without gathering its instances: for filtering many candidates.
    pub(super) fn current(
        &self,
        logical_id: &Arc<str>,
        now: DateTime<Utc>,
    ) -> Option<(&Arc<StoredCard>, bool)> {
        let versions = self.catalog.agents.get(logical_id)?;
        let epoch = self.namespace.current_epoch;
        let range = (logical_id.clone(), Uuid::nil())..=(logical_id.clone(), Uuid::max());
        let active = self
            .instances
            .range(range)
            .map(|(_, h)| h)
            .filter(|h| h.is_live(epoch, now))
            .min_by_key(|h| h.row.seniority());
        let served = active
            .and_then(|a| versions.by_digest.get(&a.row.card_digest))
            .map(|(c, _)| c);
        Some((served.or_else(|| versions.latest())?, active.is_some()))
    }

    /// Every version of the agent's card, newest first, with the instances serving each.
    pub(super) fn card_versions(&self, logical_id: &str, now: DateTime<Utc>) -> Vec<CardVersion> {
        let Some(versions) = self.catalog.agents.get(logical_id) else {
            return Vec::new();
        };
        let epoch = self.namespace.current_epoch;
        let logical: Arc<str> = Arc::from(logical_id);
        let range = (logical.clone(), Uuid::nil())..=(logical, Uuid::max());
        let mut serving: HashMap<&str, (usize, usize)> = HashMap::new();
        for held in self.instances.range(range).map(|(_, h)| h) {
            if held.row.card_digest.is_empty()
                || held.row.status == crate::domain::InstanceStatus::Dead
            {
                continue;
            }
            let n = serving.entry(held.row.card_digest.as_str()).or_default();
            n.0 += 1;
            n.1 += held.is_live(epoch, now) as usize;
        }
        let mut out: Vec<CardVersion> = versions
            .by_digest
            .values()
            .map(|(card, _)| {
                let (instances, live) = serving
                    .get(card.digest.as_str())
                    .copied()
                    .unwrap_or_default();
                CardVersion {
                    card: card.clone(),
                    instances,
                    live,
                }
            })
            .collect();
        out.sort_by_key(|v| std::cmp::Reverse(v.card.revision));
        out
    }
}

impl super::Index {
    /// The agent `logical_id` of `namespace` as it is now (`now` on the store's clock), or
    /// `None` when it has no card.
    pub fn agent(
        &self,
        namespace: &str,
        logical_id: &str,
        now: DateTime<Utc>,
    ) -> Option<AgentView> {
        self.read()
            .namespaces
            .get(namespace)?
            .agent(logical_id, now)
    }

    /// Every version of the agent's card, newest first (empty when it has none).
    pub fn card_versions(
        &self,
        namespace: &str,
        logical_id: &str,
        now: DateTime<Utc>,
    ) -> Vec<CardVersion> {
        let st = self.read();
        st.namespaces
            .get(namespace)
            .map(|e| e.card_versions(logical_id, now))
            .unwrap_or_default()
    }

    /// One version of an agent's card.
    pub fn card(&self, namespace: &str, logical_id: &str, digest: &str) -> Option<Arc<StoredCard>> {
        let st = self.read();
        st.namespaces
            .get(namespace)?
            .catalog
            .version(logical_id, digest)
    }

    /// A card by digest alone, from the first agent (by namespace, then logical id) that has
    /// it and whose namespace `visible` admits.
    pub fn card_by_digest(
        &self,
        digest: &str,
        visible: &dyn Fn(&str) -> bool,
    ) -> Option<Arc<StoredCard>> {
        let st = self.read();
        let mut owners: Vec<&(String, Arc<str>)> = st.by_digest.get(digest)?.iter().collect();
        owners.sort();
        owners
            .into_iter()
            .filter(|(ns, _)| visible(ns))
            .find_map(|(ns, lid)| st.namespaces.get(ns)?.catalog.version(lid, digest))
    }

    /// Bytes held for the cards of every namespace and their index (an estimate).
    pub fn cards_size(&self) -> usize {
        let st = self.read();
        st.namespaces
            .values()
            .map(|e| e.catalog.approx_size())
            .sum()
    }
}
