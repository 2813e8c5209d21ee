//! What a SearchAgents page costs on the server, apart from the transport: an index of N agents
//! (the `search` scenario's ~2 KiB cards, one live instance each) built in process, then the
//! two query shapes answered (`Index::search_agents`), turned into the contract's messages
//! (`api::cards::agent`) and encoded by prost — each timed alone. Also the index's own
//! estimate of the bytes it holds for the cards, and the time spent parsing and indexing them.
//!
//!   cargo run --release -p agent-registry-bench --bin search [-- AGENTS]

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::time::{Duration, Instant};

use agent_registry::api::cards as convert;
use agent_registry::proto;
use agent_registry_bench::cards;
use agent_registry_core::domain::card::{Card, CardKind, DEFAULT_MAX_CARD_BYTES};
use agent_registry_core::domain::{
    ChangeSet, Instance, InstanceStatus, Namespace, StoredCard, now,
};
use agent_registry_core::index::{AgentQuery, Index};
use prost::Message;
use uuid::Uuid;

const ROUNDS: usize = 2_000;

/// This process's resident set, in bytes.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split(' ')
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// What building the index took: parsing and applying time, and the bytes resident for the
/// parsed cards (with their instances) and then for the index built from them.
struct Built {
    parsing: Duration,
    applying: Duration,
    json_bytes: usize,
    parsed_rss: usize,
    indexed_rss: usize,
}

/// The index, the time spent parsing the cards and the time spent applying them.
fn build(n: usize) -> (Index, Built) {
    let mut parsing = Duration::ZERO;
    let mut json_bytes = 0;
    let rss0 = rss();
    let epoch = Uuid::now_v7();
    let mut cs = ChangeSet::after(0);
    cs.namespaces.push(Namespace {
        name: "bench".into(),
        current_epoch: epoch,
        epoch_started_at: now(),
        created_at: now(),
        revision: 1,
    });
    let mut revision = 1;
    for i in 0..n {
        let json = cards::card(i).to_string();
        json_bytes += json.len();
        let t = Instant::now();
        let card = Card::parse(CardKind::A2a, json.as_bytes(), DEFAULT_MAX_CARD_BYTES)
            .expect("a valid card");
        parsing += t.elapsed();
        let logical_id = format!("agent-{i}");
        revision += 1;
        cs.instances.push(Instance {
            instance_id: Uuid::now_v7(),
            namespace: "bench".into(),
            epoch,
            status: InstanceStatus::Alive,
            lease_ttl: Duration::from_secs(3600),
            card_digest: card.digest.clone(),
            revision,
            ..Instance::sample(&logical_id)
        });
        revision += 1;
        cs.cards.push(StoredCard {
            namespace: "bench".into(),
            logical_id,
            digest: card.digest.clone(),
            kind: card.kind,
            card: Some(card),
            published_at: now(),
            revision,
        });
    }
    cs.last = revision;
    let rss1 = rss();
    let index = Index::default();
    let t = Instant::now();
    index.apply(cs);
    let applying = t.elapsed();
    let built = Built {
        parsing,
        applying,
        json_bytes,
        parsed_rss: rss1.saturating_sub(rss0),
        indexed_rss: rss().saturating_sub(rss1),
    };
    (index, built)
}

fn query(shape: &str, n: usize) -> AgentQuery {
    let (text, tag) = match shape {
        "filter_only" => (String::new(), cards::tag(n)),
        _ => cards::query(n),
    };
    AgentQuery {
        namespace: "bench".into(),
        query: text,
        tags: [tag].into(),
        page_size: 20,
        ..Default::default()
    }
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("AGENTS: a number"))
        .unwrap_or(100_000);
    let (index, built) = build(n);
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let mut shapes = Vec::new();
    for shape in ["filter_only", "two_words_and_filter"] {
        let (mut search, mut convert_t, mut encode_t, mut decode_t, mut bytes) = (
            Duration::ZERO,
            Duration::ZERO,
            Duration::ZERO,
            Duration::ZERO,
            0,
        );
        let mut worst = Duration::ZERO;
        for round in 0..ROUNDS {
            let q = query(shape, round);
            let t = Instant::now();
            let page = black_box(index.search_agents(&q, now()).expect("search"));
            let s = t.elapsed();
            worst = worst.max(s);
            search += s;
            let t = Instant::now();
            let reply = proto::SearchAgentsResponse {
                results: page
                    .hits
                    .iter()
                    .map(|h| proto::SearchResult {
                        agent: Some(convert::agent(&h.agent, false)),
                        score: h.score,
                        matched_skills: h.matched_skills.clone(),
                    })
                    .collect(),
                next_page_token: page.next_page_token,
                revision: page.revision,
            };
            convert_t += t.elapsed();
            let t = Instant::now();
            let encoded = black_box(reply.encode_to_vec());
            encode_t += t.elapsed();
            bytes += encoded.len();
            // What a client then spends decoding it.
            let t = Instant::now();
            black_box(proto::SearchAgentsResponse::decode(&encoded[..]).expect("decodes"));
            decode_t += t.elapsed();
        }
        let r = ROUNDS as u32;
        shapes.push(format!(
            "\"{shape}\":{{\"search_us\":{:.1},\"search_max_us\":{:.1},\"convert_us\":{:.1},\
             \"encode_us\":{:.1},\"client_decode_us\":{:.1},\"bytes\":{}}}",
            us(search / r),
            us(worst),
            us(convert_t / r),
            us(encode_t / r),
            us(decode_t / r),
            bytes / ROUNDS
        ));
    }
    println!(
        "{{\"scenario\":\"search-in-process\",\"agents\":{n},\"rounds\":{ROUNDS},\
         \"parse_s\":{:.2},\"apply_s\":{:.2},\"json_bytes_per_card\":{},\
         \"rss_per_card\":{{\"parsed\":{},\"indexed\":{}}},\"cards_bytes_estimate\":{},{}}}",
        built.parsing.as_secs_f64(),
        built.applying.as_secs_f64(),
        built.json_bytes / n,
        built.parsed_rss / n,
        built.indexed_rss / n,
        index.cards_size(),
        shapes.join(",")
    );
}
