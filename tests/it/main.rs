//! The integration suite: one test binary; the conformance tests run on SQLite and on Postgres.

mod support;

mod discover;
mod e2e;
mod heartbeat;
mod lifecycle;
mod restart;
mod revisions;
mod validation;
mod views;
