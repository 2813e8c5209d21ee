//! Test plumbing: a database per test on either backend, an in-process server, gRPC clients.
//!
//! Postgres comes from `DATABASE_URL`; when it is unset, a throwaway server is started from
//! local PostgreSQL binaries if they exist, else Postgres tests print `skipped: …` once and
//! pass (with `CI=true` they fail instead).

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use agent_registry::config::ServeArgs;
use agent_registry::proto::{
    self, admin_service_client::AdminServiceClient,
    discovery_service_client::DiscoveryServiceClient,
    registry_service_client::RegistryServiceClient,
};
use agent_registry::registry::Registry;
use agent_registry::storage;
use tokio::net::TcpListener;
use tonic::transport::Channel;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs `$name(Backend)` once per backend, as `sqlite::$name` and `postgres::$name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Postgres).await
                }
            )*
        }
    };
}

/// Like `on_both_backends!`, on a current-thread runtime, where a test may pause tokio's clock
/// (after its setup) and drive leases through virtual time instead of sleeping.
#[macro_export]
macro_rules! on_both_backends_current_thread {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::support::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::support::Backend::Postgres).await
                }
            )*
        }
    };
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Writes past the test harness's output capture, so a skip is visible in `cargo test`.
fn say_once(flag: &'static OnceLock<()>, line: &str) {
    flag.get_or_init(|| {
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    });
}

/// One database that belongs to one test; dropped (Postgres) or deleted (SQLite) afterwards.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<(String, String)>,
}

impl TestDb {
    /// `None` when the backend is not available here (the skip has been announced).
    pub async fn new(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("registry.db").display());
                Some(TestDb {
                    url,
                    backend,
                    _dir: Some(dir),
                    pg_name: None,
                })
            }
            Backend::Postgres => {
                let admin = postgres_admin_url()?;
                let name = format!("ar_test_{}", uuid::Uuid::new_v4().simple());
                let mut conn = connect_admin(&admin).await;
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                Some(TestDb {
                    url: with_database(&admin, &name),
                    backend,
                    _dir: None,
                    pg_name: Some((admin, name)),
                })
            }
        }
    }

    /// One integer a SQL query returns (e.g. a count).
    pub async fn query_i64(&self, sql: &str) -> i64 {
        Self::query_i64_at(&self.url, sql).await
    }

    /// One integer a SQL query returns, from the database at `url`.
    pub async fn query_i64_at(url: &str, sql: &str) -> i64 {
        if url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(url)
                .await
                .expect("connect sqlite");
            let v: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await.expect(sql);
            pool.close().await;
            v
        } else {
            let pool = sqlx::PgPool::connect(url).await.expect("connect postgres");
            let v: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await.expect(sql);
            pool.close().await;
            v
        }
    }

    /// Instance ids (with revisions) a SQL query over the public views returns.
    pub async fn query_ids(&self, sql: &str) -> Vec<(String, i64)> {
        match self.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.url)
                    .await
                    .expect("connect sqlite");
                let rows: Vec<(String, i64)> =
                    sqlx::query_as(sql).fetch_all(&pool).await.expect(sql);
                pool.close().await;
                rows
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.url)
                    .await
                    .expect("connect postgres");
                let sql = sql.replace("instance_id,", "instance_id::text,");
                let rows: Vec<(String, i64)> =
                    sqlx::query_as(&sql).fetch_all(&pool).await.expect("query");
                pool.close().await;
                rows
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.pg_name.take() else {
            return;
        };
        // Drop runs outside any runtime we may block: use a private one on its own thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = connect_admin(&admin).await;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .ok()
            })
        })
        .join();
    }
}

async fn connect_admin(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(url)
        .await
        .expect("connect to the Postgres admin database")
}

/// The same server URL with another database name.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    format!("{host_part}/{name}{query}")
}

/// `DATABASE_URL`, or a throwaway local server, or `None` (skip announced; panics in CI).
fn postgres_admin_url() -> Option<String> {
    static URL: OnceLock<Option<String>> = OnceLock::new();
    static SKIPPED: OnceLock<()> = OnceLock::new();
    let url = URL.get_or_init(|| {
        if let Ok(url) = std::env::var("DATABASE_URL")
            && (url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Some(url);
        }
        match throwaway_postgres() {
            Ok(url) => Some(url),
            Err(why) if in_ci() => panic!("CI=true but Postgres is unavailable: {why}"),
            Err(why) => {
                say_once(
                    &SKIPPED,
                    &format!("skipped: Postgres tests ({why}; set DATABASE_URL=postgres://…)"),
                );
                None
            }
        }
    });
    url.clone()
}

/// Finds `initdb`/`postgres` on PATH or in Debian's versioned directory.
pub fn postgres_bin_dir() -> Option<std::path::PathBuf> {
    // PATH may hold symlinks (e.g. /usr/local/bin/initdb): use the directory they point into,
    // which also has pg_isready.
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .find(|d| d.join("initdb").is_file() && d.join("postgres").is_file())
            .and_then(|d| std::fs::canonicalize(d.join("initdb")).ok())
            .and_then(|f| f.parent().map(|p| p.to_path_buf()))
    });
    on_path.or_else(|| {
        let mut dirs: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|d| d.join("initdb").is_file())
            .collect();
        dirs.sort();
        dirs.pop()
    })
}

/// The child shell that owns the throwaway server; kept for the life of the test process.
static OWNER: Mutex<Vec<Child>> = Mutex::new(Vec::new());

/// Starts a private Postgres in a temp dir. The server is owned by a shell that kills it and
/// removes the directory when our end of its stdin closes, i.e. when the test process exits.
fn throwaway_postgres() -> Result<String, String> {
    let bin =
        postgres_bin_dir().ok_or("DATABASE_URL is unset and no PostgreSQL binaries were found")?;
    // /proc/self belongs to the effective user.
    let root = std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata("/proc/self").map_err(|e| e.to_string())?,
    ) == 0;
    let dir = tempfile::Builder::new()
        .prefix("agent-registry-pg-")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        l.local_addr().map_err(|e| e.to_string())?.port()
    };
    // Postgres refuses to run as root: run it as the `postgres` user then.
    let as_owner = |program: &std::path::Path| {
        if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    };
    if root {
        let ok = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err("running as root and cannot hand a data directory to user postgres".into());
        }
    }
    let data = dir.join("data");
    let init = as_owner(&bin.join("initdb"))
        .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("initdb: {e}"))?;
    if !init.success() {
        return Err(format!("initdb failed ({init})"));
    }
    let script = format!(
        "{pg} -D {data} -p {port} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off \
         -c max_connections=500 >{dir}/log 2>&1 & pid=$!; read _; kill $pid; wait $pid; rm -rf {dir}",
        pg = bin.join("postgres").display(),
        data = data.display(),
        dir = dir.display(),
    );
    let mut cmd = as_owner(std::path::Path::new("sh"));
    let child = cmd
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting postgres: {e}"))?;
    OWNER.lock().unwrap().push(child);
    for _ in 0..300 {
        let ready = Command::new(bin.join("pg_isready"))
            .args([
                "-q",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-p",
                &port.to_string(),
            ])
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            return Ok(format!("postgres://postgres@127.0.0.1:{port}/postgres"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "throwaway postgres did not start; see {}/log",
        dir.display()
    ))
}

/// A server running in this process on its own port.
pub struct TestServer {
    /// The replica itself, for what no RPC shows.
    pub node: Arc<Registry>,
    /// `http://127.0.0.1:PORT`, for clients started by the test.
    pub url: String,
    pub registry: RegistryServiceClient<Channel>,
    pub discovery: DiscoveryServiceClient<Channel>,
    pub admin: AdminServiceClient<Channel>,
    pub channel: Channel,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub async fn start(db: &TestDb) -> TestServer {
        Self::start_with(db, |_| {}).await
    }

    /// A server (one replica) on `db` with its settings adjusted by `configure`.
    pub async fn start_with(db: &TestDb, configure: impl FnOnce(&mut ServeArgs)) -> TestServer {
        let mut args = ServeArgs::for_database(&db.url);
        configure(&mut args);
        args.check().expect("valid settings");
        let (options, _) = args.store().unwrap();
        let store = storage::open(&args.database_url, &options)
            .await
            .expect("open store");
        let registry = Arc::new(
            Registry::open(store.clone(), args.settings().unwrap())
                .await
                .expect("hydrate"),
        );
        let node = registry.clone();
        let listener = TcpListener::bind(args.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let stopped = async {
                let _ = rx.await;
            };
            agent_registry::server::serve(registry, &args, listener, stopped)
                .await
                .expect("server ran");
            store.close().await;
        });
        // Lazily: a TLS server refuses a plaintext handshake, and its tests bring their own.
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy();
        TestServer {
            node,
            url: format!("http://{addr}"),
            registry: RegistryServiceClient::new(channel.clone()),
            discovery: DiscoveryServiceClient::new(channel.clone()),
            admin: AdminServiceClient::new(channel.clone()),
            channel,
            stop: Some(tx),
            task,
        }
    }

    /// Stops the server and waits until it has released the store.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        drop((
            self.registry,
            self.discovery,
            self.admin,
            self.channel,
            self.node,
        ));
        (&mut self.task).await.expect("server task");
    }

    /// Opens a Heartbeat stream; returns the sender of requests and the stream of replies.
    pub async fn open_stream(
        &mut self,
    ) -> (
        tokio::sync::mpsc::Sender<proto::HeartbeatRequest>,
        tonic::Streaming<proto::HeartbeatResponse>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let replies = self
            .registry
            .heartbeat(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("open heartbeat stream")
            .into_inner();
        (tx, replies)
    }

    pub async fn register(&mut self, req: proto::RegisterRequest) -> proto::Instance {
        self.registry
            .register(req)
            .await
            .expect("register")
            .into_inner()
            .instance
            .expect("instance")
    }

    /// Every instance Discover returns for `req`, across all pages.
    pub async fn discover_all(&mut self, mut req: proto::DiscoverRequest) -> Vec<proto::Instance> {
        let mut out = Vec::new();
        loop {
            let page = self
                .discovery
                .discover(req.clone())
                .await
                .expect("discover")
                .into_inner();
            out.extend(page.instances);
            if page.next_page_token.is_empty() {
                return out;
            }
            req.page_token = page.next_page_token;
        }
    }
}

/// A Register request for `logical_id` in `namespace`, ready unless changed.
pub fn reg(namespace: &str, logical_id: &str) -> proto::RegisterRequest {
    proto::RegisterRequest {
        namespace: namespace.into(),
        logical_id: logical_id.into(),
        ready: true,
        ..Default::default()
    }
}

pub fn view(ns: &str, view: proto::DiscoverView) -> proto::DiscoverRequest {
    proto::DiscoverRequest {
        namespace: ns.into(),
        view: view as i32,
        ..Default::default()
    }
}

pub fn ids(instances: &[proto::Instance]) -> Vec<String> {
    let mut v: Vec<_> = instances.iter().map(|i| i.instance_id.clone()).collect();
    v.sort();
    v
}

/// Polls `cond` every 50 ms until it holds; fails after 15 s. (A guard, not a timing claim.)
pub async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A grpc.health.v1 status of `service` ("" for the overall entry), or UNKNOWN when the check
/// itself fails.
pub async fn health(channel: &Channel, service: &str) -> i32 {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let req = HealthCheckRequest {
        service: service.into(),
    };
    let mut client = HealthClient::new(channel.clone());
    match tokio::time::timeout(Duration::from_secs(5), client.check(req)).await {
        Ok(Ok(r)) => r.into_inner().status,
        _ => 0,
    }
}

/// A connection to a server at `host:port`, made now.
pub async fn connect(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect")
}

/// A connection with small HTTP/2 receive windows: a stream on it that is not read soon stops
/// the server sending, so what the server holds for it shows.
pub async fn small_window(addr: &str) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .unwrap()
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
