//! Heartbeat throughput and ack latency: N concurrent streams against the real binary.
//!
//! Each stream beats in a closed loop (send, await the ack, send the next) for BENCH_SECONDS
//! after BENCH_WARMUP seconds, so the figure is the most this replica acknowledges on this
//! machine with the generator beside it. Also reports the server's RSS and, on Postgres, the
//! database commits per heartbeat (read from pg_stat_database).
//!
//!   cargo bench --bench heartbeat                       # SQLite, 1000 streams
//!   BENCH_STREAMS=10000 BENCH_CONNECTIONS=100 cargo bench --bench heartbeat
//!   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench --bench heartbeat
//!   BENCH_STREAMS=10000 BENCH_INTERVAL_MS=1000 cargo bench --bench heartbeat   # paced, open loop
//!
//! With BENCH_DATABASE_URL the bench creates (and drops) its own database on that server.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use agent_registry::proto::{self, registry_service_client::RegistryServiceClient};
use hdrhistogram::Histogram;
use sqlx::Connection;
use tokio::io::{AsyncBufReadExt, BufReader};
use tonic::transport::Channel;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Commits in the bench database, and how many autovacuum/autoanalyze runs (Postgres's own
/// housekeeping, which commits too) have touched `registry_instance`.
async fn commits(admin: &str, db: &str) -> (i64, i64) {
    let mut c = sqlx::PgConnection::connect(admin).await.unwrap();
    let commits = sqlx::query_scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = $1")
        .bind(db)
        .fetch_one(&mut c)
        .await
        .unwrap();
    let url = format!("{}/{db}", &admin[..admin.rfind('/').unwrap()]);
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    let auto: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0)::int8 \
         FROM pg_stat_user_tables WHERE relname = 'registry_instance'",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    (commits, auto)
}

#[tokio::main]
async fn main() {
    let streams: usize = env("BENCH_STREAMS", 1000);
    let connections: usize = env("BENCH_CONNECTIONS", 100).min(streams).max(1);
    let seconds: u64 = env("BENCH_SECONDS", 10);
    let warmup: u64 = env("BENCH_WARMUP", 2);
    // 0: closed loop (maximum rate). Otherwise each stream beats once per interval (open loop).
    let interval_ms: u64 = env("BENCH_INTERVAL_MS", 0);
    let dir = tempfile::tempdir().unwrap();
    let admin = std::env::var("BENCH_DATABASE_URL").ok();
    let pg_db = format!("bench_hb_{}", uuid::Uuid::new_v4().simple());
    let url = match &admin {
        Some(a) => {
            let mut c = sqlx::PgConnection::connect(a).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {pg_db}"))
                .execute(&mut c)
                .await
                .unwrap();
            format!("{}/{pg_db}", &a[..a.rfind('/').unwrap()])
        }
        None => format!("sqlite://{}", dir.path().join("bench.db").display()),
    };

    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_agent-registry"))
        .args(["--listen", "127.0.0.1:0", "--database-url", &url])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn,agent_registry=info")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start agent-registry (build it with --release first for real figures)");
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next_line().await.unwrap().expect("server exited");
        if let Some(a) = line.split("listening on ").nth(1) {
            break a.trim().to_string();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let pid = server.id().unwrap();
    let idle_rss = rss_kib(pid);

    let mut channels = Vec::new();
    for _ in 0..connections {
        channels.push(
            Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
                .unwrap(),
        );
    }
    // Register everyone first (64 in flight), with a lease the run cannot outlast.
    let mut ids = Vec::with_capacity(streams);
    for chunk in (0..streams).collect::<Vec<_>>().chunks(64) {
        let calls = chunk.iter().map(|n| {
            let mut c = RegistryServiceClient::new(channels[n % connections].clone());
            async move {
                let req = proto::RegisterRequest {
                    namespace: "bench".into(),
                    logical_id: format!("agent-{n}"),
                    lease_ttl: Some(prost_types::Duration {
                        seconds: 600,
                        nanos: 0,
                    }),
                    ready: true,
                    ..Default::default()
                };
                c.register(req)
                    .await
                    .unwrap()
                    .into_inner()
                    .instance
                    .unwrap()
                    .instance_id
            }
        });
        ids.extend(futures_util::future::join_all(calls).await);
    }

    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::with_capacity(streams);
    for (n, id) in ids.into_iter().enumerate() {
        let mut client = RegistryServiceClient::new(channels[n % connections].clone());
        let (measuring, stop) = (measuring.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let (tx, rx) = tokio::sync::mpsc::channel(2);
            let mut replies = client
                .heartbeat(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .unwrap()
                .into_inner();
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            let mut seq = 0u64;
            let mut pace = (interval_ms > 0).then(|| {
                let every = Duration::from_millis(interval_ms);
                // Spread the streams' phases over one interval.
                let phase = every.mul_f64((n % 997) as f64 / 997.0);
                tokio::time::interval_at(tokio::time::Instant::now() + phase, every)
            });
            while !stop.load(Ordering::Relaxed) {
                if let Some(p) = pace.as_mut() {
                    p.tick().await;
                }
                seq += 1;
                let sent = Instant::now();
                let beat = proto::HeartbeatRequest {
                    instance_id: id.clone(),
                    sequence: seq,
                    status: 0,
                };
                if tx.send(beat).await.is_err() {
                    break;
                }
                match replies.message().await {
                    Ok(Some(ack)) if ack.sequence == seq => {}
                    other => panic!("beat {seq}: {other:?}"),
                }
                if measuring.load(Ordering::Relaxed) {
                    hist.record(sent.elapsed().as_micros().max(1) as u64)
                        .unwrap();
                }
            }
            hist
        }));
    }
    tokio::time::sleep(Duration::from_secs(warmup)).await;
    // Postgres backends report commits to pg_stat_database lazily (up to ~10 s after going
    // idle): let the registrations' commits land before the window opens.
    const STATS_SETTLE: Duration = Duration::from_secs(12);
    if admin.is_some() {
        tokio::time::sleep(STATS_SETTLE).await;
    }
    let commits_before = match &admin {
        Some(a) => commits(a, &pg_db).await,
        None => (0, 0),
    };
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds) / 2).await;
    let busy_rss = rss_kib(pid);
    tokio::time::sleep(Duration::from_secs(seconds) / 2).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    // Beats stop here; the settle then counts the window's commits (and any idle ones,
    // conservatively) once they are reported.
    stop.store(true, Ordering::Relaxed);
    if admin.is_some() {
        tokio::time::sleep(STATS_SETTLE).await;
    }
    let commits_after = match &admin {
        Some(a) => commits(a, &pg_db).await,
        None => (0, 0),
    };
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    for t in tasks {
        all.add(t.await.unwrap()).unwrap();
    }
    let beats = all.len();
    println!(
        "backend={} streams={streams} connections={connections} interval_ms={interval_ms} heartbeats/s={:.0} \
         ack_p50={}us ack_p99={}us ack_max={}us server_rss_idle={}KiB server_rss_busy={}KiB \
         rss_per_stream={:.1}KiB{}",
        if admin.is_some() {
            "postgres"
        } else {
            "sqlite"
        },
        beats as f64 / elapsed.as_secs_f64(),
        all.value_at_quantile(0.5),
        all.value_at_quantile(0.99),
        all.max(),
        idle_rss,
        busy_rss,
        (busy_rss.saturating_sub(idle_rss)) as f64 / streams as f64,
        match &admin {
            Some(_) => format!(
                " db_commits={} commits_per_heartbeat={:.6} autovacuum_or_analyze_runs={}",
                commits_after.0 - commits_before.0,
                (commits_after.0 - commits_before.0) as f64 / beats.max(1) as f64,
                commits_after.1 - commits_before.1,
            ),
            None => String::new(),
        }
    );
    drop(channels);
    let _ = server.kill().await;
    if let Some(a) = &admin {
        let mut c = sqlx::PgConnection::connect(a).await.unwrap();
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {pg_db} WITH (FORCE)"))
            .execute(&mut c)
            .await;
    }
}
