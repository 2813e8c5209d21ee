//! Searching one namespace's agents (SPEC §15): ranked by BM25 when there is text to match,
//! else listed by logical id; exact filters on the current card; live agents only unless
//! asked; keyset pages. Answered from the index, under its read lock.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::agent_query::AgentQuery;
use super::catalog::AgentView;
use super::catalog::Catalog;
use super::cursor::{Cursor, decode, encode};
use super::docset::DocSet;
use super::search::DocId;
use super::search::terms;
use super::{Index, NamespaceEntry};
use crate::domain::{ValidationError, validate_page_size};

/// One result: the agent, its score (0 without a text query), and the skills that matched.
#[derive(Debug, Clone)]
pub struct AgentHit {
    pub agent: AgentView,
    pub score: f32,
    pub matched_skills: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct AgentPage {
    pub hits: Vec<AgentHit>,
    pub next_page_token: String,
    /// The revision the answer was read at.
    pub revision: i64,
}

/// A scored candidate, ordered best first (higher score, then smaller logical id).
struct Ranked {
    score: f32,
    logical_id: Arc<str>,
    doc: DocId,
}

impl PartialEq for Ranked {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Ranked {
    fn cmp(&self, o: &Self) -> Ordering {
        rank((self.score, &self.logical_id), (o.score, &o.logical_id))
    }
}

impl Index {
    /// One page of the agents of `q.namespace` that `q` selects (SPEC §15), judged at `now`
    /// (the store's clock). An unknown namespace is an empty page.
    pub fn search_agents(
        &self,
        q: &AgentQuery,
        now: DateTime<Utc>,
    ) -> Result<AgentPage, ValidationError> {
        let size = validate_page_size(q.page_size)?;
        let fingerprint = q.fingerprint();
        let cursor = decode(&q.page_token, fingerprint)?;
        let st = self.read();
        let revision = st.revision;
        let Some(entry) = st.namespaces.get(&q.namespace) else {
            return Ok(AgentPage {
                hits: Vec::new(),
                next_page_token: String::new(),
                revision,
            });
        };
        let words: Vec<String> = terms(&q.query).collect();
        let mut hits = match words.is_empty() {
            true => listed(entry, q, cursor.as_ref(), size + 1, now),
            false => ranked(entry, q, &words, cursor.as_ref(), size + 1, now),
        };
        let next_page_token = match hits.len() > size {
            true => {
                hits.truncate(size);
                let last = hits.last().expect("a full page");
                let cursor = Cursor {
                    score: (!words.is_empty()).then_some(last.score),
                    logical_id: last.agent.logical_id.clone(),
                };
                encode(fingerprint, &cursor)
            }
            false => String::new(),
        };
        Ok(AgentPage {
            hits,
            next_page_token,
            revision,
        })
    }
}

/// The agent `logical_id` if its current card is `digest` (any, when `None`) and it passes
/// the query's filters and liveness.
fn kept(
    entry: &NamespaceEntry,
    q: &AgentQuery,
    logical_id: &str,
    digest: Option<&str>,
    now: DateTime<Utc>,
) -> Option<AgentView> {
    let agent = entry.agent(logical_id, now)?;
    let body = agent.card.card.as_ref()?;
    let current = digest.is_none_or(|d| d == agent.card.digest);
    (current && (q.include_offline || agent.is_live()) && q.keeps(agent.card.kind, &body.summary))
        .then_some(agent)
}

/// Below this many versions under the most selective exact filter, a listing gathers their
/// agents and sorts them; from this many on, it walks the agents in order, skipping each one
/// without a version on every filter's lists (a page of 20 visits about 20 × agents ÷ agents
/// kept).
const GATHER_BELOW: usize = 1024;
/// A walk visits at most this many agents, then gathers the rest: filters each broad but
/// rarely holding together, or holding mostly for offline agents, would otherwise have a
/// page visit every agent.
const WALK_AT_MOST: usize = 4 * GATHER_BELOW;

#[cfg(test)]
thread_local! {
    /// The thresholds a test sets (gather below, walk at most), so its corpus takes every path.
    pub(super) static TEST_LISTING: std::cell::Cell<(usize, usize)> =
        const { std::cell::Cell::new((GATHER_BELOW, WALK_AT_MOST)) };
}

/// (gather below, walk at most).
fn thresholds() -> (usize, usize) {
    #[cfg(test)]
    return TEST_LISTING.with(std::cell::Cell::get);
    #[cfg(not(test))]
    (GATHER_BELOW, WALK_AT_MOST)
}

/// The agents, after `after` and in logical id order, of the versions on `any`'s lists that
/// `passes`.
fn gather<'a>(
    catalog: &'a Catalog,
    any: &[&[DocId]],
    passes: &dyn Fn(DocId) -> bool,
    after: Option<&str>,
) -> Vec<&'a Arc<str>> {
    let mut agents: Vec<&Arc<str>> = any
        .iter()
        .flat_map(|l| l.iter().copied())
        .filter(|doc| passes(*doc))
        .filter_map(|doc| catalog.doc(doc).map(|(logical_id, _)| logical_id))
        .filter(|l| after.is_none_or(|a| &***l > a))
        .collect();
    agents.sort_unstable();
    agents.dedup();
    agents
}

/// Without text: every agent the filters keep, by logical id, from the cursor on. When the
/// most selective exact filter names few versions, their agents are gathered and sorted;
/// else the agents are walked in order, and one without a version passing every filter (a
/// binary search in each filter's doc-ordered lists) is skipped before its card is read —
/// until the walk has visited [`WALK_AT_MOST`], when the rest are gathered.
fn listed(
    entry: &NamespaceEntry,
    q: &AgentQuery,
    cursor: Option<&Cursor>,
    want: usize,
    now: DateTime<Utc>,
) -> Vec<AgentHit> {
    let after = cursor.map(|c| c.logical_id.as_str());
    let catalog = &entry.catalog;
    // Each constraint: the lists of its keys some version has; a version must be on one of
    // each. A constraint none of whose keys any version has leaves nothing.
    let mut lists: Vec<Vec<&[DocId]>> = Vec::new();
    for any in q.constraints() {
        let held: Vec<&[DocId]> = any
            .iter()
            .map(|k| catalog.search.docs_with(k))
            .filter(|l| !l.is_empty())
            .collect();
        if held.is_empty() {
            return Vec::new();
        }
        lists.push(held);
    }
    let passes = |doc: DocId| {
        lists
            .iter()
            .all(|any| any.iter().any(|l| l.binary_search(&doc).is_ok()))
    };
    let size = |any: &Vec<&[DocId]>| any.iter().map(|l| l.len()).sum::<usize>();
    let (gather_below, walk_at_most) = thresholds();
    let driver: Box<dyn Iterator<Item = &Arc<str>>> = match lists.iter().min_by_key(|a| size(a)) {
        None => Box::new(catalog.agents_after(after)),
        Some(any) if size(any) < gather_below => {
            Box::new(gather(catalog, any, &passes, after).into_iter())
        }
        Some(any) => {
            let mut walk = catalog.agents_with(after, &passes);
            let (mut visited, mut last) = (0, after);
            let mut rest: Option<std::vec::IntoIter<&Arc<str>>> = None;
            Box::new(std::iter::from_fn(move || {
                loop {
                    if let Some(rest) = rest.as_mut() {
                        return rest.next();
                    }
                    if visited == walk_at_most {
                        rest = Some(gather(catalog, any, &passes, last).into_iter());
                        continue;
                    }
                    let (logical_id, has) = walk.next()?;
                    visited += 1;
                    last = Some(&**logical_id);
                    if has {
                        return Some(logical_id);
                    }
                }
            }))
        }
    };
    let mut out = Vec::new();
    for logical_id in driver {
        // Judged without gathering the agent's instances; only a result is built.
        let selected = entry.current(logical_id, now).is_some_and(|(card, live)| {
            (live || q.include_offline)
                && card
                    .card
                    .as_ref()
                    .is_some_and(|b| q.keeps(card.kind, &b.summary))
        });
        if !selected {
            continue;
        }
        if let Some(agent) = kept(entry, q, logical_id, None, now) {
            let body = agent.card.card.as_ref().expect("kept cards have a body");
            let matched_skills = q.matched(&[], &body.summary);
            out.push(AgentHit {
                agent,
                score: 0.0,
                matched_skills,
            });
            if out.len() == want {
                break;
            }
        }
    }
    out
}

/// Orders (score, logical id) pairs best first: higher score, then smaller logical id.
fn rank(a: (f32, &str), b: (f32, &str)) -> Ordering {
    a.0.total_cmp(&b.0).then_with(|| b.1.cmp(a.1))
}

/// With text: the best `want` versions matching a term, below the cursor, that pass the
/// filters, are their agent's current card and are live (unless offline ones are asked for).
/// The filters are a set of versions built from the keys at once. Whether a version is
/// current and served is looked up per agent, so it is first assumed: the best `2 × want`
/// are taken in one pass and checked in order; only when too few of them hold is the pass
/// made again checking each candidate that would place among the best.
fn ranked(
    entry: &NamespaceEntry,
    q: &AgentQuery,
    words: &[String],
    cursor: Option<&Cursor>,
    want: usize,
    now: DateTime<Utc>,
) -> Vec<AgentHit> {
    let catalog = &entry.catalog;
    let only = catalog.search.allowed(&q.constraints());
    if only.as_ref().is_some_and(DocSet::is_empty) {
        return Vec::new();
    }
    let bound = cursor.map(|c| (c.score.unwrap_or(f32::INFINITY), c.logical_id.as_str()));
    let serves = |r: &Ranked| {
        let Some((logical_id, card)) = catalog.doc(r.doc) else {
            return false;
        };
        // The filters again on the card itself: the bitmap and the card agree, and if they
        // ever did not, the checked pass would find what the quick one lost.
        let keeps = card
            .card
            .as_ref()
            .is_some_and(|b| q.keeps(card.kind, &b.summary));
        keeps
            && matches!(entry.current(logical_id, now),
            Some((current, live)) if current.digest == card.digest && (live || q.include_offline))
    };
    let top = |k: usize, check: bool| {
        best(entry, words, only.as_ref(), bound, k, |r| {
            !check || serves(r)
        })
    };
    let (taken, full) = top(2 * want, false);
    let mut chosen: Vec<Ranked> = taken.into_iter().filter(|r| serves(r)).take(want).collect();
    if chosen.len() < want && full {
        chosen = top(want, true).0;
    }
    chosen
        .into_iter()
        .filter_map(|r| {
            let digest = catalog.doc(r.doc).map(|(_, c)| c.digest.as_str());
            let agent = kept(entry, q, &r.logical_id, digest, now)?;
            let body = agent.card.card.as_ref().expect("kept cards have a body");
            let matched_skills = q.matched(words, &body.summary);
            Some(AgentHit {
                agent,
                score: r.score,
                matched_skills,
            })
        })
        .collect()
}

/// The best `k` scored versions in `only` below `bound` that `admit` lets in, best first, and
/// whether `k` were found. One pass over the scores keeps the best so far; a candidate is
/// shown to `admit` only when its score would place it among them.
fn best(
    entry: &NamespaceEntry,
    words: &[String],
    only: Option<&DocSet>,
    bound: Option<(f32, &str)>,
    k: usize,
    admit: impl Fn(&Ranked) -> bool,
) -> (Vec<Ranked>, bool) {
    let catalog = &entry.catalog;
    // The best so far, worst on top.
    let mut best: BinaryHeap<std::cmp::Reverse<Ranked>> = BinaryHeap::with_capacity(k + 1);
    catalog.search.score(words, only, |doc, score| {
        if let Some(worst) = best.peek().filter(|_| best.len() == k)
            && score < worst.0.score
        {
            return;
        }
        let Some((logical_id, _)) = catalog.doc(doc) else {
            return;
        };
        if bound.is_some_and(|b| rank((score, logical_id), b) != Ordering::Less) {
            return; // on an earlier page
        }
        if let Some(worst) = best.peek().filter(|_| best.len() == k)
            && rank((score, logical_id), (worst.0.score, &worst.0.logical_id)) != Ordering::Greater
        {
            return;
        }
        let candidate = Ranked {
            score,
            logical_id: logical_id.clone(),
            doc,
        };
        if !admit(&candidate) {
            return;
        }
        best.push(std::cmp::Reverse(candidate));
        if best.len() > k {
            best.pop();
        }
    });
    let full = best.len() == k;
    let mut out: Vec<Ranked> = best.into_iter().map(|r| r.0).collect();
    out.sort_unstable_by(|a, b| b.cmp(a));
    (out, full)
}
