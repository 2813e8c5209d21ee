//! Unary scenarios: Register throughput (closed loop) or latency at a set rate (open loop),
//! and Discover latency against a registry holding many instances.

use std::time::Duration;

use agent_registry::proto::{
    DiscoverRequest, DiscoverView, discovery_service_client::DiscoveryServiceClient,
    registry_service_client::RegistryServiceClient,
};
use futures_util::StreamExt;
use futures_util::stream;
use serde_json::json;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::agents::{self, register_request};
use crate::cards::{Attach, Prepared};
use crate::proc::rss_kib;
use crate::progress;
use crate::stats::{Latency, histogram, record};

#[derive(Debug, Clone, clap::Args)]
pub struct RegisterArgs {
    #[arg(long)]
    pub addr: String,
    /// Registrations to make.
    #[arg(long, default_value_t = 20_000)]
    pub count: usize,
    /// Calls in flight at once (closed loop; ignored with --rate).
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Registrations per second, sent on schedule whatever the answers (open loop); 0 means
    /// as fast as `--concurrency` clients get answers.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// HTTP/2 connections the calls are spread over.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub lease_ttl: Duration,
}

async fn channels(addr: &str, n: usize) -> Result<Vec<Channel>, String> {
    let mut out = Vec::new();
    for _ in 0..n.max(1) {
        out.push(agents::registry_channel(addr).await?);
    }
    Ok(out)
}

/// Registers `count` instances named agent-`first`… in `namespace` (each with its card, or its
/// card's digest, when `cards` says so); returns the latencies (from each call's intended
/// start) and how long it all took.
pub async fn load(
    chans: &[Channel],
    namespace: &str,
    range: std::ops::Range<usize>,
    concurrency: usize,
    rate: f64,
    ttl: Duration,
    cards: Option<(&Prepared, Attach)>,
) -> Result<(hdrhistogram::Histogram<u64>, Duration), String> {
    let t0 = Instant::now();
    let first = range.start;
    let calls = stream::iter(range).map(|i| {
        let mut client = RegistryServiceClient::new(chans[i % chans.len()].clone());
        let mut req = register_request(namespace, i, &format!("type-{}", i % 100), ttl);
        req.labels.insert("zone".into(), format!("z{}", i % 3));
        if let Some((prepared, how)) = cards {
            prepared.attach(how, i, &mut req);
        }
        async move {
            let intended = if rate > 0.0 {
                let at = t0 + Duration::from_secs_f64((i - first) as f64 / rate);
                tokio::time::sleep_until(at).await;
                at
            } else {
                Instant::now()
            };
            let r = client.register(req).await;
            (r.map(|_| ()), intended.elapsed())
        }
    });
    // Open loop: enough in flight that the schedule, not the answers, sets the pace.
    let in_flight = if rate > 0.0 { 100_000 } else { concurrency };
    let results: Vec<_> = calls.buffer_unordered(in_flight).collect().await;
    let took = t0.elapsed();
    let mut h = histogram();
    for (r, d) in results {
        r.map_err(|s| format!("register: {:?} {}", s.code(), s.message()))?;
        record(&mut h, d);
    }
    Ok((h, took))
}

pub async fn register(a: RegisterArgs) -> Result<serde_json::Value, String> {
    let chans = channels(&a.addr, a.connections).await?;
    let namespace = agents::run_namespace();
    progress!(
        "registering {} (rate {}, concurrency {})",
        a.count,
        a.rate,
        a.concurrency
    );
    let (h, took) = load(
        &chans,
        &namespace,
        0..a.count,
        a.concurrency,
        a.rate,
        a.lease_ttl,
        None,
    )
    .await?;
    Ok(json!({
        "scenario": "register",
        "count": a.count,
        "concurrency": if a.rate > 0.0 { None } else { Some(a.concurrency) },
        "offered_per_s": if a.rate > 0.0 { Some(a.rate) } else { None },
        "achieved_per_s": a.count as f64 / took.as_secs_f64(),
        "latency": Latency::of(&h),
    }))
}

#[derive(Debug, Clone, clap::Args)]
pub struct DiscoverArgs {
    #[arg(long)]
    pub addr: String,
    /// Instances registered first, all in one namespace (the worst case for a filtered scan).
    #[arg(long, default_value_t = 100_000)]
    pub instances: usize,
    /// Discover calls per query shape, one at a time.
    #[arg(long, default_value_t = 5_000)]
    pub calls: usize,
    #[arg(long)]
    pub pid: Option<u32>,
}

/// The query shapes measured: a lookup by logical id (the common "where is X"), the first
/// page of a type (1 % of the namespace matches, so the page scans ~10 000 entries), and the
/// first page of everything.
fn query(shape: &str, namespace: &str, n: usize, instances: usize) -> DiscoverRequest {
    let mut r = DiscoverRequest {
        namespace: namespace.into(),
        view: DiscoverView::Live as i32,
        page_size: 100,
        ..Default::default()
    };
    match shape {
        "logical_id" => r.logical_ids = vec![format!("agent-{}", (n * 7919) % instances)],
        "agent_type_page" => r.agent_type = format!("type-{}", n % 100),
        _ => {}
    }
    r
}

pub async fn discover(a: DiscoverArgs) -> Result<serde_json::Value, String> {
    let chans = channels(&a.addr, 16).await?;
    let namespace = agents::run_namespace();
    progress!("loading {} instances", a.instances);
    let (_, took) = load(
        &chans,
        &namespace,
        0..a.instances,
        256,
        0.0,
        Duration::from_secs(3600),
        None,
    )
    .await?;
    progress!("loaded in {took:?}; discovering");
    let mut client = DiscoveryServiceClient::new(chans[0].clone());
    let mut shapes = serde_json::Map::new();
    for shape in ["logical_id", "agent_type_page", "first_page"] {
        let mut h = histogram();
        for n in 0..a.calls + a.calls / 10 {
            let t = Instant::now();
            let page = client
                .discover(query(shape, &namespace, n, a.instances))
                .await
                .map_err(|s| format!("discover: {:?} {}", s.code(), s.message()))?
                .into_inner();
            let d = t.elapsed();
            if page.instances.is_empty() {
                return Err(format!("discover {shape}: no instances found"));
            }
            // The first tenth warms caches and connections.
            if n >= a.calls / 10 {
                record(&mut h, d);
            }
        }
        shapes.insert(shape.into(), json!(Latency::of(&h)));
    }
    Ok(json!({
        "scenario": "discover",
        "instances": a.instances,
        "load_s": took.as_secs_f64(),
        "target_rss_kib": a.pid.and_then(rss_kib),
        "latency": shapes,
    }))
}
