//! The metrics read from a replica's state at each scrape — instances by namespace and status,
//! open streams and watchers, and the counters kept as plain atomics on hot paths — taken as
//! one [`Readings`] from whatever implements [`Source`] (the registry).

use std::sync::Weak;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::domain::NamespaceSummary;

/// A replica's state as numbers, read at one moment.
#[derive(Debug, Clone, Default)]
pub struct Readings {
    /// Every namespace with its counts (LIVE judged on the store's clock).
    pub namespaces: Vec<NamespaceSummary>,
    pub heartbeats: u64,
    /// Heartbeat rows the flushes wrote (the lazy flush skips beats the store need not hold yet).
    pub heartbeat_rows_written: u64,
    pub heartbeat_streams: usize,
    pub flushes: u64,
    pub flush_failures: u64,
    pub expiries: u64,
    pub guard_trips: u64,
    pub graces: u64,
    pub store_reachable: bool,
    pub store_outages: u64,
    pub store_saturations: u64,
    /// Times this replica stopped vouching for its beats (exposed as `persistence_lapses`).
    pub vouching_lapses: u64,
    pub expiry_transactions: u64,
    pub unpersisted_ms: i64,
    pub store_clock_offset_ms: i64,
    pub watchers: usize,
    pub revision: i64,
    pub feed_lag_seconds: i64,
    pub change_notifications: u64,
    /// Namespaces whose expiries the self-preservation guard holds back now.
    pub guard_holding: Vec<String>,
}

/// What the metrics read at each scrape.
pub trait Source: Send + Sync + 'static {
    fn readings(&self) -> Readings;
}

/// The collector registered with the Prometheus registry; holds its source weakly, so metrics
/// never keep a stopped registry alive.
pub(super) struct Scrape(pub Weak<dyn Source>);

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scrape")
    }
}

enum Kind {
    Counter(u64),
    Gauge(i64),
}

fn encode_one(e: &mut DescriptorEncoder, name: &str, help: &str, v: Kind) -> std::fmt::Result {
    match v {
        Kind::Counter(v) => {
            let c = ConstCounter::new(v);
            c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
        }
        Kind::Gauge(v) => {
            let g = ConstGauge::new(v);
            g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
        }
    }
}

/// Every plain metric of `r`: name, help, value.
fn plain(r: &Readings) -> [(&'static str, &'static str, Kind); 18] {
    use Kind::{Counter as C, Gauge as G};
    [
        ("heartbeats", "Heartbeats received", C(r.heartbeats)),
        (
            "heartbeat_streams",
            "Heartbeat streams open on this replica",
            G(r.heartbeat_streams as i64),
        ),
        ("flushes", "Heartbeat flushes written", C(r.flushes)),
        (
            "heartbeat_rows_written",
            "Heartbeat rows written by flushes (a beat is written once the stored one is older \
             than the flush lag)",
            C(r.heartbeat_rows_written),
        ),
        (
            "flush_failures",
            "Heartbeat flushes that failed (retried)",
            C(r.flush_failures),
        ),
        (
            "expiries",
            "Instances this replica expired (lease ran out)",
            C(r.expiries),
        ),
        (
            "self_preservation_trips",
            "Sweeps held back by the self-preservation guard, per namespace",
            C(r.guard_trips),
        ),
        (
            "store_reachable",
            "1 while the store answers, 0 during an outage",
            G(r.store_reachable as i64),
        ),
        // What partial failures did (README "Partial failures").
        (
            "store_outages",
            "Store outages that ended (each granted every lease a grace)",
            C(r.store_outages),
        ),
        (
            "store_saturations",
            "Store calls refused because every pooled connection was busy",
            C(r.store_saturations),
        ),
        (
            "persistence_lapses",
            "Times this replica stopped vouching for beats it could not persist",
            C(r.vouching_lapses),
        ),
        (
            "expiry_transactions",
            "Expiry transactions committed (a bounded chunk each)",
            C(r.expiry_transactions),
        ),
        (
            "heartbeats_unpersisted_milliseconds",
            "How long the oldest beat this replica acknowledged has waited for the store",
            G(r.unpersisted_ms),
        ),
        (
            "store_clock_offset_milliseconds",
            "The store's clock minus this replica's, as last measured",
            G(r.store_clock_offset_ms),
        ),
        (
            "watchers",
            "Watch streams open on this replica",
            G(r.watchers as i64),
        ),
        (
            "revision",
            "Highest revision applied on this replica",
            G(r.revision),
        ),
        (
            "change_feed_lag_seconds",
            "Seconds since this replica last confirmed it holds every committed change",
            G(r.feed_lag_seconds),
        ),
        (
            "change_notifications",
            "Other replicas' change notifications received through Redis",
            C(r.change_notifications),
        ),
    ]
}

fn encode_instances(
    e: &mut DescriptorEncoder,
    namespaces: &[NamespaceSummary],
) -> std::fmt::Result {
    let mut m = e.encode_descriptor(
        "instances",
        "Retained instances by namespace and status (live: ALIVE, current epoch, lease held)",
        None,
        MetricType::Gauge,
    )?;
    for ns in namespaces {
        for (status, n) in [
            ("STARTING", ns.starting),
            ("ALIVE", ns.alive),
            ("DRAINING", ns.draining),
            ("DEAD", ns.dead),
            ("LIVE", ns.live),
        ] {
            let labels = [
                ("namespace", ns.namespace.name.as_str()),
                ("status", status),
            ];
            ConstGauge::new(n).encode(m.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let Some(source) = self.0.upgrade() else {
            return Ok(());
        };
        let r = source.readings();
        encode_instances(&mut e, &r.namespaces)?;
        for (name, help, v) in plain(&r) {
            encode_one(&mut e, name, help, v)?;
        }
        Ok(())
    }
}
