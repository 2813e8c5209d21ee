//! The server binary as a process of a test's own: started on a free port with a store, its
//! address read from its log, its log drained (shown with `TEST_SERVER_LOG=1`).

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::TestDb;

/// Starts the binary on port 0 and reads the address it logged.
pub async fn spawn_binary(db: &TestDb) -> (Child, String) {
    spawn_binary_with(db, &[]).await
}

/// Like [`spawn_binary`], with extra `serve` flags.
pub async fn spawn_binary_with(db: &TestDb, extra: &[&str]) -> (Child, String) {
    spawn_binary_at(&db.url, extra).await
}

/// Like [`spawn_binary_with`], on a database URL no `TestDb` owns (e.g. a test's own server).
pub async fn spawn_binary_at(database_url: &str, extra: &[&str]) -> (Child, String) {
    spawn_command(Command::new(BIN), database_url, "127.0.0.1:0", extra).await
}

/// The server binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_agent-registry");

/// Like [`spawn_binary_at`], through `command` (the binary with its environment): `serve`, the
/// store and the listening address (`127.0.0.1:0` for any port) are appended.
pub async fn spawn_command(
    mut command: Command,
    database_url: &str,
    listen: &str,
    extra: &[&str],
) -> (Child, String) {
    let mut child = command
        .args([
            "serve",
            "--listen",
            listen,
            "--database-url",
            database_url,
            "--metrics-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .env("RUST_LOG", "info")
        .env("LOG_FORMAT", "text")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn agent-registry");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("listening on ").nth(1) {
                return rest.trim().to_string();
            }
        }
        panic!("the server exited before listening");
    })
    .await
    .expect("server started in time");
    // Keep draining its log so the pipe never fills (and show it with TEST_SERVER_LOG=1).
    let show = std::env::var_os("TEST_SERVER_LOG").is_some();
    let tag = addr.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if show {
                eprintln!("[{tag}] {line}");
            }
        }
    });
    (child, addr)
}
