//! The catalog scenario (SPEC §10's card rows): Register without a card, with a new ~2 KiB
//! card, and by digest, in one run; the memory the cards add; then SearchAgents latency over
//! gRPC and HTTP at N agents, and the same questions put to Postgres full-text search over the
//! same cards (the registry's own table), as an operator would otherwise write them.

use std::time::Duration;

use agent_registry::proto::{SearchAgentsRequest, catalog_service_client::CatalogServiceClient};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::agents::{self, registry_channel};
use crate::cards::{self, Attach, Prepared};
use crate::ops::load;
use crate::proc::rss_kib;
use crate::progress;
use crate::stats::{Latency, histogram, record};

#[derive(Debug, Clone, clap::Args)]
pub struct SearchArgs {
    /// The registry's gRPC address.
    #[arg(long)]
    pub addr: String,
    /// Its HTTP address (host:port), for the same searches over HTTP.
    #[arg(long)]
    pub http: Option<String>,
    /// Its Postgres database, for the full-text comparison over the same cards.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Agents (each with a card of its own); every Register phase makes this many.
    #[arg(long, default_value_t = 100_000)]
    pub agents: usize,
    /// Searches per shape and front end, one at a time (a tenth more warm up first).
    #[arg(long, default_value_t = 5_000)]
    pub calls: usize,
    #[arg(long, default_value_t = 20)]
    pub page_size: i32,
    /// The registry's process, for its memory.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Registrations in flight in every Register phase: enough that the server or the store
    /// is saturated in each (a ratio between phases counts only then).
    #[arg(long, default_value_t = 1024)]
    pub in_flight: usize,
}

/// The searches measured: one tag (filters only), and two words plus a tag.
#[derive(Clone, Copy)]
enum Shape {
    Filter,
    QueryFilter,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Filter => "filter_only",
            Shape::QueryFilter => "two_words_and_filter",
        }
    }
    /// The `n`th call's (query, tag).
    fn params(self, n: usize) -> (String, String) {
        match self {
            Shape::Filter => (String::new(), cards::tag(n)),
            Shape::QueryFilter => cards::query(n),
        }
    }
}

const SHAPES: [Shape; 2] = [Shape::Filter, Shape::QueryFilter];

/// Times `calls` (after a tenth as warm-up) of `one`, which answers how many results it got.
async fn timed<F, Fut>(calls: usize, mut one: F) -> Result<serde_json::Value, String>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<usize, String>>,
{
    let (mut h, mut results, mut empty) = (histogram(), 0usize, 0usize);
    for n in 0..calls + calls / 10 {
        let t = Instant::now();
        let found = one(n).await?;
        let d = t.elapsed();
        if n >= calls / 10 {
            record(&mut h, d);
            results += found;
            empty += (found == 0) as usize;
        }
    }
    Ok(json!({
        "latency": Latency::of(&h),
        "mean_results": results as f64 / calls.max(1) as f64,
        "empty_answers": empty,
    }))
}

async fn grpc(a: &SearchArgs, chan: Channel, ns: &str) -> Result<serde_json::Value, String> {
    let client = CatalogServiceClient::new(chan);
    let mut out = serde_json::Map::new();
    for shape in SHAPES {
        let r = timed(a.calls, |n| {
            let (query, tag) = shape.params(n);
            let req = SearchAgentsRequest {
                namespace: ns.into(),
                query,
                tags: vec![tag],
                page_size: a.page_size,
                ..Default::default()
            };
            let mut c = client.clone();
            async move {
                let page = c
                    .search_agents(req)
                    .await
                    .map_err(|s| format!("search: {s}"))?;
                Ok(page.into_inner().results.len())
            }
        })
        .await?;
        out.insert(shape.name().into(), r);
    }
    Ok(out.into())
}

async fn http(a: &SearchArgs, addr: &str, ns: &str) -> Result<serde_json::Value, String> {
    let client = HttpClient::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut out = serde_json::Map::new();
    for shape in SHAPES {
        let r = timed(a.calls, |n| {
            let (query, tag) = shape.params(n);
            let mut q = format!("tag={tag}&pageSize={}", a.page_size);
            if !query.is_empty() {
                q.push_str(&format!("&query={}", query.replace(' ', "+")));
            }
            let uri = format!("http://{addr}/v1/namespaces/{ns}/agents?{q}");
            let client = client.clone();
            async move {
                let res = client
                    .get(uri.parse().map_err(|e| format!("{uri}: {e}"))?)
                    .await
                    .map_err(|e| format!("GET {uri}: {e}"))?;
                let status = res.status();
                let body = res.into_body().collect().await.map_err(|e| e.to_string())?;
                if !status.is_success() {
                    return Err(format!("GET {uri}: {status}"));
                }
                let v: serde_json::Value =
                    serde_json::from_slice(&body.to_bytes()).map_err(|e| e.to_string())?;
                Ok(v["results"].as_array().map_or(0, Vec::len))
            }
        })
        .await?;
        out.insert(shape.name().into(), r);
    }
    Ok(out.into())
}

pub async fn run(a: SearchArgs) -> Result<serde_json::Value, String> {
    let mut chans = Vec::new();
    for _ in 0..16 {
        chans.push(registry_channel(&a.addr).await?);
    }
    let (plain_ns, cards_ns) = (agents::run_namespace(), agents::run_namespace());
    let ttl = Duration::from_secs(3600);
    let rss = || a.pid.and_then(rss_kib);
    let per_s = |took: Duration| a.agents as f64 / took.as_secs_f64();
    let rss0 = rss();

    progress!("register {} without a card", a.agents);
    let (_, plain) = load(&chans, &plain_ns, 0..a.agents, a.in_flight, 0.0, ttl, None).await?;
    let rss1 = rss();
    progress!("preparing {} cards", a.agents);
    let prepared = Prepared::new(0..a.agents);
    progress!("register {} with new cards", a.agents);
    let bytes = Some((&prepared, Attach::Bytes));
    let (_, with_cards) =
        load(&chans, &cards_ns, 0..a.agents, a.in_flight, 0.0, ttl, bytes).await?;
    let rss2 = rss();
    progress!("register a second instance of each: by digest, and without a card");
    let digest = Some((&prepared, Attach::Digest));
    let (_, by_digest) = load(
        &chans,
        &cards_ns,
        0..a.agents,
        a.in_flight,
        0.0,
        ttl,
        digest,
    )
    .await?;
    let (_, plain_again) =
        load(&chans, &plain_ns, 0..a.agents, a.in_flight, 0.0, ttl, None).await?;

    if let Some(url) = &a.database_url {
        // The registrations leave Postgres with dirty pages and tables to vacuum; its
        // background work would otherwise share the cores with the searches measured next.
        progress!("letting Postgres settle (CHECKPOINT, VACUUM ANALYZE)");
        crate::catalog_pg::settle(url).await?;
    }
    progress!("searching over gRPC");
    let grpc = grpc(&a, chans[0].clone(), &cards_ns).await?;
    let http = match &a.http {
        Some(addr) => {
            progress!("searching over HTTP");
            Some(http(&a, addr, &cards_ns).await?)
        }
        None => None,
    };
    let postgres = match &a.database_url {
        Some(url) => {
            progress!("the same searches with Postgres full-text search");
            // A tenth of the calls (at least 50): each takes a hundred times longer.
            let calls = a.calls.div_ceil(10).max(50);
            Some(crate::catalog_pg::run(url, &cards_ns, calls, a.page_size).await?)
        }
        None => None,
    };
    // What the cards added beyond their instances: the second phase's growth less the first's.
    let card_bytes = match (rss0, rss1, rss2) {
        (Some(r0), Some(r1), Some(r2)) => {
            Some(((r2 as f64 - r1 as f64) - (r1 as f64 - r0 as f64)) * 1024.0 / a.agents as f64)
        }
        _ => None,
    };
    Ok(json!({
        "scenario": "catalog",
        "agents": a.agents,
        "page_size": a.page_size,
        "card_mean_bytes": prepared.mean_bytes(),
        "register_per_s": {
            "plain": per_s(plain),
            "new_cards": per_s(with_cards),
            "new_cards_ratio": plain.as_secs_f64() / with_cards.as_secs_f64(),
            "second_instance_plain": per_s(plain_again),
            "second_instance_by_digest": per_s(by_digest),
            "by_digest_ratio": plain_again.as_secs_f64() / by_digest.as_secs_f64(),
        },
        "target_rss_kib": {"start": rss0, "after_plain": rss1, "after_cards": rss2},
        "memory_per_card_bytes": card_bytes,
        "memory_per_card_ratio_to_json": card_bytes.map(|b| b / prepared.mean_bytes()),
        "search_grpc": grpc,
        "search_http": http,
        "search_postgres_fts": postgres,
    }))
}
