//! Reads over the index: Discover's three views with keyset paging, and namespace summaries.

use std::ops::Bound;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::page::{self, Cursor};
use super::postings::{Key, Narrowed};
use super::{Held, Index, Listed, NamespaceEntry};
use crate::domain::{InstanceFilter, InstanceStatus, NamespaceSummary, ValidationError};

/// Which instances Discover returns (SPEC §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// The active instance of each logical id, then filtered: `active_instance` with a WHERE.
    Active,
    /// Every live instance: `active_instances`.
    Live,
    /// Every retained instance.
    All,
}

/// One page of results and the snapshot revision it was read at.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: String,
    pub revision: i64,
}

/// The index keys to visit, in order, strictly after `after`: only the requested logical ids'
/// ranges when the filter names some, else only the keys under the filter's most selective
/// agent type, capability or label (`narrowed`, read once per query), else the whole namespace.
fn candidates<'a>(
    entry: &'a NamespaceEntry,
    filter: &'a InstanceFilter,
    narrowed: Narrowed<'a>,
    after: Bound<Key>,
) -> Box<dyn Iterator<Item = &'a Held> + 'a> {
    if filter.logical_ids.is_empty() {
        return match narrowed {
            Narrowed::Unconstrained => Box::new(
                entry
                    .instances
                    .range((after, Bound::Unbounded))
                    .map(|(_, v)| v),
            ),
            Narrowed::Nothing => Box::new(std::iter::empty()),
            Narrowed::Within(keys) => Box::new(
                keys.range((after, Bound::Unbounded))
                    .filter_map(|k| entry.instances.get(k)),
            ),
        };
    }
    let floor = match &after {
        Bound::Excluded((lid, _)) => Some(lid.clone()),
        _ => None,
    };
    Box::new(
        filter
            .logical_ids
            .iter()
            .filter(move |lid| floor.as_ref().is_none_or(|f| lid.as_str() >= &**f))
            .flat_map(move |lid| logical(entry, lid, &after)),
    )
}

/// The instances of one logical id, in key order, strictly after `after`.
fn logical<'a>(
    entry: &'a NamespaceEntry,
    lid: &str,
    after: &Bound<Key>,
) -> impl Iterator<Item = &'a Held> + use<'a> {
    let lo = match after {
        Bound::Excluded(k) if &*k.0 == lid => Bound::Excluded(k.clone()),
        _ => Bound::Included((Arc::from(lid), Uuid::nil())),
    };
    let hi = Bound::Included((Arc::from(lid), Uuid::max()));
    entry.instances.range((lo, hi)).map(|(_, v)| v)
}

/// ACTIVE through the postings: the active instance is chosen among every live instance of its
/// logical id and only then filtered, so each logical id with a live candidate on the list is
/// resolved over its whole range (one lookup per logical id, not per candidate).
fn active_narrowed<'a>(
    entry: &'a NamespaceEntry,
    filter: &'a InstanceFilter,
    keys: &'a std::collections::BTreeSet<Key>,
    after: Bound<Key>,
    live: impl Fn(&Held) -> bool + Copy + 'a,
) -> impl Iterator<Item = &'a Held> + 'a {
    let mut last: Option<Arc<str>> = None;
    keys.range((after, Bound::Unbounded))
        .filter_map(move |k| entry.instances.get(k).filter(|h| live(h)).map(|_| k))
        .filter(move |k| {
            let new = last.as_deref() != Some(&*k.0);
            if new {
                last = Some(k.0.clone());
            }
            new
        })
        .filter_map(move |k| {
            ActiveGroups {
                inner: logical(entry, &k.0, &Bound::Unbounded)
                    .filter(|h| live(h))
                    .peekable(),
            }
            .next()
        })
        .filter(|h| filter.matches(&h.row))
}

impl Index {
    /// Discover from memory: never touches the store.
    pub fn discover(
        &self,
        filter: &InstanceFilter,
        view: View,
        page_size: usize,
        page_token: &str,
        now: DateTime<Utc>,
    ) -> Result<Page<Listed>, ValidationError> {
        let query = page::fingerprint(&format!("{view:?}{filter:?}"));
        let cursor = page::decode(page_token, query)?;
        let st = self.read();
        let mut page = Page {
            items: Vec::new(),
            next_page_token: String::new(),
            revision: st.revision,
        };
        let Some(entry) = st.namespaces.get(&filter.namespace) else {
            return Ok(page);
        };
        let epoch = entry.namespace.current_epoch;
        let after = match cursor {
            None => Bound::Unbounded,
            // An ACTIVE cursor carries the max id: resume after the whole logical id.
            Some(c) => Bound::Excluded((Arc::from(c.logical_id.as_str()), c.instance_id)),
        };
        let live = move |h: &Held| h.is_live(epoch, now);
        let narrowed = match filter.logical_ids.is_empty() {
            true => entry.postings.narrow(filter),
            false => Narrowed::Unconstrained,
        };
        let mut matches: Box<dyn Iterator<Item = &Held>> = match (view, narrowed) {
            (View::Active, Narrowed::Within(keys)) => {
                Box::new(active_narrowed(entry, filter, keys, after, live))
            }
            (view, narrowed) => Self::scan(entry, filter, narrowed, view, after, live),
        };
        for held in matches.by_ref().take(page_size) {
            page.items.push(held.listed());
        }
        if let (Some(last), Some(_)) = (page.items.last(), matches.next()) {
            let cursor = Cursor {
                logical_id: last.logical_id.clone(),
                instance_id: match view {
                    View::Active => Uuid::max(),
                    _ => last.instance_id,
                },
            };
            page.next_page_token = page::encode(query, &cursor);
        }
        Ok(page)
    }

    /// The matches of `view` among the candidates (a logical id's range, a posting list, or the
    /// namespace), in key order.
    fn scan<'a>(
        entry: &'a NamespaceEntry,
        filter: &'a InstanceFilter,
        narrowed: Narrowed<'a>,
        view: View,
        after: Bound<Key>,
        live: impl Fn(&Held) -> bool + Copy + 'a,
    ) -> Box<dyn Iterator<Item = &'a Held> + 'a> {
        match view {
            View::All => Box::new(
                candidates(entry, filter, narrowed, after).filter(|h| filter.matches(&h.row)),
            ),
            View::Live => Box::new(
                candidates(entry, filter, narrowed, after)
                    .filter(move |h| live(h) && filter.matches(&h.row)),
            ),
            // Without postings: every live instance of each logical id passes in key order.
            View::Active => Box::new(
                ActiveGroups {
                    inner: candidates(entry, filter, narrowed, after)
                        .filter(move |h| live(h))
                        .peekable(),
                }
                .filter(|h| filter.matches(&h.row)),
            ),
        }
    }

    /// One namespace with its counts, or `None` if it was never created.
    pub fn namespace(&self, name: &str, now: DateTime<Utc>) -> Option<NamespaceSummary> {
        self.read().namespaces.get(name).map(|e| summarize(e, now))
    }

    /// Every namespace's summary, in name order (for metrics).
    pub fn all_namespaces(&self, now: DateTime<Utc>) -> Vec<NamespaceSummary> {
        let st = self.read();
        st.namespaces.values().map(|e| summarize(e, now)).collect()
    }

    /// Namespaces in name order, paged like Discover.
    pub fn namespaces(
        &self,
        page_size: usize,
        page_token: &str,
        now: DateTime<Utc>,
        visible: &dyn Fn(&str) -> bool,
    ) -> Result<Page<NamespaceSummary>, ValidationError> {
        let query = page::fingerprint("namespaces");
        let after = match page::decode(page_token, query)? {
            None => Bound::Unbounded,
            Some(c) => Bound::Excluded(c.logical_id),
        };
        let st = self.read();
        let mut entries = st
            .namespaces
            .range::<String, _>((after, Bound::Unbounded))
            .filter(|(name, _)| visible(name));
        let items: Vec<_> = entries
            .by_ref()
            .take(page_size)
            .map(|(_, e)| summarize(e, now))
            .collect();
        let next_page_token = match (items.last(), entries.next()) {
            (Some(last), Some(_)) => page::encode(
                query,
                &Cursor {
                    logical_id: last.namespace.name.clone(),
                    instance_id: Uuid::nil(),
                },
            ),
            _ => String::new(),
        };
        Ok(Page {
            items,
            next_page_token,
            revision: st.revision,
        })
    }
}

fn summarize(entry: &NamespaceEntry, now: DateTime<Utc>) -> NamespaceSummary {
    let mut s = NamespaceSummary {
        namespace: entry.namespace.clone(),
        starting: 0,
        alive: 0,
        draining: 0,
        dead: 0,
        live: 0,
    };
    for held in entry.instances.values() {
        match held.row.status {
            InstanceStatus::Starting => s.starting += 1,
            InstanceStatus::Alive => s.alive += 1,
            InstanceStatus::Draining => s.draining += 1,
            InstanceStatus::Dead => s.dead += 1,
        }
        if held.is_live(entry.namespace.current_epoch, now) {
            s.live += 1;
        }
    }
    s
}

/// Reduces live instances (in key order) to the most senior one per logical id.
struct ActiveGroups<'a, I: Iterator<Item = &'a Held>> {
    inner: std::iter::Peekable<I>,
}

impl<'a, I: Iterator<Item = &'a Held>> Iterator for ActiveGroups<'a, I> {
    type Item = &'a Held;

    fn next(&mut self) -> Option<&'a Held> {
        let mut best = self.inner.next()?;
        while let Some(next) = self
            .inner
            .next_if(|n| n.row.logical_id == best.row.logical_id)
        {
            if next.row.seniority() < best.row.seniority() {
                best = next;
            }
        }
        Some(best)
    }
}
