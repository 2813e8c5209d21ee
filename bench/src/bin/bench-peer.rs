//! A comparison server for the load generator: echo, pg-update or redis-set.

use agent_registry_bench::peer::{PeerArgs, serve};
use clap::Parser;

#[derive(Parser)]
#[command(about = "A comparison server speaking the registry's contract")]
struct Cli {
    #[command(flatten)]
    peer: PeerArgs,
}

#[tokio::main]
async fn main() {
    if let Err(e) = serve(Cli::parse().peer).await {
        eprintln!("bench-peer: {e}");
        std::process::exit(1);
    }
}
