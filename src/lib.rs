//! agent-registry: a gRPC control plane where agents register, heartbeat and are discovered.
//!
//! This crate holds the front ends (gRPC in `api`, HTTP/JSON in `web`, xDS in `xds`), access
//! control (`security`), configuration, assembly of a replica (`server`), and the `ctl` and
//! `sidecar` commands. What they call lives in `agent-registry-core` (no transport); the Rust
//! client in `agent-registry-client`. See ARCHITECTURE.md for the map; `SPEC §…` references in
//! comments name sections of the product specification, summarised in docs/SPEC.md.

pub mod api;
pub mod config;
pub mod ctl;
pub mod proto;
pub mod security;
pub mod server;
pub mod sidecar;
pub mod web;
pub mod xds;
