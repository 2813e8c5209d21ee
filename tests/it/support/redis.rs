//! Redis for tests: `REDIS_URL` when set, else a throwaway `redis-server` started from the local
//! binary; without either, Redis tests print `skipped: …` once and pass (with `CI=true` they
//! fail). Tests that stop Redis mid-way always get a server of their own.

use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use super::in_ci;

static SKIPPED: OnceLock<()> = OnceLock::new();

fn unavailable(why: &str) -> Option<RedisServer> {
    if in_ci() {
        panic!("CI=true but Redis is unavailable: {why}");
    }
    SKIPPED.get_or_init(|| {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr().lock(),
            "skipped: Redis tests ({why}; set REDIS_URL=redis://… or install redis-server)"
        );
    });
    None
}

/// A channel prefix of one test's own, so tests sharing a Redis never hear each other.
pub fn unique_prefix() -> String {
    format!("ar-test-{}:", uuid::Uuid::new_v4().simple())
}

/// The shared Redis for tests that do not stop it: `REDIS_URL`, else a throwaway server.
pub fn shared_url() -> Option<String> {
    static URL: OnceLock<Option<String>> = OnceLock::new();
    URL.get_or_init(|| match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => RedisServer::start().map(|s| {
            let url = s.url();
            // Lives as long as the test process.
            std::mem::forget(s);
            url
        }),
    })
    .clone()
}

/// A `redis-server` owned by one test, which it may stop and start again on the same port.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// `None` when no `redis-server` binary is installed (the skip has been announced).
    pub fn start() -> Option<RedisServer> {
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            return unavailable("no redis-server binary");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let mut server = RedisServer { port, child: None };
        server.resume();
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and waits until it answers.
    pub fn resume(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// Kills the server (as a crash would) and waits for it to be gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
