//! Redis killed between two replicas under load: every change still reaches the other one.

use super::*;

/// Reads a Watch until `stop`, counting the PUTs of each instance; records how it ended.
#[derive(Default)]
struct Watched {
    puts: Mutex<HashMap<String, u32>>,
    other: Mutex<Vec<String>>,
    ended: Mutex<Option<String>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_changes_still_reach_the_other_replica() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let (redis_url, prefix) = (redis.url(), unique_prefix());
    let flags = [
        "--redis-url",
        &redis_url,
        "--redis-prefix",
        &prefix,
        "--change-poll-interval",
        "200ms",
        "--default-lease-ttl",
        "10m",
    ];
    let (_a, a_addr) = spawn_binary_with(&db, &flags).await;
    let (_b, b_addr) = spawn_binary_with(&db, &flags).await;
    let (a, b) = (connect(&a_addr).await, connect(&b_addr).await);
    for ch in [&a, &b] {
        eventually("Redis notifications stand", || async {
            redis_health(ch).await == ServingStatus::Serving as i32
        })
        .await;
    }

    let mut watch = DiscoveryServiceClient::new(b.clone())
        .watch(watch_req("burst", 0))
        .await
        .unwrap()
        .into_inner();
    let first = next(&mut watch).await;
    assert_eq!(first.bookmark_revision, 0, "an empty snapshot first");
    let watched = Arc::new(Watched::default());
    let reading = {
        let watched = watched.clone();
        tokio::spawn(async move {
            let until = Instant::now() + LOOP_LIMIT;
            while Instant::now() < until {
                match watch.message().await {
                    Ok(Some(m)) => {
                        for e in m.events {
                            let i = e.instance.expect("event instance");
                            if e.r#type == Type::Put as i32 {
                                *watched
                                    .puts
                                    .lock()
                                    .unwrap()
                                    .entry(i.instance_id)
                                    .or_default() += 1;
                            } else {
                                watched.other.lock().unwrap().push(i.instance_id);
                            }
                        }
                    }
                    other => {
                        *watched.ended.lock().unwrap() = Some(format!("{other:?}"));
                        return;
                    }
                }
            }
        })
    };

    let burst = Arc::new(Burst::default());
    let mut writers = burst.start(&connections(&a_addr, 2).await, "burst", 8, OnError::End);
    let bu = &burst;
    eventually("registrations acknowledged before Redis dies", || async {
        bu.acked_count() >= 200
    })
    .await;
    let killed = Instant::now();
    redis.stop();
    let at_kill = burst.acked_count();
    eventually("registrations acknowledged after Redis died", || async {
        bu.acked_count() >= at_kill + 300
    })
    .await;
    burst.stop(&mut writers).await;
    let acked = burst.acked();
    assert_eq!(
        burst.failed(),
        vec![],
        "Redis carries no data: no Register fails"
    );
    eventually("B reports the notifications down", || async {
        redis_health(&b).await == ServingStatus::NotServing as i32
    })
    .await;

    let w = &watched;
    let acked_ids: HashSet<&str> = acked.iter().map(|i| i.instance_id.as_str()).collect();
    eventually(
        "every acknowledged registration reaches B's watcher",
        || async {
            let puts = w.puts.lock().unwrap();
            acked_ids.iter().all(|id| puts.contains_key(*id)) || w.ended.lock().unwrap().is_some()
        },
    )
    .await;
    let caught_up = killed.elapsed();
    assert_eq!(*watched.ended.lock().unwrap(), None, "B's watch ended");
    {
        let puts = watched.puts.lock().unwrap();
        let twice: Vec<_> = puts.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "a PUT delivered twice: {twice:?}");
        let extra: Vec<_> = puts
            .keys()
            .filter(|id| !acked_ids.contains(id.as_str()))
            .collect();
        assert!(extra.is_empty(), "PUTs of nothing acknowledged: {extra:?}");
        assert_eq!(*watched.other.lock().unwrap(), Vec::<String>::new());
    }
    reading.abort();

    // B's Discover agrees with the acknowledgements and with A.
    let on_b = all_by_id(&mut DiscoveryServiceClient::new(b.clone()), "burst").await;
    let stored = stored_ids(&db.url, "burst").await;
    assert_all_present(&acked, &on_b, &stored);
    let on_a = all_by_id(&mut DiscoveryServiceClient::new(a.clone()), "burst").await;
    assert_eq!(on_a.len(), acked.len());
    assert_eq!(on_b, on_a, "both replicas show the same instances");
    println!(
        "Redis killed: {} registrations acknowledged on A ({at_kill} before the kill); all \
         reached B's watcher as one PUT each within {caught_up:?} of the kill",
        acked.len()
    );
}
