//! The text index of one namespace's cards: an inverted index from terms to the card versions
//! that use them, scored by BM25 with field weights (names weigh most), and the exact keys
//! filters select by (skill ids, tags, media types, kinds), each listing the versions that
//! have it. Updated as card versions come and go; read under the index lock.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

pub(super) use super::docset::DocId;
use super::docset::DocSet;
use crate::domain::card::{CardKind, CardSummary};

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
    words(text).map(Cow::into_owned)
}

/// [`terms`], borrowing each word that is lowercase already (indexing's common case).
fn words(text: &str) -> impl Iterator<Item = Cow<'_, str>> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(
            |w| match w.is_ascii() && !w.bytes().any(|b| b.is_ascii_uppercase()) {
                true => Cow::Borrowed(w),
                false => Cow::Owned(w.to_lowercase()),
            },
        )
        .filter(|w| !STOP_WORDS.contains(&w.as_ref()))
}

/// Maps keyed by terms and keys: hashed by foldhash, which is several times cheaper than the
/// default SipHash on short strings; these maps never see hostile keys in bulk that a seeded
/// fast hash cannot take.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

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
    out.extend(summary.skills().map(|s| Key::Skill(s.id().to_string())));
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

/// Each term of a card version with its weighted frequency, and the version's weighted
/// length (Σ weight × words): what indexing adds and removal takes away.
fn weights<'a>(summary: &'a CardSummary) -> (Map<Cow<'a, str>, f32>, f32) {
    let mut tf: Map<Cow<'a, str>, f32> = Map::default();
    let mut len = 0.0;
    let mut count = |text: &'a str, weight: f32| {
        for t in words(text) {
            *tf.entry(t).or_default() += weight;
            len += weight;
        }
    };
    count(summary.name(), NAME);
    count(summary.description(), DESCRIPTION);
    for s in summary.skills() {
        count(s.id(), SKILL_ID);
        count(s.name(), SKILL_NAME);
        count(s.description(), DESCRIPTION);
        for tag in s.tags() {
            count(tag, TAG);
        }
        for example in s.examples() {
            count(example, EXAMPLE);
        }
    }
    (tf, len)
}

#[derive(Debug, Default)]
pub(super) struct SearchIndex {
    /// Each doc's weighted length, by id; NaN for a free id. Apart from the postings, so
    /// scoring reads a dense array.
    lens: Vec<f32>,
    free: Vec<DocId>,
    /// Term → (doc, weighted term frequency), by doc id: a version is found (and removed)
    /// by binary search, and a new id (the common case) is appended.
    postings: Map<Arc<str>, Vec<(DocId, f32)>>,
    live_docs: usize,
    total_len: f64,
    /// Key → the versions that have it, by id: what a search's filter is built from.
    keys: Map<Key, Vec<DocId>>,
}

thread_local! {
    /// Scores being summed, by doc id: kept between searches on a thread (zeroed after each),
    /// so a search allocates nothing in proportion to the index.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl SearchIndex {
    /// Indexes a card version; its id.
    pub fn add(&mut self, kind: CardKind, summary: &CardSummary) -> DocId {
        let (tf, len) = weights(summary);
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.lens.push(f32::NAN);
                (self.lens.len() - 1) as DocId
            }
        };
        for (term, f) in tf {
            let list = match self.postings.get_mut(term.as_ref()) {
                Some(list) => list,
                None => self.postings.entry(Arc::from(term.as_ref())).or_default(),
            };
            insert_sorted(list, (id, f), |e| e.0);
        }
        self.lens[id as usize] = len;
        self.live_docs += 1;
        self.total_len += len as f64;
        for key in keys(kind, summary) {
            insert_sorted(self.keys.entry(key).or_default(), id, |d| *d);
        }
        id
    }

    /// Forgets a card version (its terms read again from its summary).
    pub fn remove(&mut self, id: DocId, kind: CardKind, summary: &CardSummary) {
        let Some(len) = self.lens.get_mut(id as usize) else {
            return;
        };
        if len.is_nan() {
            return;
        }
        self.total_len -= *len as f64;
        *len = f32::NAN;
        self.live_docs -= 1;
        self.free.push(id);
        for key in keys(kind, summary) {
            if let Some(docs) = self.keys.get_mut(&key) {
                remove_sorted(docs, id, |d| *d);
                if docs.is_empty() {
                    self.keys.remove(&key);
                }
            }
        }
        // Its postings go now (a freed id is taken again by the next card), each found by
        // binary search: a mass collection costs a search and a shift per term, not a scan.
        for term in weights(summary).0.keys() {
            if let Some(list) = self.postings.get_mut(term.as_ref()) {
                remove_sorted(list, id, |e| e.0);
                if list.is_empty() {
                    self.postings.remove(term.as_ref());
                }
            }
        }
    }

    /// The versions that have `key`, by id.
    pub fn docs_with(&self, key: &Key) -> &[DocId] {
        self.keys.get(key).map_or(&[], Vec::as_slice)
    }

    /// The versions that satisfy every constraint, a constraint being keys of which a
    /// version must have at least one; `None` without constraints (every version passes).
    pub fn allowed(&self, constraints: &[Vec<Key>]) -> Option<DocSet> {
        let bound = self.lens.len();
        let any_of = |keys: &[Key]| {
            let mut set = DocSet::empty(bound);
            for key in keys {
                for &doc in self.docs_with(key) {
                    set.insert(doc);
                }
            }
            set
        };
        let (first, rest) = constraints.split_first()?;
        let mut set = any_of(first);
        for keys in rest {
            if set.is_empty() {
                break;
            }
            set.intersect(&any_of(keys));
        }
        Some(set)
    }

    /// BM25 scores of every doc in `only` (every doc, when `None`) that uses a term of
    /// `query` (weighted by field), handed to `each` in no particular order. Sums in a dense
    /// scratch array: one pass over each term's postings, no hashing.
    pub fn score(&self, query: &[String], only: Option<&DocSet>, mut each: impl FnMut(DocId, f32)) {
        let kept = |doc: DocId| only.is_none_or(|set| set.contains(doc));
        if self.live_docs == 0 {
            return;
        }
        let n = self.live_docs as f32;
        let avg = (self.total_len / self.live_docs as f64).max(1.0) as f32;
        let mut lists: Vec<&Vec<(DocId, f32)>> = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        for term in query {
            if seen.contains(&term.as_str()) {
                continue;
            }
            seen.push(term);
            if let Some(list) = self.postings.get(term.as_str()) {
                lists.push(list);
            }
        }
        if let [list] = &lists[..] {
            // One term: no sums to gather.
            let idf = idf(n, list.len());
            for &(doc, tf) in list.iter() {
                let len = self.lens[doc as usize];
                if !len.is_nan() && kept(doc) {
                    each(doc, bm25(idf, tf, len, avg));
                }
            }
            return;
        }
        SCRATCH.with(|scratch| {
            let mut acc = scratch.borrow_mut();
            if acc.len() < self.lens.len() {
                acc.resize(self.lens.len(), 0.0);
            }
            let mut touched: Vec<DocId> = Vec::new();
            for list in &lists {
                let idf = idf(n, list.len());
                for &(doc, tf) in list.iter() {
                    let len = self.lens[doc as usize];
                    if len.is_nan() || !kept(doc) {
                        continue;
                    }
                    let slot = &mut acc[doc as usize];
                    if *slot == 0.0 {
                        touched.push(doc);
                    }
                    // Never 0 once touched: a BM25 term score is positive.
                    *slot += bm25(idf, tf, len, avg).max(f32::MIN_POSITIVE);
                }
            }
            for doc in touched {
                each(doc, std::mem::take(&mut acc[doc as usize]));
            }
        });
    }

    /// Bytes the index holds for its docs and postings (an estimate, for memory accounting).
    pub fn approx_size(&self) -> usize {
        let postings: usize = self
            .postings
            .iter()
            .map(|(t, list)| t.len() + 48 + list.capacity() * 8)
            .sum();
        let docs = self.lens.len() * 4;
        let keys: usize = self.keys.values().map(|k| 64 + k.capacity() * 4).sum();
        postings + docs + keys
    }
}

/// Puts `item` in its place in `list` (kept sorted by `id`): appended when its id is the
/// largest, as a new doc's is.
fn insert_sorted<T>(list: &mut Vec<T>, item: T, id: impl Fn(&T) -> DocId) {
    let key = id(&item);
    match list.last().is_none_or(|last| id(last) < key) {
        true => list.push(item),
        false => {
            let at = list.partition_point(|e| id(e) < key);
            list.insert(at, item);
        }
    }
}

/// Takes the entry of doc `doc` out of `list` (sorted by `id`), if there.
fn remove_sorted<T>(list: &mut Vec<T>, doc: DocId, id: impl Fn(&T) -> DocId) {
    if let Ok(at) = list.binary_search_by_key(&doc, id) {
        list.remove(at);
    }
}

/// The rarer a term, the more it counts.
fn idf(n: f32, df: usize) -> f32 {
    let df = df as f32;
    (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
}

/// One term's BM25 contribution to a doc of weighted length `len`.
fn bm25(idf: f32, tf: f32, len: f32, avg: f32) -> f32 {
    let norm = K1 * (1.0 - B + B * len / avg);
    idf * tf * (K1 + 1.0) / (tf + norm)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(name: &str, tag: &str) -> CardSummary {
        let card = serde_json::json!({
            "name": name, "description": "shared words", "version": "1",
            "supportedInterfaces": [{"url": "u", "protocolBinding": "b", "protocolVersion": "1"}],
            "capabilities": {}, "defaultInputModes": [], "defaultOutputModes": [],
            "skills": [{"id": "work", "name": "work", "description": "", "tags": [tag]}],
        });
        let bytes = card.to_string();
        let card = crate::domain::card::Card::parse(CardKind::A2a, bytes.as_bytes(), 1 << 16);
        (*card.expect("a valid card").summary).clone()
    }

    fn scored(index: &SearchIndex, words: &[&str], only: Option<&DocSet>) -> Vec<DocId> {
        let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        let mut out = Vec::new();
        index.score(&words, only, |doc, _| out.push(doc));
        out.sort();
        out
    }

    #[test]
    fn a_removed_version_leaves_no_term_or_key_behind_when_its_id_is_taken_again() {
        let mut index = SearchIndex::default();
        let ids: Vec<Arc<str>> = ["a", "b", "c"].into_iter().map(Arc::from).collect();
        let docs: Vec<DocId> = ids
            .iter()
            .map(|lid| index.add(CardKind::A2a, &summary(&format!("{lid} alpha"), "red")))
            .collect();
        index.remove(docs[1], CardKind::A2a, &summary("b alpha", "red"));
        // The freed id goes to a card with other words and keys.
        let reused = index.add(CardKind::Mcp, &summary("d beta", "blue"));
        assert_eq!(reused, docs[1]);
        assert_eq!(scored(&index, &["alpha"], None), [docs[0], docs[2]]);
        assert_eq!(scored(&index, &["beta"], None), [reused]);
        assert_eq!(scored(&index, &["shared"], None).len(), 3);
        let red = index.docs_with(&Key::Tag("red".into()));
        assert_eq!(
            red,
            [docs[0], docs[2]],
            "sorted, without the removed version"
        );
        assert_eq!(
            index.docs_with(&Key::Kind(CardKind::A2a)),
            [docs[0], docs[2]]
        );
        let kept = index.allowed(&[vec![Key::Tag("blue".into())]]).unwrap();
        assert_eq!(scored(&index, &["shared", "alpha"], Some(&kept)), [reused]);
        let none = index.allowed(&[vec![Key::Tag("red".into())], vec![Key::Kind(CardKind::Mcp)]]);
        assert!(none.unwrap().is_empty());
        let either = index.allowed(&[vec![Key::Kind(CardKind::Mcp), Key::Kind(CardKind::A2a)]]);
        assert_eq!(scored(&index, &["shared"], either.as_ref()).len(), 3);
    }
}
