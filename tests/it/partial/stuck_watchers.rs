//! Watchers that never read, on a namespace of 10 000 beating instances with ~2 KiB of labels
//! each: the server's memory grows by a bounded amount (messages are bounded in bytes, a
//! renewal never copies a row a watcher holds), and each stuck watcher is cut off after the
//! stall timeout even though its stream is never polled — it then reads what was handed over
//! and RESOURCE_EXHAUSTED naming its resume revision.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use agent_registry::proto::{
    self, discovery_service_client::DiscoveryServiceClient,
    registry_service_client::RegistryServiceClient,
};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::Code;
use tonic::transport::Channel;

use crate::support::binary::spawn_binary_with;
use crate::support::{Backend, TestDb, connect, lease, reg, rss_kib, small_window};
use crate::watch::watch_req;

const INSTANCES: usize = 10_000;
const WATCHERS: usize = 50;
const CONNECTIONS: usize = 20;
/// What the stuck watchers may add to the server's RSS, all together.
const GROWTH_LIMIT_KIB: u64 = 48 * 1024;

/// Beats for `id` every 4 s on `channel` until `stop`, reading every ack.
async fn beat_forever(channel: Channel, id: String, stop: Arc<AtomicBool>, acks: Arc<AtomicU64>) {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let Ok(replies) = RegistryServiceClient::new(channel)
        .heartbeat(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
    else {
        return;
    };
    let mut replies = replies.into_inner();
    // Spread the first beats over the interval.
    let jitter = (id.as_bytes()[id.len() - 1] as u64 % 40) * 100;
    tokio::time::sleep(Duration::from_millis(jitter)).await;
    let mut seq = 0;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let beat = proto::HeartbeatRequest {
            instance_id: id.clone(),
            sequence: seq,
            status: 0,
        };
        if tx.send(beat).await.is_err() {
            return;
        }
        match replies.message().await {
            Ok(Some(_)) => acks.fetch_add(1, Ordering::Relaxed),
            _ => return,
        };
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_reading_watchers_are_bounded_in_bytes_and_time() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let flags = [
        "--watch-stall-timeout",
        "6s",
        "--max-watches-per-connection",
        "64",
    ];
    let (server, addr) = spawn_binary_with(&db, &flags).await;
    let pid = server.id().expect("running");
    let mut channels = Vec::new();
    for _ in 0..CONNECTIONS {
        channels.push(connect(&addr).await);
    }

    // 10 000 instances with ~2 KiB of labels each.
    let labels: HashMap<String, String> = (0..8)
        .map(|k| (format!("pad-{k}"), "x".repeat(250)))
        .collect();
    let mut writers = JoinSet::new();
    for w in 0..16 {
        let mut client = RegistryServiceClient::new(channels[w % CONNECTIONS].clone());
        let labels = labels.clone();
        writers.spawn(async move {
            let mut ids = Vec::new();
            for n in (w..INSTANCES).step_by(16) {
                // Leases outlast a slow start on a loaded machine (every stream opening).
                let req = proto::RegisterRequest {
                    labels: labels.clone(),
                    lease_ttl: lease(120),
                    ..reg("big", &format!("agent-{n}"))
                };
                let i = client.register(req).await.expect("register");
                ids.push(i.into_inner().instance.unwrap().instance_id);
            }
            ids
        });
    }
    let mut ids = Vec::new();
    while let Some(r) = writers.join_next().await {
        ids.extend(r.unwrap());
    }

    // Every one of them beats, so flushes renew every row once a second.
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicU64::new(0));
    let mut beating = JoinSet::new();
    for (n, id) in ids.iter().enumerate() {
        let channel = channels[n % CONNECTIONS].clone();
        beating.spawn(beat_forever(
            channel,
            id.clone(),
            stop.clone(),
            acks.clone(),
        ));
    }
    let a = &acks;
    // 10 000 streams opening while the rest of the suite runs: a precondition, not a speed.
    crate::support::eventually_within("every instance beats", Duration::from_secs(90), || async {
        a.load(Ordering::Relaxed) >= INSTANCES as u64
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let baseline = rss_kib(pid);

    // Watchers that never read, each on a connection with a small receive window.
    let mut watches = Vec::new();
    for _ in 0..WATCHERS {
        let w = DiscoveryServiceClient::new(small_window(&addr).await)
            .watch(watch_req("big", 0))
            .await
            .expect("watch opens");
        watches.push(w.into_inner());
    }
    let opened = Instant::now();
    let mut peak = baseline;
    // Through the stall timeout and well past it, with every row renewed each second.
    while opened.elapsed() < Duration::from_secs(15) {
        peak = peak.max(rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = rss_kib(pid);
    let grew = peak.saturating_sub(baseline);
    println!(
        "{WATCHERS} never-reading watchers on {INSTANCES} beating instances (~2 KiB labels): \
         server RSS {:.1} MiB before, peak {:.1} MiB (+{:.1} MiB, {:.0} KiB a watcher), {:.1} MiB \
         after they were cut off",
        baseline as f64 / 1024.0,
        peak as f64 / 1024.0,
        grew as f64 / 1024.0,
        grew as f64 / WATCHERS as f64,
        after as f64 / 1024.0,
    );
    assert!(
        grew < GROWTH_LIMIT_KIB,
        "server RSS grew by {grew} KiB for {WATCHERS} stuck watchers"
    );

    // Each was cut off, never polled: it reads what it had been handed, then why it ended.
    for (n, w) in watches.iter_mut().enumerate().step_by(10) {
        let mut events = 0usize;
        let end = loop {
            match tokio::time::timeout(Duration::from_secs(10), w.message()).await {
                Ok(Ok(Some(m))) => events += m.events.len(),
                other => break other,
            }
        };
        let status = match end {
            Ok(Err(status)) => status,
            other => panic!("watcher {n}: after {events} events: {other:?}"),
        };
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        // Stuck in its snapshot: it must list again (a resume would skip the rest of it).
        assert!(status.message().contains("re-list"), "{status:?}");
        assert!(events < INSTANCES, "watcher {n} got the whole snapshot");
    }
    stop.store(true, Ordering::Relaxed);
    beating.abort_all();
}

/// A watcher replaying from a revision and cut off mid-replay names a revision to resume from
/// that loses nothing: what it was handed and what a resume from there brings are every change,
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_cut_off_mid_replay_resumes_without_a_gap() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let (_server, addr) = spawn_binary_with(&db, &["--watch-stall-timeout", "1s"]).await;
    let channel = connect(&addr).await;
    let mut registry = RegistryServiceClient::new(channel.clone());
    let labels: HashMap<String, String> = (0..8)
        .map(|k| (format!("pad-{k}"), "y".repeat(250)))
        .collect();
    let mut revisions = Vec::new();
    for n in 0..1500 {
        // Nothing beats for them: a lease longer than the test keeps expiries out of the log.
        let req = proto::RegisterRequest {
            labels: labels.clone(),
            lease_ttl: super::lease(600),
            ..reg("replay", &format!("r-{n}"))
        };
        let i = registry.register(req).await.unwrap().into_inner().instance;
        revisions.push(i.unwrap().revision);
    }
    let mut w = DiscoveryServiceClient::new(small_window(&addr).await)
        .watch(watch_req("replay", 1))
        .await
        .unwrap()
        .into_inner();
    // Well past the 1 s stall timeout, however slow the replay's start.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let mut got = Vec::new();
    let status = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match w.message().await {
                Ok(Some(m)) => got.extend(m.events.iter().map(|e| e.revision)),
                Ok(None) => panic!("ended without a status"),
                Err(s) => break s,
            }
        }
    })
    .await
    .expect("the stalled watcher is cut off");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let resume: i64 = status
        .message()
        .rsplit("resume from revision ")
        .next()
        .and_then(|r| r.trim().parse().ok())
        .unwrap_or_else(|| panic!("no resume revision in {status:?}"));
    assert!(got.len() < revisions.len(), "cut off before the end");
    assert!(got.iter().all(|r| *r <= resume));
    let mut again = DiscoveryServiceClient::new(channel)
        .watch(watch_req("replay", resume))
        .await
        .unwrap()
        .into_inner();
    let last = *revisions.last().unwrap();
    while got.last().is_none_or(|r| *r < last) {
        let m = tokio::time::timeout(Duration::from_secs(10), again.message())
            .await
            .expect("the rest arrives")
            .unwrap()
            .unwrap();
        got.extend(m.events.iter().map(|e| e.revision));
    }
    assert_eq!(
        got, revisions,
        "every change once, in order, across the cut"
    );
}
