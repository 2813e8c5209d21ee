//! Start-up time: fill a fresh store with N instances (each with its own ~2 KiB card, with
//! `--cards`) through a running registry, stop it, then time fresh starts of the binary until
//! its health check answers SERVING and its index holds all N (and, with cards, search finds
//! them).

use std::process::Stdio;
use std::time::Duration;

use agent_registry::proto::{
    GetNamespaceRequest, SearchAgentsRequest, admin_service_client::AdminServiceClient,
    catalog_service_client::CatalogServiceClient,
};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::agents::registry_channel;
use crate::cards::{Attach, Prepared};
use crate::ops::load;
use crate::proc::rss_kib;
use crate::progress;

#[derive(Debug, Clone, clap::Args)]
pub struct StartupArgs {
    /// The registry binary.
    #[arg(long, default_value = "target/release/agent-registry")]
    pub server_bin: String,
    /// The store to fill (an empty database: Postgres URL or sqlite://path).
    #[arg(long)]
    pub database_url: String,
    #[arg(long, default_value_t = 100_000)]
    pub instances: usize,
    /// Timed starts after the fill.
    #[arg(long, default_value_t = 3)]
    pub starts: usize,
    /// Each instance registers with a card of its own.
    #[arg(long)]
    pub cards: bool,
}

/// Starts the registry on a free port; returns the process and its gRPC address.
async fn start(bin: &str, db: &str) -> Result<(Child, String), String> {
    let mut child = Command::new(bin)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--http-listen",
            "",
        ])
        .args(["--database-url", db])
        .env("RUST_LOG", "warn,agent_registry=info")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("start {bin}: {e}"))?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let addr = loop {
        match lines.next_line().await {
            Ok(Some(line)) => {
                if let Some(a) = line.split("listening on ").nth(1) {
                    break a.trim().to_string();
                }
            }
            _ => return Err(format!("{bin} exited before listening")),
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, addr))
}

async fn serving(addr: &str) -> bool {
    let Ok(ch) = registry_channel(addr).await else {
        return false;
    };
    let r = HealthClient::new(ch)
        .check(HealthCheckRequest::default())
        .await;
    matches!(r, Ok(r) if r.get_ref().status == ServingStatus::Serving as i32)
}

async fn stop(mut child: Child) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
}

/// Search answers from the cards loaded at start-up: the last agent filled, by its name.
async fn searchable(addr: &str, namespace: &str, n: usize) -> Result<(), String> {
    let last = format!("agent-{}", n - 1);
    let req = SearchAgentsRequest {
        namespace: namespace.into(),
        query: format!("agent {}", n - 1),
        include_offline: true,
        page_size: 5,
        ..Default::default()
    };
    let page = CatalogServiceClient::new(registry_channel(addr).await?)
        .search_agents(req)
        .await
        .map_err(|s| format!("search: {s}"))?
        .into_inner();
    match page
        .results
        .iter()
        .any(|r| r.agent.as_ref().is_some_and(|a| a.logical_id == last))
    {
        true => Ok(()),
        false => Err(format!("serving, but search does not find {last}")),
    }
}

pub async fn run(a: StartupArgs) -> Result<serde_json::Value, String> {
    let namespace = "bench-startup";
    let (child, addr) = start(&a.server_bin, &a.database_url).await?;
    progress!("filling the store with {} instances", a.instances);
    let chans = vec![registry_channel(&addr).await?];
    let prepared = a.cards.then(|| Prepared::new(0..a.instances));
    let (_, took) = load(
        &chans,
        namespace,
        0..a.instances,
        256,
        0.0,
        Duration::from_secs(3600),
        prepared.as_ref().map(|p| (p, Attach::Bytes)),
    )
    .await?;
    progress!("filled in {took:?}");
    stop(child).await;

    let mut runs = Vec::new();
    for n in 0..a.starts {
        let t = Instant::now();
        let (child, addr) = start(&a.server_bin, &a.database_url).await?;
        let listening = t.elapsed();
        while !serving(&addr).await {
            if t.elapsed() > Duration::from_secs(120) {
                return Err("not serving after 120 s".into());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let to_serving = t.elapsed();
        let ns = AdminServiceClient::new(registry_channel(&addr).await?)
            .get_namespace(GetNamespaceRequest {
                name: namespace.into(),
            })
            .await
            .map_err(|s| format!("get namespace: {s}"))?
            .into_inner()
            .namespace
            .ok_or("no namespace")?;
        let held = ns.starting_count + ns.alive_count + ns.draining_count;
        if held < a.instances as i64 {
            return Err(format!("serving with {held} of {} instances", a.instances));
        }
        if a.cards {
            searchable(&addr, namespace, a.instances).await?;
        }
        let rss = child.id().and_then(rss_kib);
        progress!("start {n}: listening after {listening:?}, serving after {to_serving:?}");
        runs.push(json!({
            "listening_s": listening.as_secs_f64(),
            "serving_s": to_serving.as_secs_f64(),
            "rss_kib": rss,
        }));
        stop(child).await;
    }
    let best = runs
        .iter()
        .filter_map(|r| r["serving_s"].as_f64())
        .fold(f64::MAX, f64::min);
    let worst = runs
        .iter()
        .filter_map(|r| r["serving_s"].as_f64())
        .fold(0.0, f64::max);
    Ok(json!({
        "scenario": "startup",
        "instances": a.instances,
        "cards": a.cards,
        "card_mean_bytes": prepared.as_ref().map(Prepared::mean_bytes),
        "fill_s": took.as_secs_f64(),
        "serving_s_best": best,
        "serving_s_worst": worst,
        "starts": runs,
    }))
}
