//! Watch fan-out across replicas: the time from a write on replica A to its arrival at a
//! watcher on replica B, both replicas in this process on one Postgres.
//!
//! `BENCH_DATABASE_URL=postgres://… cargo bench --bench fanout` measures replicas converging by
//! polling the change log (every second by default); add `BENCH_REDIS_URL=redis://…` for the
//! Redis bell. `BENCH_N` writes (default 300), `BENCH_RATE` per second (default 50), each
//! measured from the moment the Register call is sent until B's watcher delivers its PUT.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use agent_registry::config::ServeArgs;
use agent_registry::proto::{
    self, discovery_service_client::DiscoveryServiceClient,
    registry_service_client::RegistryServiceClient,
};
use hdrhistogram::Histogram;
use tokio::sync::mpsc;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One replica on its own port; returns its address.
async fn replica(url: &str, redis: Option<String>, prefix: &str) -> String {
    let mut args = ServeArgs::for_database(url);
    args.redis_url = redis;
    args.redis_prefix = prefix.to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        agent_registry::server::run(args, listener, std::future::pending())
            .await
            .expect("replica runs")
    });
    addr
}

async fn channel(addr: &str) -> tonic::transport::Channel {
    for _ in 0..100 {
        if let Ok(c) = tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
        {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("replica at {addr} did not come up");
}

#[tokio::main]
async fn main() {
    let Ok(url) = std::env::var("BENCH_DATABASE_URL") else {
        eprintln!(
            "skipped: fanout needs BENCH_DATABASE_URL=postgres://… (replicas share Postgres)"
        );
        return;
    };
    let redis = std::env::var("BENCH_REDIS_URL").ok();
    let (n, rate): (u64, f64) = (env("BENCH_N", 300), env("BENCH_RATE", 50.0));
    let prefix = format!("bench-{}:", uuid::Uuid::new_v4().simple());
    let a = replica(&url, redis.clone(), &prefix).await;
    let b = replica(&url, redis.clone(), &prefix).await;
    let mut writer = RegistryServiceClient::new(channel(&a).await);
    let mut watcher = DiscoveryServiceClient::new(channel(&b).await);
    // Give the bell its subscriptions before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let namespace = format!("fanout-{}", uuid::Uuid::new_v4().simple());
    let request = proto::WatchRequest {
        namespace: namespace.clone(),
        ..Default::default()
    };
    let mut stream = watcher.watch(request).await.unwrap().into_inner();
    let (arrived_tx, mut arrived) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(m)) = stream.message().await {
            let at = Instant::now();
            for e in m.events {
                let id = e.instance.map(|i| i.logical_id).unwrap_or_default();
                let _ = arrived_tx.send((id, at));
            }
        }
    });

    let mut sent = HashMap::new();
    let every = Duration::from_secs_f64(1.0 / rate);
    let mut tick = tokio::time::interval(every);
    for k in 0..n {
        tick.tick().await;
        let logical = format!("agent-{k}");
        sent.insert(logical.clone(), Instant::now());
        let req = proto::RegisterRequest {
            namespace: namespace.clone(),
            logical_id: logical,
            ready: true,
            ..Default::default()
        };
        writer.register(req).await.expect("register");
    }
    let mut hist = Histogram::<u64>::new(3).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sent.is_empty() && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), arrived.recv()).await {
            Ok(Some((id, at))) => {
                if let Some(t) = sent.remove(&id) {
                    hist.record(at.duration_since(t).as_micros() as u64)
                        .unwrap();
                }
            }
            _ => break,
        }
    }
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "fanout {}: {} writes at {rate}/s, write on A -> watcher on B: p50 {:.1} ms, p90 {:.1} ms, \
         p99 {:.1} ms, max {:.1} ms, missing {}",
        if redis.is_some() {
            "with Redis"
        } else {
            "polling (no Redis)"
        },
        hist.len(),
        ms(0.5),
        ms(0.9),
        ms(0.99),
        hist.max() as f64 / 1000.0,
        sent.len()
    );
}
