//! The heartbeat scenario: N agents register, open one stream each, then beat at a set
//! interval (or as fast as acknowledged) for a warm-up and a measured window.
//!
//! Latency is measured from each beat's *intended* send time, so a target that falls behind
//! is charged for the wait (no coordinated omission): an agent whose ack comes late sends its
//! next beat at once and that beat's latency includes the lateness.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream;
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::agents::{self, Conn, Protocol, Session};
use crate::proc::{CpuMark, rss_kib};
use crate::progress;
use crate::stats::{Latency, histogram, record};

#[derive(Debug, Clone, clap::Args)]
pub struct HeartbeatArgs {
    /// What is being driven: registry, echo, pg-update, redis-set (the registry's contract) or
    /// etcd (LeaseGrant + LeaseKeepAlive). Only a label, except that etcd changes the protocol.
    #[arg(long, default_value = "registry")]
    pub target: String,
    /// host:port of the target.
    #[arg(long)]
    pub addr: String,
    /// Simulated agents, each with one registration and one stream.
    #[arg(long, default_value_t = 1000)]
    pub agents: usize,
    /// Agents sharing one HTTP/2 connection (1: every agent has its own).
    #[arg(long, default_value_t = 1)]
    pub per_connection: usize,
    /// Spread connections over 127.0.0.1 … 127.0.0.N as source addresses.
    #[arg(long, default_value_t = 1)]
    pub source_addrs: usize,
    /// Each agent beats once per interval, phases spread evenly; 0s beats again as soon as
    /// the previous beat is acknowledged (closed loop: the most the target acknowledges).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Lease asked for at registration; longer than any stall the run could cause.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub lease_ttl: Duration,
    /// The target's process id, for its RSS and CPU.
    #[arg(long)]
    pub pid: Option<u32>,
    /// The registry's metrics address (host:port): its flush count gives statements per beat.
    #[arg(long)]
    pub metrics: Option<String>,
    /// Stop each agent after this many beats (0: no limit). With a duration long enough for
    /// every beat, the work done is fixed: what an instruction-counting profile needs.
    #[arg(long, default_value_t = 0)]
    pub beats: u64,
    /// Connections (and registrations) made at once while setting up.
    #[arg(long, default_value_t = 256)]
    pub setup_concurrency: usize,
}

/// Shards of the ack-latency histogram, so 100 000 agents do not contend on one lock (and do
/// not each carry a histogram of their own).
struct Shards(Vec<Mutex<Histogram<u64>>>);

impl Shards {
    fn new() -> Self {
        Self((0..64).map(|_| Mutex::new(histogram())).collect())
    }
    fn record(&self, agent: usize, d: Duration) {
        record(&mut self.0[agent % 64].lock().unwrap(), d);
    }
    fn merged(&self) -> Histogram<u64> {
        let mut all = histogram();
        for s in &self.0 {
            all.add(&*s.lock().unwrap()).expect("same bounds");
        }
        all
    }
}

#[derive(Default)]
struct Counters {
    /// Agents whose loop has ended (all of them, early, when `--beats` is reached).
    finished: AtomicU64,
    acked_in_window: AtomicU64,
    errors: AtomicU64,
    unsent: AtomicU64,
}

/// Runs the scenario and returns its JSON result.
pub async fn run(a: HeartbeatArgs) -> Result<serde_json::Value, String> {
    let protocol = Protocol::for_target(&a.target);
    let rss_idle = a.pid.and_then(rss_kib);
    let per_connection = a.per_connection.max(1);
    let connections = a.agents.div_ceil(per_connection);
    progress!(
        "{}: {connections} connections for {} agents",
        a.target,
        a.agents
    );
    let conns: Vec<Conn> = stream::iter(0..connections)
        .map(|n| agents::connect(protocol, &a.addr, agents::source_address(n, a.source_addrs)))
        .buffered(a.setup_concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;

    progress!("registering {} agents", a.agents);
    let mut register = histogram();
    let namespace = agents::run_namespace();
    let registered: Vec<_> = stream::iter(0..a.agents)
        .map(|i| {
            let conn = conns[i / per_connection].clone();
            let req = agents::register_request(&namespace, i, "bench", a.lease_ttl);
            async move {
                let t = Instant::now();
                let r = agents::register(&conn, req, a.lease_ttl).await;
                (r, t.elapsed())
            }
        })
        .buffered(a.setup_concurrency)
        .collect()
        .await;
    let mut ids = Vec::with_capacity(a.agents);
    for (r, took) in registered {
        record(&mut register, took);
        ids.push(r?);
    }

    progress!("opening {} heartbeat streams", a.agents);
    let sessions: Vec<Session> = stream::iter(0..a.agents)
        .map(|i| Session::open(&conns[i / per_connection], &ids[i]))
        .buffered(a.setup_concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;

    let t0 = Instant::now();
    let window_start = t0 + a.warmup;
    let end = window_start + a.duration;
    let shards = Arc::new(Shards::new());
    let counters = Arc::new(Counters::default());
    let mut tasks = Vec::with_capacity(a.agents);
    for (i, session) in sessions.into_iter().enumerate() {
        let phase = a.interval.mul_f64(i as f64 / a.agents as f64);
        let (shards, counters, interval) = (shards.clone(), counters.clone(), a.interval);
        tasks.push(tokio::spawn(agent(
            i,
            session,
            t0 + phase,
            (interval, a.beats),
            (window_start, end),
            shards,
            counters,
        )));
    }

    progress!(
        "warming up for {:?}, then measuring {:?}",
        a.warmup,
        a.duration
    );
    tokio::time::sleep_until(window_start).await;
    let cpu_start = CpuMark::now(a.pid);
    let flushes_start = match &a.metrics {
        Some(m) => Some(flush_count(m).await?),
        None => None,
    };
    let mut rss_peak = 0;
    let all_finished = || counters.finished.load(Ordering::Relaxed) == a.agents as u64;
    while Instant::now() < end && !all_finished() {
        rss_peak = rss_peak.max(a.pid.and_then(rss_kib).unwrap_or(0));
        let left = end.saturating_duration_since(Instant::now());
        tokio::time::sleep(Duration::from_millis(100).min(left)).await;
    }
    let measured = Instant::now().min(end) - window_start;
    let cpu_end = CpuMark::now(a.pid);
    let rss_end = a.pid.and_then(rss_kib);
    let flushes_end = match &a.metrics {
        Some(m) => Some(flush_count(m).await?),
        None => None,
    };
    for t in tasks {
        let _ = t.await;
    }
    drop(conns);

    let (cpu_target, cpu_machine) = cpu_start.since(&cpu_end);
    let acked = counters.acked_in_window.load(Ordering::Relaxed);
    let seconds = measured.as_secs_f64().max(1e-3);
    let offered = if a.interval.is_zero() {
        None
    } else {
        Some(a.agents as f64 / a.interval.as_secs_f64())
    };
    let flushes = flushes_end.zip(flushes_start).map(|(e, s)| e.0 - s.0);
    let flush_ms = flushes_end
        .zip(flushes_start)
        .map(|(e, s)| (e.1 - s.1) * 1000.0 / (e.0 - s.0).max(1.0));
    let rows = flushes_end.zip(flushes_start).map(|(e, s)| e.2 - s.2);
    let per_agent =
        |rss: Option<u64>| Some((rss?.saturating_sub(rss_idle?)) as f64 / a.agents as f64);
    Ok(json!({
        "scenario": "heartbeat",
        "target": a.target,
        "agents": a.agents,
        "connections": connections,
        "per_connection": a.per_connection,
        "interval_ms": a.interval.as_millis() as u64,
        "warmup_s": a.warmup.as_secs_f64(),
        "duration_s": seconds,
        "offered_per_s": offered,
        "achieved_per_s": acked as f64 / seconds,
        "ack": Latency::of(&shards.merged()),
        "register": Latency::of(&register),
        "errors": counters.errors.load(Ordering::Relaxed),
        "unsent": counters.unsent.load(Ordering::Relaxed),
        "target_rss_idle_kib": rss_idle,
        "target_rss_kib": rss_end,
        "target_rss_peak_kib": rss_peak,
        "target_rss_per_agent_kib": per_agent(rss_end),
        "target_cpu_cores": cpu_target,
        "target_cpu_us_per_beat": cpu_target.map(|c| c * 1e6 * seconds / acked.max(1) as f64),
        "machine_cpu_cores": cpu_machine,
        "flush_statements": flushes,
        "flush_statement_mean_ms": flush_ms,
        "statements_per_heartbeat": flushes.map(|f| f / acked.max(1) as f64),
        "rows_written_per_s": rows.map(|r| r / seconds),
    }))
}

/// One agent's loop. Beats intended before the window are the warm-up; beats still unsent two
/// seconds after the window (a target far behind) are counted as `unsent`, not sent, and are
/// not in the latency histogram: read p99 together with `unsent`.
async fn agent(
    i: usize,
    mut session: Session,
    first: Instant,
    (interval, beats): (Duration, u64),
    (window_start, end): (Instant, Instant),
    shards: Arc<Shards>,
    counters: Arc<Counters>,
) {
    let cutoff = end + Duration::from_secs(2);
    let mut next = first;
    let mut sent = 0;
    while beats == 0 || sent < beats {
        sent += 1;
        if interval.is_zero() {
            next = Instant::now();
        } else {
            tokio::time::sleep_until(next).await;
        }
        if next >= end {
            break;
        }
        if Instant::now() > cutoff {
            let left = (end - next).as_nanos().div_ceil(interval.as_nanos().max(1));
            counters.unsent.fetch_add(left as u64, Ordering::Relaxed);
            break;
        }
        if let Err(e) = session.beat().await {
            if counters.errors.fetch_add(1, Ordering::Relaxed) < 5 {
                progress!("agent {i}: {e}");
            }
            break;
        }
        let now = Instant::now();
        // Throughput counts acks that arrive in the window, whenever their beat was due, so a
        // target running behind is not charged twice; latency is kept for beats due in it.
        if now >= window_start && now <= end {
            counters.acked_in_window.fetch_add(1, Ordering::Relaxed);
        }
        if next >= window_start {
            shards.record(i, now - next);
        }
        next += interval;
    }
    counters.finished.fetch_add(1, Ordering::Relaxed);
}

/// The registry's heartbeat flush statements so far, the seconds they took and the rows they
/// wrote, from its Prometheus endpoint.
pub async fn flush_count(metrics: &str) -> Result<(f64, f64, f64), String> {
    let body = http_get(metrics, "/metrics").await?;
    let sum = |suffix: &str| {
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(' '))
            .filter(|(name, _)| name.ends_with(suffix))
            .filter_map(|(_, v)| v.trim().parse::<f64>().ok())
            .sum()
    };
    Ok((
        sum("flush_duration_seconds_count"),
        sum("flush_duration_seconds_sum"),
        sum("flush_batch_size_sum"),
    ))
}

/// A plain HTTP/1.0 GET; the metrics endpoint needs nothing more.
pub async fn http_get(addr: &str, path: &str) -> Result<String, String> {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("metrics {addr}: {e}"))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut body = String::new();
    s.read_to_string(&mut body)
        .await
        .map_err(|e| e.to_string())?;
    Ok(body)
}
