//! The `agent-registry` binary: parses flags, sets up logging, serves until SIGTERM/SIGINT.

use std::io::IsTerminal;
use std::process::ExitCode;

use agent_registry::config::{Cli, Command, LogFormat};
use agent_registry::server;
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// See Cargo.toml: measured faster than the system allocator for what the registry holds.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Ctl(args)) = cli.command {
        let (stdout, stdin) = (std::io::stdout(), std::io::stdin());
        return match agent_registry::ctl::run(args, &mut stdout.lock(), &mut stdin.lock()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::Token(args)) = &cli.command {
        let (secret, entry) = agent_registry::security::tokens::new_token(
            &args.name,
            args.role.role(),
            &args.namespaces,
        );
        let checked = agent_registry::security::tokens::Tokens::parse(
            std::path::Path::new("(new entry)"),
            &entry,
        );
        if let Err(e) = checked {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
        // The secret on stderr, so `>> tokens.toml` appends only the entry.
        eprintln!("secret (shown once; the file keeps only its SHA-256): {secret}");
        println!("{entry}");
        return ExitCode::SUCCESS;
    }
    if let Some(Command::Sidecar(args)) = cli.command {
        init_logging(LogFormat::Text);
        return match agent_registry::sidecar::run(args, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    let args = cli.serve_args();
    init_logging(args.log_format);
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(addr) => tracing::info!("listening on {addr}"),
        Err(e) => tracing::warn!("listening (address unknown: {e})"),
    }
    match server::run(args, listener, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
