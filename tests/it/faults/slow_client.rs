//! Clients that never read: back-pressure and the watch buffer bound the server's memory.

use super::*;
use crate::support::rss_kib;

/// Heartbeats offered without end (up to `cap`): each one the transport takes is counted.
fn offered_beats(
    id: String,
    pulled: Arc<AtomicU64>,
    cap: u64,
) -> impl tokio_stream::Stream<Item = proto::HeartbeatRequest> + Send + 'static {
    use futures_util::StreamExt;
    futures_util::stream::iter(1..=cap).map(move |sequence| {
        pulled.fetch_add(1, Ordering::Relaxed);
        proto::HeartbeatRequest {
            instance_id: id.clone(),
            sequence,
            status: 0,
        }
    })
}

/// Beats each stream offers at most: far more than any window or buffer may hold.
const OFFERED_PER_STREAM: u64 = 2_000_000;
const NEVER_READ_STREAMS: usize = 4;
const SLOW_WATCHERS: usize = 4;
const CHANGES: usize = 2000;
const CHURN_WRITERS: usize = 64;
const WATCH_BUFFER: usize = 256;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_does_not_grow_server_memory() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let buffer = WATCH_BUFFER.to_string();
    let flags = ["--watch-buffer", &buffer, "--default-lease-ttl", "10m"];
    let (server, addr) = spawn_binary_with(&db, &flags).await;
    let pid = server.id().expect("running");
    let main = connect(&addr).await;
    let mut registry = RegistryServiceClient::new(main.clone());
    let mut ids = Vec::new();
    for n in 0..NEVER_READ_STREAMS {
        let i = registry.register(reg("deaf", &format!("agent-{n}"))).await;
        ids.push(i.unwrap().into_inner().instance.unwrap().instance_id);
    }

    // Watchers that never read, on connections with a small receive window, so what the
    // server could still send quickly stops being read and the rest must wait on it.
    let mut watches = Vec::new();
    for _ in 0..SLOW_WATCHERS {
        let w = DiscoveryServiceClient::new(crate::support::small_window(&addr).await)
            .watch(watch_req("churn", 0))
            .await
            .expect("watch opens");
        watches.push(w.into_inner());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = rss_kib(pid);
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        tokio::spawn(async move {
            let until = Instant::now() + LOOP_LIMIT;
            while sampling.load(Ordering::SeqCst) && Instant::now() < until {
                peak.fetch_max(rss_kib(pid), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    // Heartbeat streams whose replies are never read, each on its own connection.
    let pulled: Vec<Arc<AtomicU64>> = (0..NEVER_READ_STREAMS).map(|_| Arc::default()).collect();
    let mut deaf = Vec::new();
    for (id, count) in ids.iter().zip(&pulled) {
        let mut client = RegistryServiceClient::new(connect(&addr).await);
        let beats = offered_beats(id.clone(), count.clone(), OFFERED_PER_STREAM);
        deaf.push(client.heartbeat(beats).await.expect("open").into_inner());
    }

    // Back-pressure: the transport soon stops taking beats, far short of what is offered.
    let total = |p: &[Arc<AtomicU64>]| p.iter().map(|c| c.load(Ordering::Relaxed)).sum::<u64>();
    let opened = Instant::now();
    let last = Mutex::new((total(&pulled), Instant::now()));
    eventually("the transport stops taking heartbeats", || async {
        let now = total(&pulled);
        let mut last = last.lock().unwrap();
        if now != last.0 {
            *last = (now, Instant::now());
        }
        last.1.elapsed() >= Duration::from_secs(1)
    })
    .await;
    let taken = total(&pulled);
    let stalled_after = opened.elapsed();

    // Then many changes of a few KiB each while the slow watchers read nothing, so a server
    // that buffered them per watcher would show it.
    let labels: HashMap<String, String> = (0..16)
        .map(|k| (format!("pad-{k}"), "x".repeat(250)))
        .collect();
    let mut churn = JoinSet::new();
    for w in 0..CHURN_WRITERS {
        let mut client = RegistryServiceClient::new(main.clone());
        let labels = labels.clone();
        churn.spawn(async move {
            for n in (w..CHANGES).step_by(CHURN_WRITERS) {
                let req = proto::RegisterRequest {
                    labels: labels.clone(),
                    ..reg("churn", &format!("c-{n}"))
                };
                client.register(req).await.expect("register under load");
            }
        });
    }
    let churned = Instant::now();
    while let Some(r) = churn.join_next().await {
        r.expect("churn writer");
    }
    let churned = churned.elapsed();
    assert_eq!(
        total(&pulled),
        taken,
        "heartbeats taken while nothing reads their replies"
    );
    sampling.store(false, Ordering::SeqCst);
    sampler.await.unwrap();
    let (peak, now) = (peak.load(Ordering::SeqCst), rss_kib(pid));

    let offered = OFFERED_PER_STREAM * NEVER_READ_STREAMS as u64;
    let beat_bytes = {
        use prost::Message;
        proto::HeartbeatRequest {
            instance_id: ids[0].clone(),
            sequence: OFFERED_PER_STREAM / 2,
            status: 0,
        }
        .encoded_len() as u64
            + 5
    };
    let mib = |n: u64| n as f64 / (1024.0 * 1024.0);
    println!(
        "never-reading clients: heartbeats taken {taken} of {offered} offered ({:.1} of {:.0} MiB; \
         per stream {:?}), no more after {stalled_after:?} nor during {CHANGES} changes \
         ({churned:?}); server RSS baseline {:.1} MiB, peak {:.1} MiB, after {:.1} MiB",
        mib(taken * beat_bytes),
        mib(offered * beat_bytes),
        pulled
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect::<Vec<_>>(),
        baseline as f64 / 1024.0,
        peak as f64 / 1024.0,
        now as f64 / 1024.0,
    );
    assert!(
        pulled.iter().all(|c| c.load(Ordering::Relaxed) > 0),
        "every stream was taking heartbeats"
    );
    assert!(
        taken < offered / 10,
        "back-pressure: {taken} of {offered} heartbeats taken"
    );
    assert!(
        peak < baseline + 200 * 1024,
        "server RSS grew from {baseline} KiB to {peak} KiB"
    );

    // The server still serves everyone else.
    let mut fresh = RegistryServiceClient::new(connect(&addr).await);
    tokio::time::timeout(Duration::from_secs(5), fresh.register(reg("deaf", "late")))
        .await
        .expect("Register answers in time")
        .expect("Register");

    // A slow watcher was cut off rather than buffered: it reads what was in flight, then
    // RESOURCE_EXHAUSTED naming where to resume.
    for (n, w) in watches.iter_mut().enumerate() {
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
        assert_eq!(
            status.code(),
            Code::ResourceExhausted,
            "watcher {n} after {events} events: {status:?}"
        );
        assert!(
            status.message().contains("resume from revision"),
            "{status:?}"
        );
        assert!(
            events < CHANGES,
            "watcher {n} got {events} of {CHANGES} events: buffered, not cut off"
        );
        println!("slow watcher {n}: {events} of {CHANGES} events, then {status:?}");
    }

    // The deaf streams were only slowed, not broken: the first reply is the first beat's.
    let first = deaf[0].message().await.expect("reply").expect("open");
    assert_eq!(first.sequence, 1);
}
