//! Command-line flags, each with an environment fallback; `--help` documents every one. The
//! checks that turn them into settings are in `settings.rs`.

mod settings;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "agent-registry",
    version,
    about = "A gRPC control plane where agents register, heartbeat and are discovered.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// With no subcommand, the server runs (`serve`).
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the registry server (the default command).
    Serve(ServeArgs),
    /// Operate a running registry: list, get, watch, drain, evict, epochs.
    Ctl(crate::ctl::CtlArgs),
    /// Register a pod's main container and follow its health (run as a Kubernetes sidecar).
    Sidecar(crate::sidecar::SidecarArgs),
    /// Make a bearer token: prints the secret (give it to the caller) and the entry for
    /// --auth-tokens-file (which stores only its SHA-256).
    Token(TokenArgs),
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The token's name: shown in logs and errors, and the owner of what it registers.
    #[arg(long)]
    pub name: String,
    #[arg(long, value_enum)]
    pub role: RoleArg,
    /// A namespace it may use (repeatable); `*` for all.
    #[arg(long = "namespace", required = true)]
    pub namespaces: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    Agent,
    Reader,
    Admin,
}

impl RoleArg {
    /// The role this argument names.
    pub fn role(self) -> crate::security::Role {
        use crate::security::Role;
        match self {
            RoleArg::Agent => Role::Agent,
            RoleArg::Reader => Role::Reader,
            RoleArg::Admin => Role::Admin,
        }
    }
}

impl Cli {
    /// The serve arguments, whether `serve` was spelled out or not (the defaults for other
    /// subcommands, which do not use them).
    pub fn serve_args(self) -> ServeArgs {
        match self.command {
            Some(Command::Serve(args)) => args,
            _ => self.serve,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address the gRPC server listens on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:50051")]
    pub listen: SocketAddr,

    /// The store: `postgres://user@host/db` (production, shared by replicas) or
    /// `sqlite://FILE` (embedded, one replica; the file is created if missing).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://agent-registry.db",
        hide_env_values = true
    )]
    pub database_url: String,

    /// Maximum connections in the store's connection pool.
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,

    /// The longest any store call may take (a statement, an idle transaction, a wait for a
    /// pooled connection): a call that takes longer is abandoned and counts as the store being
    /// unreachable. Keep it well under the shortest lease.
    #[arg(long, env = "STORE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub store_timeout: Duration,

    /// TCP keepalive idle time Postgres applies to this replica's connections, so the sessions
    /// (and locks) of a replica that vanished are reaped.
    #[arg(long, env = "DB_TCP_KEEPALIVE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub db_tcp_keepalive: Duration,

    /// Store failures shorter than this are blips: expiry pauses while they last, but no grace
    /// follows. Longer ones are outages: every lease is renewed when the store returns.
    #[arg(long, env = "STORE_OUTAGE_MIN", default_value = "3s", value_parser = humantime::parse_duration)]
    pub store_outage_min: Duration,

    /// Share of the shortest lease held that acknowledged heartbeats may go without reaching
    /// the store; beyond it this replica ends its heartbeat streams with UNAVAILABLE and reports
    /// not ready, so agents move to a replica that can persist them (never less than two
    /// --flush-interval).
    #[arg(long, env = "MAX_UNPERSISTED_FRACTION", default_value_t = 1.0 / 3.0)]
    pub max_unpersisted_fraction: f64,

    /// Lazy flush: a heartbeat is written to the store only once the beat stored for its
    /// instance is this share of the lease old (0 writes every beat at the next flush). At
    /// most 1/3, so a beating agent's stored beat stays within its lease in the SQL views.
    #[arg(long, env = "LAZY_FLUSH_FRACTION", default_value_t = 1.0 / 3.0)]
    pub lazy_flush_fraction: f64,

    /// Lease granted when Register asks for none.
    #[arg(long, env = "DEFAULT_LEASE_TTL", default_value = "15s", value_parser = humantime::parse_duration)]
    pub default_lease_ttl: Duration,

    /// Shortest lease granted; shorter requests are raised to it.
    #[arg(long, env = "MIN_LEASE_TTL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub min_lease_ttl: Duration,

    /// Longest lease granted; longer requests are lowered to it.
    #[arg(long, env = "MAX_LEASE_TTL", default_value = "1h", value_parser = humantime::parse_duration)]
    pub max_lease_ttl: Duration,

    /// How often leases renewed by heartbeats are written to the store (one statement each time).
    #[arg(long, env = "FLUSH_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub flush_interval: Duration,

    /// How often leases are checked for expiry.
    #[arg(long, env = "SWEEP_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub sweep_interval: Duration,

    /// Self-preservation: a sweep that would expire more than this share of a namespace's
    /// leases at once expires none of them (0.5 = 50 %).
    #[arg(long, env = "EXPIRY_GUARD", default_value_t = 0.5)]
    pub expiry_guard: f64,

    /// A sweep expiring at most this many instances of a namespace is never held back by the
    /// guard (small namespaces must still expire their dead).
    #[arg(long, env = "EXPIRY_GUARD_FLOOR", default_value_t = 2)]
    pub expiry_guard_floor: usize,

    /// Expiries within this window count together against the guard, so a loss spread over
    /// several sweeps cannot slip past it.
    #[arg(long, env = "EXPIRY_GUARD_WINDOW", default_value = "30s", value_parser = humantime::parse_duration)]
    pub expiry_guard_window: Duration,

    /// Heartbeats per second this replica takes before it advises agents to beat less often.
    #[arg(long, env = "MAX_HEARTBEAT_RATE", default_value_t = 200_000)]
    pub max_heartbeat_rate: u64,

    /// How often the store is probed for grpc.health.v1 (NOT_SERVING while it is unreachable).
    #[arg(long, env = "HEALTH_CHECK_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub health_check_interval: Duration,

    /// How long shutdown waits for in-flight calls before closing them.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// Redis, for change notifications between replicas (`redis://host:6379`). Optional:
    /// without it replicas converge by polling the change log every --change-poll-interval.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Prefix of the Redis channel (and any key) this registry uses, so several registries can
    /// share one Redis.
    #[arg(long, env = "REDIS_PREFIX", default_value = "agent-registry:")]
    pub redis_prefix: String,

    /// How often each replica reads the change log for other replicas' changes (Redis, when
    /// set, makes that near-immediate; this is the fallback).
    #[arg(long, env = "CHANGE_POLL_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub change_poll_interval: Duration,

    /// How long dead instances and the change log are kept; a Watch cannot resume from a
    /// revision older than that.
    #[arg(long, env = "DEAD_RETENTION", default_value = "1h", value_parser = humantime::parse_duration)]
    pub dead_retention: Duration,

    /// How often a Watch stream gets a progress-only bookmark.
    #[arg(long, env = "WATCH_BOOKMARK_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub watch_bookmark_interval: Duration,

    /// How many changes a watcher may fall behind before its stream is closed with
    /// RESOURCE_EXHAUSTED (it resumes from its last revision).
    #[arg(long, env = "WATCH_BUFFER", default_value_t = 4096)]
    pub watch_buffer: usize,

    /// How many recent changes are kept in memory for resuming watchers (older ones are read
    /// from the change log).
    #[arg(long, env = "WATCH_HISTORY", default_value_t = 16384)]
    pub watch_history: usize,

    /// How long a Watch message may wait for the client to read it; a watcher that reads
    /// nothing for that long is cut off with RESOURCE_EXHAUSTED naming its resume revision,
    /// and what it held is released.
    #[arg(long, env = "WATCH_STALL_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub watch_stall_timeout: Duration,

    /// Watch streams one connection may hold open at once.
    #[arg(long, env = "MAX_WATCHES_PER_CONNECTION", default_value_t = 32)]
    pub max_watches_per_connection: usize,

    /// Address Prometheus metrics are served on, at `/metrics`.
    #[arg(long, env = "METRICS_LISTEN_ADDR", default_value = "0.0.0.0:9090")]
    pub metrics_listen: SocketAddr,

    /// Address the HTTP/JSON API and the web console are served on (same TLS, tokens and
    /// limits as gRPC); an empty value turns them off.
    #[arg(long, env = "HTTP_LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub http_listen: String,

    /// The instance label whose value (1-65536) weighs an endpoint in the xDS load
    /// assignments; empty: every endpoint weighs 1.
    #[arg(long, env = "XDS_WEIGHT_LABEL", default_value = crate::xds::DEFAULT_WEIGHT_LABEL)]
    pub xds_weight_label: String,

    /// With --auth-tokens-file: namespaces (comma-separated, `*` for all) whose endpoints an
    /// xDS client may read without a token, as a reader; stock gRPC clients send none to their
    /// control plane. Empty (the default): xDS streams need a token like every call.
    #[arg(long, env = "XDS_ANONYMOUS_NAMESPACES", value_delimiter = ',')]
    pub xds_anonymous_namespaces: Vec<String>,

    /// Largest agent card accepted (an A2A AgentCard or an MCP server.json), in bytes; a card
    /// travels in one message, so --max-message-size bounds it too.
    #[arg(long, env = "MAX_CARD_SIZE", default_value_t = 64 << 10)]
    pub max_card_size: usize,

    /// Namespaces (comma-separated) whose agents' cards any client may read at their
    /// well-known path (`/a2a/<ns>/<logical_id>/.well-known/agent-card.json`) without a token.
    /// Empty (the default): the path takes the tokens Discover does.
    #[arg(long, env = "PUBLIC_CARD_NAMESPACES", value_delimiter = ',')]
    pub public_card_namespaces: Vec<String>,

    /// Log format; the level comes from RUST_LOG (default `info`).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// PEM certificate chain: with --tls-key, the server speaks TLS only.
    #[arg(long, env = "TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA certificate(s): every client must present a certificate they signed (mutual TLS).
    #[arg(long, env = "TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// TOML file of bearer tokens (name, role, namespaces, SHA-256 of the secret). Without it
    /// the server is open to anyone who can reach it.
    #[arg(long, env = "AUTH_TOKENS_FILE")]
    pub auth_tokens_file: Option<PathBuf>,

    /// How often the TLS files and the tokens file are checked for changes (SIGHUP reloads at
    /// once).
    #[arg(long, env = "RELOAD_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub reload_interval: Duration,

    /// Largest request message, in bytes.
    #[arg(long, env = "MAX_MESSAGE_SIZE", default_value_t = 1 << 20)]
    pub max_message_size: usize,

    /// Largest request metadata (all headers of a call together), in bytes.
    #[arg(long, env = "MAX_METADATA_SIZE", default_value_t = 8 << 10)]
    pub max_metadata_size: usize,

    /// Calls in flight on one connection.
    #[arg(long, env = "MAX_STREAMS_PER_CONNECTION", default_value_t = 1024)]
    pub max_streams_per_connection: usize,

    /// Heartbeat and Watch streams this replica holds open at once.
    #[arg(long, env = "MAX_OPEN_STREAMS", default_value_t = 200_000)]
    pub max_open_streams: usize,

    /// Requests (calls and stream opens) per second per caller: per token, or per client IP
    /// address without tokens. 0 = no limit.
    #[arg(long, env = "MAX_REQUESTS_PER_SECOND", default_value_t = 0)]
    pub max_requests_per_second: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(args: &[&str]) -> String {
        let mut all = vec!["agent-registry"];
        all.extend_from_slice(args);
        Cli::parse_from(all)
            .serve_args()
            .check()
            .expect_err("refused")
    }

    #[test]
    fn settings_that_cannot_work_are_refused_naming_the_flag() {
        assert!(
            Cli::parse_from(["agent-registry"])
                .serve_args()
                .check()
                .is_ok()
        );
        for (args, flag) in [
            (
                &["--health-check-interval", "0s"][..],
                "--health-check-interval",
            ),
            (&["--reload-interval", "0s"], "--reload-interval"),
            (&["--store-timeout", "0s"], "--store-timeout"),
            (&["--store-outage-min", "0s"], "--store-outage-min"),
            (&["--flush-interval", "0s"], "--flush-interval"),
            (&["--sweep-interval", "2s"], "--sweep-interval"),
            (&["--change-poll-interval", "0s"], "--change-poll-interval"),
            (&["--watch-stall-timeout", "0s"], "--watch-stall-timeout"),
            (&["--dead-retention", "5s"], "--dead-retention"),
            (
                &["--max-unpersisted-fraction", "0"],
                "--max-unpersisted-fraction",
            ),
            (&["--lazy-flush-fraction", "0.5"], "--lazy-flush-fraction"),
            (&["--lazy-flush-fraction=-0.1"], "--lazy-flush-fraction"),
            (
                &["--max-watches-per-connection", "0"],
                "--max-watches-per-connection",
            ),
            (&["--db-tcp-keepalive", "0s"], "--db-tcp-keepalive"),
            (
                &["--xds-anonymous-namespaces", "prod,Not_Ok"],
                "--xds-anonymous-namespaces",
            ),
        ] {
            let why = refused(args);
            assert!(why.contains(flag), "{args:?}: {why}");
        }
    }

    #[test]
    fn the_http_api_is_on_by_default_and_off_when_its_address_is_empty() {
        let args = |extra: &[&str]| {
            let mut all = vec!["agent-registry"];
            all.extend_from_slice(extra);
            Cli::parse_from(all).serve_args().http_listen()
        };
        assert_eq!(args(&[]), Ok(Some("0.0.0.0:8080".parse().unwrap())));
        assert_eq!(args(&["--http-listen", ""]), Ok(None));
        assert_eq!(args(&["--http-listen", " "]), Ok(None));
        let why = args(&["--http-listen", "nowhere"]).unwrap_err();
        assert!(why.contains("--http-listen"), "{why}");
    }
}
