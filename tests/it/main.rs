//! The integration suite: one test binary; the conformance tests run on SQLite and on Postgres.

mod support;

mod batch;
mod discover;
mod e2e;
mod fault;
mod heartbeat;
mod leases;
mod lifecycle;
mod node;
mod restart;
mod revisions;
mod validation;
mod views;
