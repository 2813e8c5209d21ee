//! agent-registry's load generator: simulated agents, the comparison servers they are pointed
//! at, and the chart of the results. Every scenario prints one JSON object (see BENCHMARKS.md).

pub mod agents;
pub mod cards;
pub mod catalog;
pub mod catalog_pg;
pub mod chart;
pub mod expiry;
pub mod fanout;
pub mod heartbeat;
pub mod ops;
pub mod peer;
pub mod proc;
pub mod startup;
pub mod stats;

/// Prints a scenario's result as one line of JSON on stdout, the only thing a scenario prints
/// there (progress goes to stderr), so `run.sh` can collect results with a redirect.
pub fn emit(value: &serde_json::Value) {
    println!("{value}");
}

/// Progress for the person watching, on stderr.
#[macro_export]
macro_rules! progress {
    ($($t:tt)*) => { eprintln!("[loadgen] {}", format_args!($($t)*)) };
}
