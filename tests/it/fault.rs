//! Postgres goes away under load: heartbeats keep being acknowledged, nothing expires,
//! Register answers UNAVAILABLE, and everything lands once it is back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_registry::domain::{InstanceStatus, RegisterInput};
use agent_registry::liveness::LivenessConfig;
use agent_registry::registry::RegistryError;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::node::{Node, settle};
use crate::support::{Backend, TestDb};

/// A TCP proxy to Postgres that can cut every connection and refuse new ones.
struct Proxy {
    addr: std::net::SocketAddr,
    cut: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (c, l) = (cut.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if c.load(Ordering::SeqCst) {
                    continue; // dropped: the database is "down"
                }
                let upstream = upstream.clone();
                l.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        Proxy { addr, cut, links }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// `postgres://user@host:port/db?x` → (`host:port`, the URL with `via` in its place).
fn reroute(url: &str, via: std::net::SocketAddr) -> (String, String) {
    let after_scheme = url.find("://").unwrap() + 3;
    let rest = &url[after_scheme..];
    let host_start = rest.find('@').map_or(0, |i| i + 1);
    let host_end = rest[host_start..]
        .find(['/', '?'])
        .map_or(rest.len(), |i| host_start + i);
    let host = rest[host_start..host_end].to_string();
    let host = if host.contains(':') {
        host
    } else {
        format!("{host}:5432")
    };
    let url = format!(
        "{}{}{via}{}",
        &url[..after_scheme],
        &rest[..host_start],
        &rest[host_end..]
    );
    (host, url)
}

#[tokio::test]
async fn postgres_outage_keeps_agents_alive_and_loses_nothing() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let (upstream, _) = reroute(&db.url, "127.0.0.1:1".parse().unwrap());
    let proxy = Proxy::start(upstream).await;
    let (_, via_proxy) = reroute(&db.url, proxy.addr);
    let node = Node::start(&via_proxy, LivenessConfig::default()).await;
    tokio::time::pause();
    let secs = Duration::from_secs;

    let fleet = node.fleet("prod", 5).await;
    let agents: Vec<_> = fleet.iter().map(|i| node.agent(i, secs(5))).collect();
    node.advance(secs(10)).await;
    let counters = &node.registry.liveness().counters;

    // One agent falls silent just as the database goes: its lease runs out during the outage.
    let silent = node.register("prod", "silent").await;
    proxy.cut();
    let cut_at = agent_registry::domain::now();
    node.advance(secs(60)).await;
    assert!(
        agents.iter().all(|a| !a.is_finished()),
        "every beat was acknowledged"
    );
    assert!(
        counters.flush_failures.load(Ordering::Relaxed) > 0,
        "flushes failed and retry"
    );
    assert!(!node.registry.liveness().store_reachable());
    assert_eq!(
        counters.expiries.load(Ordering::Relaxed),
        0,
        "nothing expires"
    );
    assert!(
        fleet
            .iter()
            .all(|i| node.status(i) == InstanceStatus::Alive)
    );
    assert_eq!(
        node.status(&silent),
        InstanceStatus::Alive,
        "not even a silent one"
    );
    let registry = node.registry.clone();
    let refused = settle(async move {
        let input = RegisterInput {
            logical_id: "late".into(),
            ..Default::default()
        };
        registry.register(input).await
    })
    .await;
    assert!(
        matches!(refused, Err(RegistryError::Unavailable(_))),
        "{refused:?}"
    );

    proxy.restore();
    let flushes = counters.flushes.load(Ordering::Relaxed);
    node.eventually("flushes land again", secs(30), || {
        counters.flushes.load(Ordering::Relaxed) > flushes
            && node.registry.liveness().store_reachable()
    })
    .await;
    // Store-recovery grace: the silent agent gets a full lease from the recovery to come back.
    let recovered = tokio::time::Instant::now();
    node.advance(secs(13)).await;
    assert_eq!(
        node.status(&silent),
        InstanceStatus::Alive,
        "grace after the outage"
    );
    node.eventually("the silent agent expires", secs(10), || {
        node.status(&silent) == InstanceStatus::Dead
    })
    .await;
    assert!(recovered.elapsed() >= secs(14));
    assert_eq!(counters.expiries.load(Ordering::Relaxed), 1);
    assert!(
        fleet
            .iter()
            .all(|i| node.status(i) == InstanceStatus::Alive)
    );
    assert!(agents.iter().all(|a| !a.is_finished()));
    let sql = format!(
        "SELECT count(*) FROM registry_instance WHERE status = 'ALIVE' AND last_heartbeat > '{}'",
        cut_at.to_rfc3339()
    );
    let url = db.url.clone();
    let landed = settle(async move { TestDb::query_i64_at(&url, &sql).await }).await;
    assert_eq!(
        landed, 5,
        "beats acknowledged during the outage reached the store"
    );
    for a in agents {
        a.abort();
    }
    node.stop().await;
}
