//! The load generator: runs one scenario against a running target and prints its result as
//! one JSON line (see BENCHMARKS.md and bench/run.sh).

use agent_registry_bench::{catalog, emit, expiry, fanout, heartbeat, ops, startup};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "agent-registry's load generator")]
struct Cli {
    /// A label copied into the result (e.g. "registry-postgres"), for tables and charts.
    #[arg(long, global = true)]
    label: Option<String>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// N agents register, open a stream each and beat at a set rate.
    Heartbeat(heartbeat::HeartbeatArgs),
    /// Register throughput (closed loop) or latency at a set rate (open loop).
    Register(ops::RegisterArgs),
    /// Discover latency with many instances registered.
    Discover(ops::DiscoverArgs),
    /// Register on one replica, watch on another: time until the change is seen.
    Fanout(fanout::FanoutArgs),
    /// Time from starting the binary to serving, with N instances stored.
    Startup(startup::StartupArgs),
    /// Register with and without cards, memory per card, SearchAgents over gRPC and HTTP,
    /// and Postgres full-text search over the same cards.
    Search(catalog::SearchArgs),
    /// A mass expiry on Postgres: chunked set-based statements against one UPDATE per row.
    Expiry(expiry::ExpiryArgs),
}

fn main() {
    let cli = Cli::parse();
    // Agents are tasks on all cores; the generator shares the machine with the target.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(async {
        match cli.scenario {
            Scenario::Heartbeat(a) => heartbeat::run(a).await,
            Scenario::Register(a) => ops::register(a).await,
            Scenario::Discover(a) => ops::discover(a).await,
            Scenario::Fanout(a) => fanout::run(a).await,
            Scenario::Startup(a) => startup::run(a).await,
            Scenario::Expiry(a) => expiry::run(a).await,
            Scenario::Search(a) => catalog::run(a).await,
        }
    });
    match result {
        Ok(mut v) => {
            if let Some(l) = cli.label {
                v["label"] = l.into();
            }
            emit(&v);
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(1);
        }
    }
}
