//! Prometheus instruments: what the registry counts as it works (histograms, labelled
//! counters) and what is read from its state at each scrape (instances, streams, watchers, feed
//! lag), rendered as the text exposition the server's `/metrics` endpoint serves.
//!
//! Each server has its own `prometheus_client` registry — no global recorder — so several
//! servers in one process (tests, benchmarks) keep their numbers apart.

mod scrape;

pub use scrape::{Readings, Source};

use std::sync::{Mutex, OnceLock, Weak};

use crate::common::lock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry as Exposition;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabel {
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabel {
    pub file: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodCodeLabel {
    pub method: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabel {
    /// The route as declared (`/v1/instances/{id}`), never the path a client sent.
    pub route: String,
    pub method: String,
    pub status: u16,
}

/// The metrics one server records as events happen.
#[derive(Debug)]
pub struct Metrics {
    pub registrations: Counter,
    pub flush_seconds: Histogram,
    pub flush_rows: Histogram,
    pub watch_events: Counter,
    pub store_errors: Family<OperationLabel, Counter>,
    pub grpc_requests: Family<MethodCodeLabel, Counter>,
    pub grpc_seconds: Family<MethodLabel, Histogram>,
    /// HTTP API requests answered, by route, method and HTTP status.
    pub http_requests: Family<HttpLabel, Counter>,
    /// Reloads of watched files (TLS, tokens), by file and outcome (`applied`, `failed`).
    pub reloads: Family<ReloadLabel, Counter>,
    prom: Mutex<Exposition>,
    /// Where `/metrics` is served, once bound.
    address: OnceLock<std::net::SocketAddr>,
    /// Set once the registry's state is collected (a restarted server must not add it twice).
    observing: OnceLock<()>,
    /// Whether Redis is reachable; registered only when Redis is configured.
    redis_up: OnceLock<Gauge>,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    // 100 µs … ~13 s.
    exponential_buckets(0.0001, 2.0, 18)
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Self {
            registrations: Counter::default(),
            flush_seconds: Histogram::new(latency_buckets()),
            flush_rows: Histogram::new(exponential_buckets(1.0, 4.0, 10)),
            watch_events: Counter::default(),
            store_errors: Family::default(),
            grpc_requests: Family::default(),
            grpc_seconds: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
            http_requests: Family::default(),
            reloads: Family::default(),
            prom: Mutex::new(Exposition::with_prefix("agent_registry")),
            address: OnceLock::new(),
            observing: OnceLock::new(),
            redis_up: OnceLock::new(),
        };
        {
            let mut r = crate::common::lock(&m.prom);
            r.register(
                "registrations",
                "Registrations committed (new instances)",
                m.registrations.clone(),
            );
            r.register(
                "flush_duration_seconds",
                "Time one heartbeat flush statement took",
                m.flush_seconds.clone(),
            );
            r.register(
                "flush_batch_size",
                "Leases written by one heartbeat flush",
                m.flush_rows.clone(),
            );
            r.register(
                "watch_events_sent",
                "Watch events sent to watchers",
                m.watch_events.clone(),
            );
            r.register(
                "store_errors",
                "Store calls that failed, by operation",
                m.store_errors.clone(),
            );
            r.register(
                "grpc_requests",
                "gRPC calls finished, by method and status code",
                m.grpc_requests.clone(),
            );
            r.register(
                "http_requests",
                "HTTP API requests answered, by route, method and status (a watch when it opens)",
                m.http_requests.clone(),
            );
            r.register(
                "reloads",
                "Reloads of watched files (TLS certificates, the tokens file), by outcome",
                m.reloads.clone(),
            );
            r.register(
                "grpc_request_duration_seconds",
                "gRPC call duration by method (streams: until they end)",
                m.grpc_seconds.clone(),
            );
        }
        m
    }
}

impl Metrics {
    /// Adds the gauges and counters read from `source` at each scrape. Holds it weakly:
    /// metrics never keep a stopped registry alive.
    pub fn observe(&self, source: Weak<dyn Source>) {
        if self.observing.set(()).is_err() {
            return;
        }
        lock(&self.prom).register_collector(Box::new(scrape::Scrape(source)));
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let r = lock(&self.prom);
        prometheus_client::encoding::text::encode(&mut out, &r)
            .expect("writing to a String cannot fail");
        out
    }

    /// The `redis_up` gauge (1 reachable, 0 not), registered on first use.
    pub fn redis_up(&self) -> &Gauge {
        self.redis_up.get_or_init(|| {
            let g = Gauge::default();
            let mut r = lock(&self.prom);
            r.register(
                "redis_up",
                "1 while the Redis change notifications are subscribed, 0 otherwise",
                g.clone(),
            );
            g
        })
    }

    /// Counts one reload of `file`.
    pub fn reloaded(&self, file: &'static str, applied: bool) {
        let outcome = if applied { "applied" } else { "failed" };
        self.reloads
            .get_or_create(&ReloadLabel { file, outcome })
            .inc();
    }

    /// One HTTP API request answered.
    pub fn http_request(&self, route: &str, method: &str, status: u16) {
        self.http_requests
            .get_or_create(&HttpLabel {
                route: route.to_string(),
                method: method.to_string(),
                status,
            })
            .inc();
    }

    /// Counts a failed store call.
    pub fn store_error(&self, operation: &'static str) {
        self.store_errors
            .get_or_create(&OperationLabel { operation })
            .inc();
    }

    /// Where `/metrics` is served, once the listener is bound.
    pub fn address(&self) -> Option<std::net::SocketAddr> {
        self.address.get().copied()
    }

    /// Records where `/metrics` is served (the server's endpoint, once bound).
    pub fn serving_at(&self, addr: std::net::SocketAddr) {
        let _ = self.address.set(addr);
    }
}
