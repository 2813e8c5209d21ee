//! The comparison servers the generator drives with the registry's own contract:
//! `echo` (acknowledges every beat and does nothing else: the ceiling of a tonic
//! bidirectional stream on this machine), `pg-update` (one `UPDATE … SET last_heartbeat =
//! now()` per beat: the table teams write by hand) and `redis-set` (one `SET … EX` per beat).
//! Each answers only what the generator needs; none of them is a registry.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use agent_registry::proto::{
    DeregisterRequest, DeregisterResponse, HeartbeatRequest, HeartbeatResponse, Instance,
    RegisterRequest, RegisterResponse,
    registry_service_server::{RegistryService, RegistryServiceServer},
};
use futures_util::Stream;
use sqlx::postgres::{PgPool, PgPoolOptions};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Echo,
    PgUpdate,
    RedisSet,
}

#[derive(Debug, Clone, clap::Args)]
pub struct PeerArgs {
    #[arg(long, value_enum)]
    pub kind: Kind,
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// For pg-update: the database its table is made in.
    #[arg(long)]
    pub database_url: Option<String>,
    /// For redis-set.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Pool size, as the registry's `--db-max-connections` default.
    #[arg(long, default_value_t = 16)]
    pub db_max_connections: u32,
}

enum Backend {
    Echo,
    Pg(PgPool),
    Redis(redis::aio::MultiplexedConnection, String),
}

impl Backend {
    async fn register(&self, id: &str, r: &RegisterRequest, ttl: u64) -> Result<(), String> {
        match self {
            Backend::Echo => Ok(()),
            Backend::Pg(pool) => sqlx::query(
                "INSERT INTO bench_agent (id, namespace, logical_id, endpoint, last_heartbeat) \
                 VALUES ($1, $2, $3, $4, now())",
            )
            .bind(id)
            .bind(&r.namespace)
            .bind(&r.logical_id)
            .bind(&r.endpoint)
            .execute(pool)
            .await
            .map(drop)
            .map_err(|e| e.to_string()),
            Backend::Redis(conn, prefix) => redis::cmd("SET")
                .arg(format!("{prefix}{id}"))
                .arg(&r.endpoint)
                .arg("EX")
                .arg(ttl)
                .query_async::<()>(&mut conn.clone())
                .await
                .map_err(|e| e.to_string()),
        }
    }

    async fn beat(&self, id: &str, ttl: u64) -> Result<(), String> {
        match self {
            Backend::Echo => Ok(()),
            Backend::Pg(pool) => {
                sqlx::query("UPDATE bench_agent SET last_heartbeat = now() WHERE id = $1")
                    .bind(id)
                    .execute(pool)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
            Backend::Redis(conn, prefix) => redis::cmd("SET")
                .arg(format!("{prefix}{id}"))
                .arg("alive")
                .arg("EX")
                .arg(ttl)
                .query_async::<()>(&mut conn.clone())
                .await
                .map_err(|e| e.to_string()),
        }
    }
}

struct Peer {
    backend: Arc<Backend>,
}

const TTL_SECONDS: u64 = 120;

type BeatStream = Pin<Box<dyn Stream<Item = Result<HeartbeatResponse, Status>> + Send>>;

#[tonic::async_trait]
impl RegistryService for Peer {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let r = request.into_inner();
        let id = uuid::Uuid::new_v4().to_string();
        self.backend
            .register(&id, &r, TTL_SECONDS)
            .await
            .map_err(Status::unavailable)?;
        Ok(Response::new(RegisterResponse {
            instance: Some(Instance {
                instance_id: id,
                namespace: r.namespace,
                logical_id: r.logical_id,
                ..Default::default()
            }),
            heartbeat_interval: None,
        }))
    }

    type HeartbeatStream = BeatStream;

    async fn heartbeat(
        &self,
        request: Request<Streaming<HeartbeatRequest>>,
    ) -> Result<Response<BeatStream>, Status> {
        let mut beats = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        let backend = self.backend.clone();
        tokio::spawn(async move {
            while let Ok(Some(b)) = beats.message().await {
                let ack = match backend.beat(&b.instance_id, TTL_SECONDS).await {
                    Ok(()) => Ok(HeartbeatResponse {
                        sequence: b.sequence,
                        ..Default::default()
                    }),
                    Err(e) => Err(Status::unavailable(e)),
                };
                if tx.send(ack).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn deregister(
        &self,
        _request: Request<DeregisterRequest>,
    ) -> Result<Response<DeregisterResponse>, Status> {
        Ok(Response::new(DeregisterResponse::default()))
    }
}

/// Serves until the process is stopped; prints `listening on ADDR` first.
pub async fn serve(a: PeerArgs) -> Result<(), String> {
    let backend = match a.kind {
        Kind::Echo => Backend::Echo,
        Kind::PgUpdate => {
            let url = a
                .database_url
                .as_deref()
                .ok_or("pg-update needs --database-url")?;
            // The registry's pool settings: the same size and acquire timeout.
            let pool = PgPoolOptions::new()
                .max_connections(a.db_max_connections)
                .acquire_timeout(Duration::from_secs(5))
                .connect(url)
                .await
                .map_err(|e| format!("connect {url}: {e}"))?;
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS bench_agent (id text PRIMARY KEY, namespace text, \
                 logical_id text, endpoint text, last_heartbeat timestamptz NOT NULL)",
            )
            .execute(&pool)
            .await
            .map_err(|e| e.to_string())?;
            Backend::Pg(pool)
        }
        Kind::RedisSet => {
            let client = redis::Client::open(a.redis_url.as_str()).map_err(|e| e.to_string())?;
            let conn = client
                .get_multiplexed_async_connection()
                .await
                .map_err(|e| format!("connect {}: {e}", a.redis_url))?;
            let prefix = format!("bench:{}:", &uuid::Uuid::new_v4().simple().to_string()[..8]);
            Backend::Redis(conn, prefix)
        }
    };
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .map_err(|e| format!("bind {}: {e}", a.listen))?;
    println!(
        "listening on {}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    // A bare tonic server with its default HTTP/2 settings; the generated service brings the
    // registry's small codec buffers, so memory compares like with like.
    tonic::transport::Server::builder()
        .add_service(RegistryServiceServer::new(Peer {
            backend: Arc::new(backend),
        }))
        .serve_with_incoming(TcpListenerStream::new(listener))
        .await
        .map_err(|e| e.to_string())
}
