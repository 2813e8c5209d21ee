//! agent-registry's core: plain domain types and rules, the store (the only SQL), the in-memory
//! index Discover answers from, leases and their flusher and sweeper, the change events, and the
//! use cases every front end calls — with no transport. The gRPC, HTTP and xDS front ends are in
//! the `agent-registry` crate above it.
//!
//! See ARCHITECTURE.md for the map: the crates, each module's invariant, and traces through them.

pub mod common;
pub mod domain;
pub mod events;
pub mod index;
pub mod liveness;
pub mod metrics;
pub mod registry;
pub mod storage;
