//! The metrics read from the registry's state at each scrape: instances by namespace and
//! status, open streams and watchers, and the counters the liveness layer and the change feed
//! keep as plain atomics on their hot paths.

use std::sync::Weak;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::registry::Registry;

#[derive(Debug)]
pub(super) struct State(pub Weak<Registry>);

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for State {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let Some(registry) = self.0.upgrade() else {
            return Ok(());
        };
        // Stored times are on the store's clock: LIVE is judged on it.
        let at = registry.store().clock().now();
        let namespaces = registry.index().all_namespaces(at);
        {
            let mut m = e.encode_descriptor(
                "instances",
                "Retained instances by namespace and status (live: ALIVE, current epoch, lease held)",
                None,
                MetricType::Gauge,
            )?;
            for ns in &namespaces {
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
        }
        let l = registry.liveness();
        let c = &l.counters;
        counter(
            &mut e,
            "heartbeats",
            "Heartbeats received",
            c.heartbeats.load(Ordering::Relaxed),
        )?;
        gauge(
            &mut e,
            "heartbeat_streams",
            "Heartbeat streams open on this replica",
            l.streams.open() as i64,
        )?;
        counter(
            &mut e,
            "flushes",
            "Heartbeat flushes written",
            c.flushes.load(Ordering::Relaxed),
        )?;
        counter(
            &mut e,
            "flush_failures",
            "Heartbeat flushes that failed (retried)",
            c.flush_failures.load(Ordering::Relaxed),
        )?;
        counter(
            &mut e,
            "expiries",
            "Instances this replica expired (lease ran out)",
            c.expiries.load(Ordering::Relaxed),
        )?;
        counter(
            &mut e,
            "self_preservation_trips",
            "Sweeps held back by the self-preservation guard, per namespace",
            c.guard_trips.load(Ordering::Relaxed),
        )?;
        gauge(
            &mut e,
            "store_reachable",
            "1 while the store answers, 0 during an outage",
            l.store_reachable() as i64,
        )?;
        // What partial failures did (README "Partial failures").
        let health = &l.store_health;
        for (name, help, v) in [
            (
                "store_outages",
                "Store outages that ended (each granted every lease a grace)",
                health.recoveries(),
            ),
            (
                "store_saturations",
                "Store calls refused because every pooled connection was busy",
                health.saturations(),
            ),
            (
                "persistence_lapses",
                "Times this replica stopped vouching for beats it could not persist",
                l.persistence.lapses(),
            ),
            (
                "expiry_transactions",
                "Expiry transactions committed (a bounded chunk each)",
                c.expiry_transactions.load(Ordering::Relaxed),
            ),
        ] {
            counter(&mut e, name, help, v)?;
        }
        gauge(
            &mut e,
            "heartbeats_unpersisted_milliseconds",
            "How long the oldest beat this replica acknowledged has waited for the store",
            l.persistence.unpersisted_for().as_millis() as i64,
        )?;
        gauge(
            &mut e,
            "store_clock_offset_milliseconds",
            "The store's clock minus this replica's, as last measured",
            l.clock.offset().num_milliseconds(),
        )?;
        let f = registry.followers();
        gauge(
            &mut e,
            "watchers",
            "Watch streams open on this replica",
            f.hub.watchers() as i64,
        )?;
        gauge(
            &mut e,
            "revision",
            "Highest revision applied on this replica",
            f.index.revision(),
        )?;
        gauge(
            &mut e,
            "change_feed_lag_seconds",
            "Seconds since this replica last confirmed it holds every committed change",
            f.lag().as_secs() as i64,
        )?;
        counter(
            &mut e,
            "change_notifications",
            "Other replicas' change notifications received through Redis",
            f.rung.load(Ordering::Relaxed),
        )?;
        Ok(())
    }
}
