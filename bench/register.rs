//! Register latency and throughput: BENCH_N Register calls over gRPC against an in-process
//! server, from BENCH_CONCURRENCY clients each calling sequentially (default 1: latency).
//!
//! `cargo bench --bench register` uses a temporary SQLite file; with
//! `BENCH_DATABASE_URL=postgres://…` it uses that database (it must exist; tables are created).
//! `BENCH_N` sets the number of calls (default 3000). Concurrent registrations are committed
//! together (group commit), so throughput grows with concurrency.

use std::sync::Arc;
use std::time::Instant;

use agent_registry::config::ServeArgs;
use agent_registry::proto::{self, registry_service_client::RegistryServiceClient};
use agent_registry::registry::Registry;
use agent_registry::storage::{self, StoreOptions};
use hdrhistogram::Histogram;

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("bench.db").display()));
    let n: u64 = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let args = ServeArgs::for_database(&url);
    let store = storage::open(&url, &StoreOptions::default())
        .await
        .expect("open store");
    let registry = Arc::new(
        Registry::open(
            store.clone(),
            args.limits().unwrap(),
            args.liveness().unwrap(),
        )
        .await
        .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        agent_registry::server::serve(registry, &args, listener, shutdown).await
    });
    let concurrency: u64 = std::env::var("BENCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let namespace = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let started = Instant::now();
    let clients = (0..concurrency).map(|c| {
        let mut client = RegistryServiceClient::new(channel.clone());
        let namespace = namespace.clone();
        tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3).unwrap();
            for i in 0..n / concurrency {
                let req = proto::RegisterRequest {
                    namespace: namespace.clone(),
                    logical_id: format!("agent-{}", (c + i) % 100),
                    ready: true,
                    ..Default::default()
                };
                let t = Instant::now();
                client.register(req).await.expect("register");
                hist.record(t.elapsed().as_micros() as u64).unwrap();
            }
            hist
        })
    });
    let mut hist = Histogram::<u64>::new(3).unwrap();
    for h in futures_util::future::join_all(clients).await {
        hist.add(h.unwrap()).unwrap();
    }
    let n = hist.len();
    let elapsed = started.elapsed();
    println!(
        "backend={} n={n} concurrency={concurrency} p50={}us p90={}us p99={}us max={}us rate={:.0}/s",
        store.backend(),
        hist.value_at_quantile(0.50),
        hist.value_at_quantile(0.90),
        hist.value_at_quantile(0.99),
        hist.max(),
        n as f64 / elapsed.as_secs_f64()
    );
    let _ = stop.send(());
    let _ = server.await;
}
