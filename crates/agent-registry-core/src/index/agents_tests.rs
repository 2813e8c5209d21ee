//! Searching agents: ranking on a fixed corpus, and every filter, view and page size against a
//! brute-force reading of the same agents, for any set of agents, cards and instances.

use std::collections::BTreeSet;
use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::json;
use uuid::Uuid;

use super::search::terms;
use super::{AgentQuery, Index};
use crate::domain::card::{Card, CardKind, DEFAULT_MAX_CARD_BYTES};
use crate::domain::{ChangeSet, Instance, InstanceStatus, Namespace, StoredCard, now};

const SKILLS: [&str; 4] = ["plan", "book", "forecast", "summarize"];
const TAGS: [&str; 3] = ["travel", "weather", "writing"];
const MODES: [&str; 2] = ["text/plain", "application/json"];
const WORDS: [&str; 5] = ["travel", "rail", "storm", "notes", "trip"];

fn namespace() -> Namespace {
    Namespace {
        name: "default".into(),
        current_epoch: Uuid::from_u128(1),
        epoch_started_at: now(),
        created_at: now(),
        revision: 1,
    }
}

/// A card from chosen parts: skills (ids from [`SKILLS`]), tags, an input mode, a word.
fn card(
    name: &str,
    skills: &[usize],
    tags: &[usize],
    mode: usize,
    word: usize,
    kind: CardKind,
) -> Card {
    let v = match kind {
        CardKind::Mcp => json!({
            "name": format!("io.example/{name}"),
            "description": format!("{} server", WORDS[word]),
            "version": "1.0.0",
        }),
        CardKind::A2a => json!({
            "name": name,
            "description": format!("An agent about {}.", WORDS[word]),
            "version": "1.0.0",
            "supportedInterfaces": [{"url": "https://x", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
            "capabilities": {},
            "defaultInputModes": [MODES[mode]],
            "defaultOutputModes": ["text/plain"],
            "skills": skills.iter().map(|s| json!({
                "id": SKILLS[*s],
                "name": SKILLS[*s],
                "description": format!("{} things", SKILLS[*s]),
                "tags": tags.iter().map(|t| TAGS[*t]).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }),
    };
    Card::parse(kind, v.to_string().as_bytes(), DEFAULT_MAX_CARD_BYTES).unwrap()
}

fn stored(lid: &str, card: Card, revision: i64) -> StoredCard {
    StoredCard {
        namespace: "default".into(),
        logical_id: lid.into(),
        digest: card.digest.clone(),
        kind: card.kind,
        card: Some(card),
        published_at: now(),
        revision,
    }
}

fn instance(lid: &str, id: u128, digest: &str, live: bool, revision: i64) -> Instance {
    Instance {
        instance_id: Uuid::from_u128(id),
        epoch: Uuid::from_u128(1),
        status: InstanceStatus::Alive,
        lease_ttl: Duration::from_secs(match live {
            true => 3600,
            false => 1,
        }),
        last_heartbeat: now() - chrono::Duration::seconds(60),
        started_at: now() - chrono::Duration::seconds(600 - id as i64),
        card_digest: digest.into(),
        revision,
        ..Instance::sample(lid)
    }
}

fn query(q: &str) -> AgentQuery {
    AgentQuery {
        namespace: "default".into(),
        query: q.into(),
        ..Default::default()
    }
}

#[test]
fn names_outrank_descriptions_and_only_current_cards_are_found() {
    let index = Index::default();
    let named = card("Travel desk", &[0], &[2], 0, 3, CardKind::A2a);
    let described = card("Concierge", &[1], &[2], 0, 0, CardKind::A2a);
    let old = card("Travel old", &[0], &[0], 0, 0, CardKind::A2a);
    let new = card("Stormy", &[2], &[1], 0, 2, CardKind::A2a);
    let mut cs = ChangeSet::after(0);
    cs.last = 10;
    cs.namespaces.push(namespace());
    cs.cards = vec![
        stored("desk", named.clone(), 2),
        stored("concierge", described.clone(), 3),
        stored("moved", old.clone(), 4),
        stored("moved", new.clone(), 5),
    ];
    cs.instances = vec![
        instance("desk", 1, &named.digest, true, 6),
        instance("concierge", 2, &described.digest, true, 7),
        // The active instance of `moved` serves the new card; the old one is no longer found.
        instance("moved", 3, &new.digest, true, 8),
    ];
    index.apply(cs);
    let page = index.search_agents(&query("travel"), now()).unwrap();
    let found: Vec<&str> = page
        .hits
        .iter()
        .map(|h| h.agent.logical_id.as_str())
        .collect();
    assert_eq!(found, ["desk", "concierge"]);
    assert!(page.hits[0].score > page.hits[1].score);
    let page = index.search_agents(&query("storm"), now()).unwrap();
    assert_eq!(page.hits[0].agent.logical_id, "moved");
    assert_eq!(page.hits[0].agent.card.digest, new.digest);
}

/// The same JSON read as another kind has the same digest and other keys: published again
/// as `mcp`, the version is indexed as `mcp`, and its `a2a` skills and tags are forgotten.
#[test]
fn the_same_bytes_published_as_another_kind_are_indexed_anew() {
    let v = json!({
        "name": "io.example/dual",
        "description": "A storm server",
        "version": "1.0.0",
        "supportedInterfaces": [{"url": "https://x", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
        "capabilities": {},
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": [{"id": "plan", "name": "plan", "description": "plan trips", "tags": ["travel"]}],
    })
    .to_string();
    let a2a = Card::parse(CardKind::A2a, v.as_bytes(), DEFAULT_MAX_CARD_BYTES).unwrap();
    let mcp = Card::parse(CardKind::Mcp, v.as_bytes(), DEFAULT_MAX_CARD_BYTES).unwrap();
    assert_eq!(a2a.digest, mcp.digest);
    let index = Index::default();
    let mut cs = ChangeSet::after(0);
    cs.last = 4;
    cs.namespaces.push(namespace());
    cs.cards = vec![stored("dual", a2a.clone(), 2)];
    cs.instances = vec![instance("dual", 1, &a2a.digest, true, 3)];
    index.apply(cs);
    let mut cs = ChangeSet::after(4);
    cs.last = 5;
    cs.cards = vec![stored("dual", mcp, 5)];
    index.apply(cs);
    let search = |kind: CardKind, tag: Option<&str>| {
        let q = AgentQuery {
            kinds: [kind].into(),
            tags: tag.into_iter().map(String::from).collect(),
            ..query("storm")
        };
        let page = index.search_agents(&q, now()).unwrap();
        page.hits.len()
    };
    assert_eq!(search(CardKind::Mcp, None), 1, "found as what it is now");
    assert_eq!(search(CardKind::A2a, None), 0);
    assert_eq!(
        search(CardKind::Mcp, Some("travel")),
        0,
        "its a2a tags are gone"
    );
}

/// One version of a card: skills, tags, input mode, word, and whether it is MCP's.
type VersionSpec = (Vec<usize>, Vec<usize>, usize, usize, bool);

#[derive(Debug, Clone)]
struct AgentSpec {
    versions: Vec<VersionSpec>,
    /// (version served, live) per instance.
    instances: Vec<(usize, bool)>,
}

fn agent_spec() -> impl Strategy<Value = AgentSpec> {
    let version = (
        proptest::sample::subsequence(vec![0, 1, 2, 3], 1..=3),
        proptest::sample::subsequence(vec![0, 1, 2], 0..=2),
        0..2usize,
        0..5usize,
        any::<bool>(),
    );
    (vec(version, 1..3), vec((0..3usize, any::<bool>()), 0..3)).prop_map(|(versions, instances)| {
        AgentSpec {
            versions,
            instances,
        }
    })
}

fn search_spec() -> impl Strategy<Value = (AgentQuery, usize)> {
    (
        proptest::option::of(0..WORDS.len()),
        proptest::sample::subsequence(vec![0, 1, 2, 3], 0..=1),
        proptest::sample::subsequence(vec![0, 1, 2], 0..=1),
        proptest::sample::subsequence(vec![0, 1], 0..=2),
        proptest::sample::subsequence(vec![false, true], 0..=2),
        any::<bool>(),
        1..5usize,
    )
        .prop_map(|(word, skills, tags, modes, kinds, offline, size)| {
            let q = AgentQuery {
                namespace: "default".into(),
                query: word.map(|w| WORDS[w].to_string()).unwrap_or_default(),
                skills: skills.iter().map(|s| SKILLS[*s].to_string()).collect(),
                tags: tags.iter().map(|t| TAGS[*t].to_string()).collect(),
                input_modes: modes.iter().map(|m| MODES[*m].to_string()).collect(),
                kinds: kinds
                    .into_iter()
                    .map(|mcp| if mcp { CardKind::Mcp } else { CardKind::A2a })
                    .collect(),
                include_offline: offline,
                page_size: size as i32,
                ..Default::default()
            };
            (q, size)
        })
}

proptest! {
    #[test]
    fn pages_of_a_search_equal_a_brute_force_reading(
        agents in vec(agent_spec(), 1..12),
        (q, size) in search_spec(),
    ) {
        let index = Index::default();
        let mut cs = ChangeSet::after(0);
        cs.namespaces.push(namespace());
        let mut revision = 1;
        // The brute force: each agent's current card and liveness, worked out directly.
        let mut expected: Vec<(String, Card, bool)> = Vec::new();
        for (n, a) in agents.iter().enumerate() {
            let lid = format!("agent-{n:02}");
            let mut cards = Vec::new();
            for (skills, tags, mode, word, mcp) in &a.versions {
                let kind = if *mcp { CardKind::Mcp } else { CardKind::A2a };
                let c = card(&lid, skills, tags, *mode, *word, kind);
                if cards.iter().any(|(d, _): &(String, Card)| *d == c.digest) {
                    continue;
                }
                revision += 1;
                cs.cards.push(stored(&lid, c.clone(), revision));
                cards.push((c.digest.clone(), c));
            }
            let mut live_served = None;
            for (i, (served, live)) in a.instances.iter().enumerate() {
                let (digest, c) = &cards[served % cards.len()];
                revision += 1;
                cs.instances.push(instance(&lid, (n * 10 + i) as u128 + 1, digest, *live, revision));
                if *live && live_served.is_none() {
                    live_served = Some(c.clone());
                }
            }
            let current = live_served.unwrap_or_else(|| cards.last().unwrap().1.clone());
            expected.push((lid, current, a.instances.iter().any(|(_, l)| *l)));
        }
        cs.last = revision;
        index.apply(cs);
        let words: Vec<String> = terms(&q.query).collect();
        let want: BTreeSet<String> = expected
            .iter()
            .filter(|(_, c, live)| {
                let s = &c.summary;
                (q.include_offline || *live)
                    && (q.kinds.is_empty() || q.kinds.contains(&c.kind))
                    && q.skills.iter().all(|id| s.skills().any(|k| k.id() == id))
                    && q.tags.iter().all(|t| s.tags().any(|have| have == t))
                    && (q.input_modes.is_empty() || s.input_modes().any(|m| q.input_modes.contains(m)))
                    && (words.is_empty() || {
                        let text = [s.name(), s.description()]
                            .into_iter()
                            .chain(s.skills().flat_map(|k| [k.id(), k.name(), k.description()]))
                            .chain(s.skills().flat_map(|k| k.tags().chain(k.examples())));
                        text.flat_map(terms).any(|w| words.contains(&w))
                    })
            })
            .map(|(lid, _, _)| lid.clone())
            .collect();
        // A listing gathers the agents of few versions and walks the agents otherwise, then
        // gathers the rest once the walk is long: every way, the same pages.
        let mut listings = Vec::new();
        for thresholds in [(usize::MAX, 0), (0, usize::MAX), (0, 0), (0, 3), (2, 5)] {
            super::agents::TEST_LISTING.with(|t| t.set(thresholds));
            let mut got = Vec::new();
            let mut page_query = q.clone();
            for pages in 1.. {
                // Every page but the last holds at least one agent: a token that does not
                // move on fails here instead of paging for ever.
                prop_assert!(pages <= agents.len() + 1, "paging does not end: {:?}", got);
                let page = index.search_agents(&page_query, now()).unwrap();
                prop_assert!(page.hits.len() <= size);
                got.extend(page.hits.into_iter().map(|h| (h.agent.logical_id, h.score)));
                if page.next_page_token.is_empty() {
                    break;
                }
                page_query.page_token = page.next_page_token;
            }
            listings.push(got);
        }
        for other in &listings[1..] {
            prop_assert_eq!(&listings[0], other);
        }
        let got = listings.pop().expect("listings");
        let ids: Vec<&String> = got.iter().map(|(l, _)| l).collect();
        let unique: BTreeSet<String> = ids.iter().map(|l| (*l).clone()).collect();
        prop_assert_eq!(unique.len(), ids.len(), "each agent once: {:?}", ids);
        prop_assert_eq!(unique, want);
        // Ranked best first (ties by logical id); a listing by logical id.
        for pair in got.windows(2) {
            let ((a, sa), (b, sb)) = (&pair[0], &pair[1]);
            prop_assert!(sa > sb || (sa == sb && a < b), "{:?}", got);
        }
    }
}
