//! The integration suite: one test binary; the conformance tests run on SQLite and on Postgres.

mod support;

mod batch;
mod catalog;
mod client;
mod ctl;
mod discover;
mod e2e;
mod failover;
mod faults;
mod heartbeat;
mod http_api;
mod http_sse;
mod layering;
mod lazy_flush;
mod leases;
mod lifecycle;
mod limits;
mod metrics;
mod partial;
mod replicas;
mod restart;
mod revisions;
mod security;
mod sidecar;
mod tls;
mod validation;
mod views;
mod watch;
mod xds;
