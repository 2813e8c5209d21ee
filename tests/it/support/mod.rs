//! Test plumbing: a database per test on either backend (`db`), Postgres itself — from
//! `DATABASE_URL`, or a server of the suite's or a test's own (`postgres`) —, Redis likewise
//! (`redis`), an in-process server (`server`), the binary as a process (`binary`), a registry
//! without gRPC on the paused clock (`node`), the proxy that injects network faults (`proxy`),
//! and gRPC and HTTP helpers (`grpc`, `http`).
//!
//! Postgres comes from `DATABASE_URL`; when it is unset, a throwaway server is started from
//! local PostgreSQL binaries if they exist, else Postgres tests print `skipped: …` once and
//! pass (with `CI=true` they fail instead).

pub mod binary;
pub mod cards;
mod db;
mod grpc;
mod http;
pub mod node;
mod postgres;
pub mod proxy;
pub mod redis;
mod server;

use std::io::Write;
use std::sync::OnceLock;
use std::time::Duration;

pub use db::TestDb;
pub use grpc::*;
pub use http::{Http, SseEvent};
pub use postgres::PgServer;
pub use server::TestServer;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs `$name(Backend)` once per backend, as `sqlite::$name` and `postgres::$name`, on a
/// two-thread runtime; with `paused:` first, on a current-thread runtime, where a test may
/// pause tokio's clock (after its setup) and drive leases through virtual time.
#[macro_export]
macro_rules! on_both_backends {
    (paused: $($name:ident),* $(,)?) => {
        $crate::on_both_backends!(@each tokio::test; $($name),*);
    };
    (@each $runtime:meta; $($name:ident),*) => {
        mod sqlite {
            $(
                #[$runtime]
                async fn $name() {
                    super::$name($crate::support::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[$runtime]
                async fn $name() {
                    super::$name($crate::support::Backend::Postgres).await
                }
            )*
        }
    };
    ($($name:ident),* $(,)?) => {
        $crate::on_both_backends!(
            @each tokio::test(flavor = "multi_thread", worker_threads = 2); $($name),*
        );
    };
}

/// With `CI=true`, a test whose service is missing fails instead of being skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Writes past the test harness's output capture, so a skip is visible in `cargo test`.
fn say_once(flag: &'static OnceLock<()>, line: &str) {
    flag.get_or_init(|| {
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    });
}

/// Polls `cond` every 50 ms until it holds; fails after 15 s. (A guard, not a timing claim.)
pub async fn eventually<F, Fut>(what: &str, cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_within(what, Duration::from_secs(15), cond).await
}

/// `eventually` with a bound of the caller's: for preconditions that take long on a loaded
/// machine (thousands of streams opening while the rest of the suite runs).
pub async fn eventually_within<F, Fut>(what: &str, within: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A process's resident memory, KiB (0 if it cannot be read).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
