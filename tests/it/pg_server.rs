//! A Postgres server owned by one test, which it may crash and start again on the same port and
//! data directory; without PostgreSQL binaries such tests print `skipped: …` once and pass (with
//! `CI=true` they fail).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::support::{in_ci, postgres_bin_dir};

static SKIPPED: OnceLock<()> = OnceLock::new();

fn unavailable(why: &str) -> Option<PgServer> {
    if in_ci() {
        panic!("CI=true but a Postgres of the test's own cannot be started: {why}");
    }
    SKIPPED.get_or_init(|| {
        let _ = writeln!(
            std::io::stderr().lock(),
            "skipped: Postgres restart tests ({why}; install the PostgreSQL server binaries)"
        );
    });
    None
}

pub struct PgServer {
    bin: PathBuf,
    /// Holds the data directory, the socket and the log; removed when the server is dropped.
    dir: tempfile::TempDir,
    port: u16,
    /// Postgres refuses to run as root: then every command runs as user `postgres`.
    as_postgres: bool,
    /// The shell that owns the postmaster; closing its stdin stops the server, so a test
    /// process that dies leaves no Postgres behind.
    owner: Option<Child>,
}

impl PgServer {
    /// A fresh cluster, started; `None` when it cannot be had here (the skip is announced).
    pub fn start() -> Option<PgServer> {
        let Some(bin) = postgres_bin_dir() else {
            return unavailable("no PostgreSQL binaries found");
        };
        // /proc/self belongs to the effective user.
        let root = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false);
        let dir = tempfile::Builder::new()
            .prefix("agent-registry-own-pg-")
            .tempdir()
            .expect("temp dir");
        if root {
            let handed = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            if !handed {
                return unavailable("running as root and cannot hand a directory to postgres");
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let mut server = PgServer {
            bin,
            dir,
            port,
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
            other => return unavailable(&format!("initdb failed: {other:?}")),
        }
        server.resume();
        Some(server)
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
        let script = format!(
            "{pg} -D {data} -p {port} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c max_connections=200 >>{dir}/log 2>&1 & pid=$!; read _; \
             kill -QUIT $pid 2>/dev/null; wait $pid",
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
