//! This replica as a whole: its health (what readiness and liveness report), the store probe,
//! shutdown, the readings `/metrics` serves, and the background loops, each handed the narrow
//! handle it runs on.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Applier, Feed, Registry, Retention};
use crate::events::Doorbell;
use crate::liveness::{Flusher, StreamStop, Sweeper};
use crate::metrics::{Readings, Source};

/// What readiness and liveness are judged on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaHealth {
    /// The store answers.
    pub store_reachable: bool,
    /// Why heartbeat streams are refused now, if they are.
    pub streams_stopped: Option<StreamStop>,
    /// A loop that stopped making progress (the process should be restarted).
    pub wedged: Option<&'static str>,
}

/// The background loops of a running replica.
pub struct Loops {
    /// Awaited last: it writes what is left of the leases before it returns.
    flusher: JoinHandle<()>,
    others: Vec<JoinHandle<()>>,
}

impl Loops {
    /// Waits for every loop to end (after their token was cancelled).
    pub async fn join(self) {
        for l in self.others {
            let _ = l.await;
        }
        let _ = self.flusher.await;
    }
}

impl Registry {
    pub fn health(&self) -> ReplicaHealth {
        let l = &self.liveness;
        ReplicaHealth {
            store_reachable: l.store_reachable(),
            streams_stopped: l.streams_stopped(),
            wedged: l.wedged(),
        }
    }

    /// Probes the store once — a ping, or a write while writes fail (only a write can show they
    /// work again) — and says whether it is reachable now. The outcome, like that of every
    /// store call, feeds the store's health.
    pub async fn probe_store(&self) -> bool {
        let ok = match self.liveness.store_writes_failing() {
            true => self.store.probe_write().await.is_ok(),
            false => self.store.ping().await.is_ok(),
        };
        ok && self.liveness.store_reachable()
    }

    /// Probes the store every `every` (every half second while it fails, to time an outage
    /// closely) until `stop` is cancelled, a probe in flight included: what a replica runs
    /// beside its loops so that an outage's end is seen even when nothing else writes.
    pub async fn run_store_probe(
        self: Arc<Self>,
        every: std::time::Duration,
        stop: CancellationToken,
    ) {
        let fast = std::time::Duration::from_millis(500);
        loop {
            let wait = tokio::select! {
                reachable = self.probe_store() => match reachable {
                    true => every,
                    false => every.min(fast),
                },
                _ = stop.cancelled() => return,
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    /// Shutdown begins: every heartbeat stream and watcher is told to end.
    pub fn begin_shutdown(&self) {
        self.liveness.begin_shutdown();
    }

    /// The highest revision applied on this replica.
    pub fn revision(&self) -> i64 {
        self.index.revision()
    }

    /// For tests: forgets the lease of `id` here, as if this replica had never held it.
    #[doc(hidden)]
    pub fn forget_lease(&self, id: uuid::Uuid) {
        self.liveness.forget_lease(id);
    }

    /// Whether a beat for `id` would renew a lease here now.
    pub fn holds_lease(&self, id: uuid::Uuid) -> bool {
        self.liveness.holds_lease(id)
    }

    /// Closes the store (after the loops stopped).
    pub async fn close(&self) {
        self.store.close().await;
    }

    /// What the Redis bell shares with the change feed.
    pub fn doorbell(&self) -> Arc<Doorbell> {
        self.applier.doorbell.clone()
    }

    pub fn flusher(&self) -> Flusher<Applier> {
        Flusher::new(self.liveness.clone(), self.applier.clone())
    }

    pub fn sweeper(&self) -> Sweeper<Applier> {
        Sweeper::new(self.liveness.clone(), self.applier.clone())
    }

    pub fn feed(&self) -> Feed {
        Feed {
            applier: self.applier.clone(),
            every: self.settings.feed.poll_interval,
        }
    }

    pub fn retention(&self) -> Retention {
        Retention {
            applier: self.applier.clone(),
            retention: self.settings.feed.dead_retention,
        }
    }

    /// Starts the flusher, the sweeper, the change feed and retention; all end when `stop` is
    /// cancelled (the flusher after one last flush).
    pub fn spawn_loops(&self, stop: CancellationToken) -> Loops {
        Loops {
            flusher: tokio::spawn(self.flusher().run(stop.clone())),
            others: vec![
                tokio::spawn(self.sweeper().run(stop.clone())),
                tokio::spawn(self.feed().run(stop.clone())),
                tokio::spawn(self.retention().run(stop)),
            ],
        }
    }
}

impl Source for Registry {
    fn readings(&self) -> Readings {
        let mut r = Readings {
            // Stored times are on the store's clock: LIVE is judged on it.
            namespaces: self.index.all_namespaces(self.store.clock().now()),
            flushes: self.store.stats().flush_statements(),
            watchers: self.applier.hub.watchers(),
            revision: self.index.revision(),
            feed_lag_seconds: self.applier.lag().as_secs() as i64,
            change_notifications: self.applier.doorbell.rings_heard(),
            ..Readings::default()
        };
        self.liveness.read_into(&mut r);
        r
    }
}
