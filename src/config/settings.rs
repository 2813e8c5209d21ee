//! The serve flags checked and turned into what each part is tuned by: the registry's
//! `Settings`, the store's options, the access limits, the TLS files. A setting that cannot
//! work is refused naming its flag, before anything starts.

use std::time::Duration;

use clap::Parser;

use super::{Cli, ServeArgs};
use crate::security::AccessLimits;
use crate::security::Role;
use crate::security::policy::{Grant, Namespaces};
use crate::security::tls::TlsFiles;
use agent_registry_core::domain::LeaseBounds;
use agent_registry_core::liveness::{LivenessConfig, MAX_LAZY_FLUSH_FRACTION};
use agent_registry_core::registry::{CatalogConfig, FeedConfig, Settings, StoreGuard, WatchConfig};
use agent_registry_core::storage::{StoreOptions, TimeSource};

/// Refuses a zero duration, naming its flag.
fn positive(flag: &str, d: Duration) -> Result<(), String> {
    if d.is_zero() {
        return Err(format!("{flag} must be positive"));
    }
    Ok(())
}

impl ServeArgs {
    /// Every setting checked at once, so a server never starts with one that cannot work (and
    /// no task meets a zero interval later).
    pub fn check(&self) -> Result<(), String> {
        self.settings()?;
        self.access_limits()?;
        self.http_listen()?;
        self.xds_anonymous()?;
        self.public_cards()?;
        Ok(())
    }

    /// Everything the registry's use cases and loops are tuned by, checked.
    pub fn settings(&self) -> Result<Settings, String> {
        let (watch, feed) = self.watch()?;
        Ok(Settings {
            lease_bounds: self.lease_bounds()?,
            liveness: self.liveness()?,
            watch,
            feed,
            store: self.store()?.1,
            catalog: self.catalog()?,
        })
    }

    /// How cards are taken: the size limit, never above a message's (a card travels in one).
    pub fn catalog(&self) -> Result<CatalogConfig, String> {
        if self.max_card_size == 0 {
            return Err("--max-card-size must be at least 1".into());
        }
        Ok(CatalogConfig {
            max_card_bytes: self.max_card_size.min(self.max_message_size),
        })
    }

    /// Lease bounds, checked for consistency.
    pub fn lease_bounds(&self) -> Result<LeaseBounds, String> {
        let limits = LeaseBounds {
            default_lease_ttl: self.default_lease_ttl,
            min_lease_ttl: self.min_lease_ttl,
            max_lease_ttl: self.max_lease_ttl,
        };
        if limits.min_lease_ttl.is_zero()
            || limits.min_lease_ttl > limits.default_lease_ttl
            || limits.default_lease_ttl > limits.max_lease_ttl
        {
            return Err(format!(
                "lease bounds must satisfy 0 < --min-lease-ttl ({:?}) <= --default-lease-ttl ({:?}) <= --max-lease-ttl ({:?})",
                limits.min_lease_ttl, limits.default_lease_ttl, limits.max_lease_ttl
            ));
        }
        Ok(limits)
    }

    /// Flush, sweep and expiry tuning.
    pub fn liveness(&self) -> Result<LivenessConfig, String> {
        if !(self.expiry_guard > 0.0 && self.expiry_guard <= 1.0) {
            return Err(format!(
                "--expiry-guard must be in (0, 1], got {}",
                self.expiry_guard
            ));
        }
        if !(self.max_unpersisted_fraction > 0.0 && self.max_unpersisted_fraction <= 1.0) {
            return Err(format!(
                "--max-unpersisted-fraction must be in (0, 1], got {}",
                self.max_unpersisted_fraction
            ));
        }
        let lazy = self.lazy_flush_fraction;
        if !(0.0..=MAX_LAZY_FLUSH_FRACTION + 1e-9).contains(&lazy) {
            return Err(format!(
                "--lazy-flush-fraction must be in [0, 1/3], got {lazy}"
            ));
        }
        positive("--flush-interval", self.flush_interval)?;
        positive("--sweep-interval", self.sweep_interval)?;
        positive("--expiry-guard-window", self.expiry_guard_window)?;
        // A lease must outlive a flush and a sweep, or a beating agent could expire between.
        for (flag, d) in [
            ("--flush-interval", self.flush_interval),
            ("--sweep-interval", self.sweep_interval),
        ] {
            if d * 2 > self.min_lease_ttl {
                return Err(format!(
                    "{flag} ({d:?}) must be at most half of --min-lease-ttl ({:?})",
                    self.min_lease_ttl
                ));
            }
        }
        Ok(LivenessConfig {
            flush_interval: self.flush_interval,
            sweep_interval: self.sweep_interval,
            expiry_guard: self.expiry_guard,
            expiry_guard_floor: self.expiry_guard_floor,
            expiry_guard_window: self.expiry_guard_window,
            max_heartbeat_rate: self.max_heartbeat_rate,
            unpersisted_fraction: self.max_unpersisted_fraction,
            lazy_flush_fraction: lazy.min(MAX_LAZY_FLUSH_FRACTION),
        })
    }

    /// How the store is reached and judged.
    pub fn store(&self) -> Result<(StoreOptions, StoreGuard), String> {
        positive("--store-timeout", self.store_timeout)?;
        positive("--store-outage-min", self.store_outage_min)?;
        positive("--health-check-interval", self.health_check_interval)?;
        positive("--reload-interval", self.reload_interval)?;
        if self.db_tcp_keepalive < Duration::from_secs(1) {
            return Err(format!(
                "--db-tcp-keepalive must be at least 1s, got {:?}",
                self.db_tcp_keepalive
            ));
        }
        if self.db_max_connections == 0 {
            return Err("--db-max-connections must be positive".into());
        }
        let options = StoreOptions {
            max_connections: self.db_max_connections,
            timeout: self.store_timeout,
            keepalive: self.db_tcp_keepalive,
            time: TimeSource::Database,
        };
        let guard = StoreGuard {
            timeout: self.store_timeout,
            min_outage: self.store_outage_min,
        };
        Ok((options, guard))
    }

    /// Watch and change-feed tuning.
    pub fn watch(&self) -> Result<(WatchConfig, FeedConfig), String> {
        positive("--change-poll-interval", self.change_poll_interval)?;
        positive("--watch-bookmark-interval", self.watch_bookmark_interval)?;
        positive("--watch-stall-timeout", self.watch_stall_timeout)?;
        if self.watch_buffer == 0 || self.watch_history == 0 {
            return Err("--watch-buffer and --watch-history must be positive".into());
        }
        // Replicas read the log every poll interval: a log kept for less would be collected
        // before they read it, and they would rebuild from a snapshot for ever.
        if self.dead_retention < self.change_poll_interval * 10 {
            return Err(format!(
                "--dead-retention ({:?}) must be at least ten --change-poll-interval ({:?})",
                self.dead_retention, self.change_poll_interval
            ));
        }
        let watch = WatchConfig {
            history: self.watch_history,
            buffer: self.watch_buffer,
            bookmark_interval: self.watch_bookmark_interval,
            stall_timeout: self.watch_stall_timeout,
        };
        let feed = FeedConfig {
            poll_interval: self.change_poll_interval,
            dead_retention: self.dead_retention,
        };
        Ok((watch, feed))
    }

    /// The limits of SPEC §9.
    pub fn access_limits(&self) -> Result<AccessLimits, String> {
        for (flag, v) in [
            ("--max-message-size", self.max_message_size),
            ("--max-metadata-size", self.max_metadata_size),
            (
                "--max-streams-per-connection",
                self.max_streams_per_connection,
            ),
            ("--max-open-streams", self.max_open_streams),
            (
                "--max-watches-per-connection",
                self.max_watches_per_connection,
            ),
        ] {
            if v == 0 {
                return Err(format!("{flag} must be positive"));
            }
        }
        if self.max_message_size > u32::MAX as usize {
            return Err("--max-message-size must fit a gRPC length prefix (4 GiB)".into());
        }
        Ok(AccessLimits {
            max_message_bytes: self.max_message_size,
            max_metadata_bytes: self.max_metadata_size,
            max_streams_per_connection: self.max_streams_per_connection,
            max_open_streams: self.max_open_streams,
            max_watches_per_connection: self.max_watches_per_connection,
            requests_per_second: self.max_requests_per_second,
        })
    }

    /// Who an xDS stream without a token is, if anyone (`--xds-anonymous-namespaces`).
    pub fn xds_anonymous(&self) -> Result<Option<Grant>, String> {
        anonymous_reader(
            "--xds-anonymous-namespaces",
            "xds-anonymous",
            &self.xds_anonymous_namespaces,
        )
    }

    /// Who reads a well-known card path without a token, if anyone
    /// (`--public-card-namespaces`).
    pub fn public_cards(&self) -> Result<Option<Grant>, String> {
        anonymous_reader(
            "--public-card-namespaces",
            "public-cards",
            &self.public_card_namespaces,
        )
    }

    /// Where the HTTP API listens: `None` when `--http-listen` is empty (off).
    pub fn http_listen(&self) -> Result<Option<std::net::SocketAddr>, String> {
        let addr = self.http_listen.trim();
        if addr.is_empty() {
            return Ok(None);
        }
        addr.parse().map(Some).map_err(|e| {
            format!("--http-listen {addr}: {e} (an address like 0.0.0.0:8080, or empty for off)")
        })
    }

    /// The TLS files, when TLS is on.
    pub fn tls_files(&self) -> Option<TlsFiles> {
        Some(TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.tls_client_ca.clone(),
        })
    }

    /// Defaults for embedding and tests: loopback, a given database, everything else default.
    pub fn for_database(database_url: impl Into<String>) -> Self {
        let mut args = Cli::parse_from(["agent-registry"]).serve_args();
        args.listen = "127.0.0.1:0".parse().expect("valid address");
        args.metrics_listen = "127.0.0.1:0".parse().expect("valid address");
        args.http_listen = String::new();
        args.database_url = database_url.into();
        args
    }
}

/// A reader of the namespaces `values` names (`*`: all) under `name`, or `None` when empty;
/// a namespace that is not a DNS label is refused naming `flag`.
fn anonymous_reader(flag: &str, name: &str, values: &[String]) -> Result<Option<Grant>, String> {
    let names: Vec<&str> = values
        .iter()
        .map(|n| n.trim())
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return Ok(None);
    }
    let namespaces = if names.contains(&"*") {
        Namespaces::All
    } else {
        let mut set = std::collections::BTreeSet::new();
        for n in names {
            let ns = agent_registry_core::domain::normalize_namespace(flag, n)
                .map_err(|e| format!("{e} ({n:?})"))?;
            set.insert(ns);
        }
        Namespaces::Only(set)
    };
    Ok(Some(Grant {
        name: name.into(),
        role: Role::Reader,
        namespaces,
    }))
}
