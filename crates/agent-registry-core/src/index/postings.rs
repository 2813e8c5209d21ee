//! Secondary indexes of one namespace: the keys of its instances by agent type, by capability
//! and by label pair, each in key order, so a filtered Discover page visits only instances that
//! can match and pages by the same keyset cursor as the full scan.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use uuid::Uuid;

use crate::domain::{Instance, InstanceFilter};

/// An instance's place in its namespace: (logical id, instance id).
pub(super) type Key = (Arc<str>, Uuid);

#[derive(Debug, Default)]
pub(super) struct Postings {
    by_type: HashMap<String, BTreeSet<Key>>,
    by_capability: HashMap<String, BTreeSet<Key>>,
    by_label: HashMap<(String, String), BTreeSet<Key>>,
}

/// What the postings say about a filter.
#[derive(Clone, Copy)]
pub(super) enum Narrowed<'a> {
    /// The filter names no agent type, capability or label: every instance is a candidate.
    Unconstrained,
    /// Some named value has no instance at all: nothing can match.
    Nothing,
    /// The keys under the filter's most selective value: every match is among them.
    Within(&'a BTreeSet<Key>),
}

impl Postings {
    /// Files `i` under its key.
    pub(super) fn add(&mut self, key: &Key, i: &Instance) {
        self.by_type
            .entry(i.agent_type.clone())
            .or_default()
            .insert(key.clone());
        for c in &i.capabilities {
            self.by_capability
                .entry(c.clone())
                .or_default()
                .insert(key.clone());
        }
        for (k, v) in &i.labels {
            self.by_label
                .entry((k.clone(), v.clone()))
                .or_default()
                .insert(key.clone());
        }
    }

    /// Unfiles `i` (as it was filed) from under its key; empty lists are dropped.
    pub(super) fn remove(&mut self, key: &Key, i: &Instance) {
        unfile(&mut self.by_type, &i.agent_type, key);
        for c in &i.capabilities {
            unfile(&mut self.by_capability, c, key);
        }
        for (k, v) in &i.labels {
            // Looked up by an owned pair: labels are few per instance.
            unfile(&mut self.by_label, &(k.clone(), v.clone()), key);
        }
    }

    /// The smallest key list every instance matching `filter` is on.
    pub(super) fn narrow(&self, filter: &InstanceFilter) -> Narrowed<'_> {
        let mut lists = Vec::new();
        if let Some(t) = &filter.agent_type {
            lists.push(self.by_type.get(t));
        }
        for c in &filter.capabilities {
            lists.push(self.by_capability.get(c));
        }
        for (k, v) in &filter.label_selector {
            lists.push(self.by_label.get(&(k.clone(), v.clone())));
        }
        if lists.is_empty() {
            return Narrowed::Unconstrained;
        }
        match lists.into_iter().collect::<Option<Vec<_>>>() {
            None => Narrowed::Nothing,
            Some(found) => found
                .into_iter()
                .min_by_key(|l| l.len())
                .map_or(Narrowed::Nothing, Narrowed::Within),
        }
    }
}

fn unfile<Q: std::hash::Hash + Eq + Clone>(
    map: &mut HashMap<Q, BTreeSet<Key>>,
    value: &Q,
    key: &Key,
) {
    if let Some(keys) = map.get_mut(value) {
        keys.remove(key);
        if keys.is_empty() {
            map.remove(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_is_filed_under_its_current_values_only() {
        let mut p = Postings::default();
        let mut i = Instance::sample("a");
        i.agent_type = "planner".into();
        i.capabilities = vec!["plan".into()];
        i.labels.insert("zone".into(), "1".into());
        let key: Key = (Arc::from("a"), i.instance_id);
        p.add(&key, &i);
        let by_zone = |zone: &str| InstanceFilter {
            label_selector: [("zone".to_string(), zone.to_string())].into(),
            ..Default::default()
        };
        assert!(matches!(p.narrow(&by_zone("1")), Narrowed::Within(k) if k.contains(&key)));
        // Relabelled: unfiled from the old pair, filed under the new one.
        p.remove(&key, &i);
        i.labels.insert("zone".into(), "2".into());
        p.add(&key, &i);
        assert!(matches!(p.narrow(&by_zone("1")), Narrowed::Nothing));
        assert!(matches!(p.narrow(&by_zone("2")), Narrowed::Within(k) if k.len() == 1));
        assert!(matches!(
            p.narrow(&InstanceFilter::default()),
            Narrowed::Unconstrained
        ));
        p.remove(&key, &i);
        assert!(p.by_type.is_empty() && p.by_capability.is_empty() && p.by_label.is_empty());
    }
}
