//! What a search of agents asks (SPEC §15): text, exact filters, liveness and a page; how its
//! filters judge a card, which of a card's skills it names, and the fingerprint that ties a
//! page token to it.

use std::collections::BTreeSet;

use super::search::Key;
use crate::domain::card::{CardKind, CardSummary};

/// A search, validated except for its page token.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentQuery {
    pub namespace: String,
    /// Free text; empty: every agent the filters keep, by logical id.
    pub query: String,
    /// Every one of these skill ids.
    pub skills: BTreeSet<String>,
    /// Every one of these tags (of any skill).
    pub tags: BTreeSet<String>,
    /// Any of these input media types (empty: any).
    pub input_modes: BTreeSet<String>,
    /// Any of these output media types (empty: any).
    pub output_modes: BTreeSet<String>,
    /// Any of these kinds (empty: any).
    pub kinds: BTreeSet<CardKind>,
    pub include_offline: bool,
    pub page_size: i32,
    pub page_token: String,
}

impl AgentQuery {
    /// Whether the current card `summary` of kind `kind` passes the exact filters.
    pub(super) fn keeps(&self, kind: CardKind, summary: &CardSummary) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&kind))
            && self
                .skills
                .iter()
                .all(|id| summary.skills().any(|s| s.id() == id))
            && self
                .tags
                .iter()
                .all(|t| summary.tags().any(|have| have == t))
            && (self.input_modes.is_empty()
                || summary.input_modes().any(|m| self.input_modes.contains(m)))
            && (self.output_modes.is_empty()
                || summary
                    .output_modes()
                    .any(|m| self.output_modes.contains(m)))
    }

    /// The exact filters as constraints a version must all meet, each met by any one of its
    /// keys: every skill id and every tag alone, and the kinds, input and output modes each
    /// as one group.
    pub(super) fn constraints(&self) -> Vec<Vec<Key>> {
        let mut out: Vec<Vec<Key>> = Vec::new();
        out.extend(self.skills.iter().map(|s| vec![Key::Skill(s.clone())]));
        out.extend(self.tags.iter().map(|t| vec![Key::Tag(t.clone())]));
        let groups = [
            self.kinds.iter().map(|k| Key::Kind(*k)).collect::<Vec<_>>(),
            self.input_modes
                .iter()
                .cloned()
                .map(Key::InputMode)
                .collect(),
            self.output_modes
                .iter()
                .cloned()
                .map(Key::OutputMode)
                .collect(),
        ];
        out.extend(groups.into_iter().filter(|g| !g.is_empty()));
        out
    }

    /// Tells a token of this query from one of another (the page size aside): every part,
    /// length-prefixed, through the listings' stable fingerprint (`page::fingerprint`).
    pub(super) fn fingerprint(&self) -> u64 {
        let mut text = String::new();
        let mut part = |s: &str| text.push_str(&format!("{}:{s};", s.len()));
        part(&self.namespace);
        part(&self.query);
        for set in [
            &self.skills,
            &self.tags,
            &self.input_modes,
            &self.output_modes,
        ] {
            part(&set.len().to_string());
            set.iter().for_each(|v| part(v));
        }
        part(&self.kinds.len().to_string());
        self.kinds.iter().for_each(|k| part(k.as_str()));
        part(if self.include_offline {
            "offline"
        } else {
            "live"
        });
        super::page::fingerprint(&text)
    }

    /// The skills of `summary` a query term or a skill filter names, in the card's order.
    /// Compares words in place (no allocation unless a word is not ASCII).
    pub(super) fn matched(&self, terms: &[String], summary: &CardSummary) -> Vec<String> {
        let names_a_term = |text: &str| {
            text.split(|c: char| !c.is_alphanumeric()).any(|w| {
                !w.is_empty()
                    && match w.is_ascii() {
                        true => terms.iter().any(|t| t.eq_ignore_ascii_case(w)),
                        false => terms.contains(&w.to_lowercase()),
                    }
            })
        };
        summary
            .skills()
            .filter(|s| {
                self.skills.contains(s.id())
                    || (!terms.is_empty()
                        && [s.id(), s.name(), s.description()]
                            .into_iter()
                            .chain(s.tags())
                            .chain(s.examples())
                            .any(names_a_term))
            })
            .map(|s| s.id().to_string())
            .collect()
    }
}
