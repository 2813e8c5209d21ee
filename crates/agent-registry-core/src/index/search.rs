//! The text index of one namespace's cards: an inverted index from terms to the card versions
//! that use them, scored by BM25 with field weights (names weigh most), and the exact keys
//! filters select by (skill ids, tags, media types, kinds), each listing the agents that have
//! a version with that key. Updated as card versions come and go; read under the index lock.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::domain::card::{CardKind, CardSummary};

/// A card version's place in the index.
pub(super) type DocId = u32;

/// BM25's term-frequency saturation and length normalisation (the usual values).
const K1: f32 = 1.2;
const B: f32 = 0.75;

/// How much a word counts by where it appears: names weigh most (SPEC §15).
const NAME: f32 = 3.0;
const SKILL_NAME: f32 = 3.0;
const TAG: f32 = 2.0;
const SKILL_ID: f32 = 2.0;
const DESCRIPTION: f32 = 1.0;
const EXAMPLE: f32 = 1.0;

/// Words too common to tell cards apart.
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "is", "it", "of", "on",
    "or", "that", "the", "to", "with",
];

/// The terms of a text: lowercase runs of letters and digits, stop words left out.
pub fn terms(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| !STOP_WORDS.contains(&w.as_str()))
}

/// The exact keys of a card that filters select by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Key {
    Skill(String),
    Tag(String),
    InputMode(String),
    OutputMode(String),
    Kind(CardKind),
}

/// Every key a card has.
pub(super) fn keys(kind: CardKind, summary: &CardSummary) -> Vec<Key> {
    let mut out = vec![Key::Kind(kind)];
    out.extend(summary.skills.iter().map(|s| Key::Skill(s.id.clone())));
    out.extend(summary.tags().map(|t| Key::Tag(t.to_string())));
    out.extend(summary.input_modes().map(|m| Key::InputMode(m.to_string())));
    out.extend(
        summary
            .output_modes()
            .map(|m| Key::OutputMode(m.to_string())),
    );
    out.sort();
    out.dedup();
    out
}

#[derive(Debug)]
struct Doc {
    /// Weighted length (Σ weight × words).
    len: f32,
    terms: Vec<Arc<str>>,
}

#[derive(Debug, Default)]
pub(super) struct SearchIndex {
    docs: Vec<Option<Doc>>,
    free: Vec<DocId>,
    /// Term → (doc, weighted term frequency).
    postings: HashMap<Arc<str>, Vec<(DocId, f32)>>,
    entries: usize,
    live_docs: usize,
    total_len: f64,
    /// Key → agent (logical id) → how many of its versions have the key.
    keys: HashMap<Key, BTreeMap<Arc<str>, u32>>,
}

impl SearchIndex {
    /// Indexes a card version; its id.
    pub fn add(&mut self, logical_id: &Arc<str>, kind: CardKind, summary: &CardSummary) -> DocId {
        let mut tf: HashMap<String, f32> = HashMap::new();
        let mut len = 0.0;
        let mut count = |text: &str, weight: f32, tf: &mut HashMap<String, f32>| {
            for t in terms(text) {
                *tf.entry(t).or_default() += weight;
                len += weight;
            }
        };
        count(&summary.name, NAME, &mut tf);
        count(&summary.description, DESCRIPTION, &mut tf);
        for s in &summary.skills {
            count(&s.id, SKILL_ID, &mut tf);
            count(&s.name, SKILL_NAME, &mut tf);
            count(&s.description, DESCRIPTION, &mut tf);
            for tag in &s.tags {
                count(tag, TAG, &mut tf);
            }
            for example in &s.examples {
                count(example, EXAMPLE, &mut tf);
            }
        }
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.docs.push(None);
                (self.docs.len() - 1) as DocId
            }
        };
        let mut held = Vec::with_capacity(tf.len());
        for (term, f) in tf {
            let term: Arc<str> = match self.postings.get_key_value(term.as_str()) {
                Some((k, _)) => k.clone(),
                None => Arc::from(term),
            };
            self.postings.entry(term.clone()).or_default().push((id, f));
            self.entries += 1;
            held.push(term);
        }
        self.docs[id as usize] = Some(Doc { len, terms: held });
        self.live_docs += 1;
        self.total_len += len as f64;
        for key in keys(kind, summary) {
            *self
                .keys
                .entry(key)
                .or_default()
                .entry(logical_id.clone())
                .or_default() += 1;
        }
        id
    }

    /// Forgets a card version.
    pub fn remove(&mut self, id: DocId, logical_id: &str, kind: CardKind, summary: &CardSummary) {
        let Some(doc) = self.docs.get_mut(id as usize).and_then(Option::take) else {
            return;
        };
        self.live_docs -= 1;
        self.total_len -= doc.len as f64;
        self.free.push(id);
        for key in keys(kind, summary) {
            if let Some(agents) = self.keys.get_mut(&key) {
                if let Some(n) = agents.get_mut(logical_id) {
                    *n -= 1;
                    if *n == 0 {
                        agents.remove(logical_id);
                    }
                }
                if agents.is_empty() {
                    self.keys.remove(&key);
                }
            }
        }
        // Its postings go now (a freed id is taken again by the next card): card versions
        // are removed only when collected, which is rare.
        for term in &doc.terms {
            if let Some(list) = self.postings.get_mut(term) {
                list.retain(|(d, _)| *d != id);
                self.entries -= 1;
                if list.is_empty() {
                    self.postings.remove(term);
                }
            }
        }
    }

    /// The agents that have a version with `key`, in logical id order.
    pub fn agents_with(&self, key: &Key) -> Option<&BTreeMap<Arc<str>, u32>> {
        self.keys.get(key)
    }

    /// BM25 scores of every doc that uses a term of `query` (weighted by field), in doc order.
    pub fn score(&self, query: &[String]) -> Vec<(DocId, f32)> {
        if self.live_docs == 0 {
            return Vec::new();
        }
        let n = self.live_docs as f32;
        let avg = (self.total_len / self.live_docs as f64).max(1.0) as f32;
        let mut scores: HashMap<DocId, f32> = HashMap::new();
        let mut seen = Vec::new();
        for term in query {
            if seen.contains(term) {
                continue;
            }
            seen.push(term.clone());
            let Some(list) = self.postings.get(term.as_str()) else {
                continue;
            };
            let df = list.len() as f32;
            let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
            for (doc, tf) in list {
                let Some(Some(d)) = self.docs.get(*doc as usize) else {
                    continue;
                };
                let norm = K1 * (1.0 - B + B * d.len / avg);
                *scores.entry(*doc).or_default() += idf * tf * (K1 + 1.0) / (tf + norm);
            }
        }
        let mut out: Vec<(DocId, f32)> = scores.into_iter().collect();
        out.sort_unstable_by_key(|(d, _)| *d);
        out
    }

    /// Bytes the index holds for its docs and postings (an estimate, for memory accounting).
    pub fn approx_size(&self) -> usize {
        let postings: usize = self
            .postings
            .iter()
            .map(|(t, list)| t.len() + 48 + list.capacity() * 8)
            .sum();
        let docs = self.docs.len() * 48 + self.entries * 16;
        let keys: usize = self.keys.values().map(|m| 64 + m.len() * 40).sum();
        postings + docs + keys
    }
}
