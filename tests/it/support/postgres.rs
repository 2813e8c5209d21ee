//! Postgres for the tests: `DATABASE_URL`, or else one throwaway server for the whole run started
//! from local binaries; and [`PgServer`], a server a test owns and may crash and start again.
//! Both are the same bootstrap (initdb, a postmaster owned by a shell that stops it when the
//! test process exits). Without binaries, tests print `skipped: …` once (with `CI=true` they
//! fail).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::{in_ci, say_once};

pub(super) async fn connect_admin(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(url)
        .await
        .expect("connect to the Postgres admin database")
}

/// The same server URL with another database name.
pub(super) fn with_database(url: &str, name: &str) -> String {
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
pub(super) fn postgres_admin_url() -> Option<String> {
    static URL: OnceLock<Option<String>> = OnceLock::new();
    static SKIPPED: OnceLock<()> = OnceLock::new();
    let url = URL.get_or_init(|| {
        if let Ok(url) = std::env::var("DATABASE_URL")
            && (url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Some(url);
        }
        match PgServer::try_start(Lifetime::Run).map(|s| s.keep_for_the_run()) {
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

/// How long a server's files live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lifetime {
    /// Until the test process exits (the suite's shared server): the owner shell removes them.
    Run,
    /// Until the [`PgServer`] is dropped (a test's own, restartable).
    Test,
}

/// The suite's shared server, kept (never dropped) for the life of the test process.
static SHARED: Mutex<Vec<PgServer>> = Mutex::new(Vec::new());

fn unavailable(why: &str) -> Option<PgServer> {
    static SKIPPED: OnceLock<()> = OnceLock::new();
    if in_ci() {
        panic!("CI=true but a Postgres of the test's own cannot be started: {why}");
    }
    say_once(
        &SKIPPED,
        &format!("skipped: Postgres restart tests ({why}; install the PostgreSQL server binaries)"),
    );
    None
}

pub struct PgServer {
    bin: PathBuf,
    /// Holds the data directory, the socket and the log; removed when the server is dropped.
    dir: tempfile::TempDir,
    port: u16,
    lifetime: Lifetime,
    /// Postgres refuses to run as root: then every command runs as user `postgres`.
    as_postgres: bool,
    /// The shell that owns the postmaster; closing its stdin stops the server, so a test
    /// process that dies leaves no Postgres behind.
    owner: Option<Child>,
}

impl PgServer {
    /// A fresh cluster of a test's own, started; `None` when it cannot be had here (the skip
    /// is announced).
    pub fn start() -> Option<PgServer> {
        match Self::try_start(Lifetime::Test) {
            Ok(server) => Some(server),
            Err(why) => unavailable(&why),
        }
    }

    /// Kept until the process exits; returns its URL.
    fn keep_for_the_run(self) -> String {
        let url = self.url();
        SHARED.lock().unwrap_or_else(|p| p.into_inner()).push(self);
        url
    }

    fn try_start(lifetime: Lifetime) -> Result<PgServer, String> {
        let bin = postgres_bin_dir()
            .ok_or("DATABASE_URL is unset and no PostgreSQL binaries were found")?;
        // /proc/self belongs to the effective user.
        let root = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false);
        let dir = tempfile::Builder::new()
            .prefix("agent-registry-own-pg-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        if root {
            let handed = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            if !handed {
                return Err("running as root and cannot hand a directory to postgres".into());
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| e.to_string())?;
        let mut server = PgServer {
            bin,
            dir,
            port,
            lifetime,
            as_postgres: root,
            owner: None,
        };
        let init = server
            .command(&server.bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(server.data())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        match init {
            Ok(s) if s.success() => {}
            other => return Err(format!("initdb failed: {other:?}")),
        }
        server.resume();
        Ok(server)
    }

    /// The `postgres` database of this server.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &Path) -> Command {
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    /// Starts the server (again) on the same port and data directory and waits until it
    /// accepts connections; after a crash that includes its WAL recovery.
    pub fn resume(&mut self) {
        assert!(self.owner.is_none(), "Postgres is already running");
        // fsync=off: the tests crash the server process, never the machine, so whatever a
        // commit wrote is in the page cache and survives; it only spares the disk.
        // The shared server carries every test's databases; its files go with the process.
        let (connections, cleanup) = match self.lifetime {
            Lifetime::Run => (500, format!("; rm -rf {}", self.dir.path().display())),
            Lifetime::Test => (200, String::new()),
        };
        let script = format!(
            "{pg} -D {data} -p {port} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c max_connections={connections} >>{dir}/log 2>&1 & pid=$!; read _; \
             kill -QUIT $pid 2>/dev/null; wait $pid{cleanup}",
            pg = self.bin.join("postgres").display(),
            data = self.data().display(),
            port = self.port,
            dir = self.dir.path().display(),
        );
        let owner = self
            .command(Path::new("sh"))
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start postgres");
        self.owner = Some(owner);
        for _ in 0..600 {
            if self.ready() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "postgres did not accept connections on port {}; see {}/log",
            self.port,
            self.dir.path().display()
        );
    }

    fn ready(&self) -> bool {
        Command::new(self.bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-U", "postgres"])
            .args(["-p", &self.port.to_string()])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Crashes the server: an immediate shutdown kills every backend without a checkpoint, so
    /// the next start recovers from the WAL as after a crash. Returns once it is gone.
    pub fn stop(&mut self) {
        let Some(mut owner) = self.owner.take() else {
            return;
        };
        let stopped = self
            .command(&self.bin.join("pg_ctl"))
            .args(["-m", "immediate", "-w", "-D"])
            .arg(self.data())
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        // Whatever pg_ctl managed, closing stdin makes the owner shell end the postmaster.
        drop(owner.stdin.take());
        let _ = owner.wait();
        assert!(
            stopped,
            "pg_ctl stop failed; see {}/log",
            self.dir.path().display()
        );
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(mut owner) = self.owner.take() {
            drop(owner.stdin.take());
            let _ = owner.wait();
        }
    }
}
