//! Draws the heartbeat chart (SVG) from the generator's JSON results.

use clap::Parser;

#[derive(Parser)]
#[command(about = "Heartbeats/s and p99 against agents, from loadgen results")]
struct Cli {
    /// Files of JSON lines written by loadgen.
    #[arg(required = true)]
    results: Vec<std::path::PathBuf>,
    #[arg(long, default_value = "bench/heartbeat-scale.svg")]
    out: std::path::PathBuf,
}

fn main() {
    let cli = Cli::parse();
    let mut text = String::new();
    for f in &cli.results {
        text.push_str(&std::fs::read_to_string(f).unwrap_or_else(|e| {
            eprintln!("bench-chart: {}: {e}", f.display());
            std::process::exit(1)
        }));
        text.push('\n');
    }
    let data = agent_registry_bench::chart::series(&text);
    if let Err(e) = agent_registry_bench::chart::draw(&cli.out, &data) {
        eprintln!("bench-chart: {e}");
        std::process::exit(1);
    }
    eprintln!("bench-chart: wrote {}", cli.out.display());
}
