//! agent-registry: a gRPC control plane where agents register, heartbeat and are discovered.
//!
//! See ARCHITECTURE.md for the bird's-eye view, the layers and their order, and the code map;
//! `SPEC §…` references in comments name sections of the product specification, summarised in
//! docs/SPEC.md.

pub mod api;
pub mod client;
pub mod common;
pub mod config;
pub mod ctl;
pub mod domain;
pub mod events;
pub mod index;
pub mod liveness;
pub mod metrics;
pub mod proto;
pub mod registry;
pub mod security;
pub mod server;
pub mod sidecar;
pub mod storage;
pub mod web;
pub mod xds;
