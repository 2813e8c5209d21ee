//! Revisions under concurrent writers: distinct, gap-free, and visible in order.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use agent_registry::proto::{self, DiscoverView};

use crate::on_both_backends;
use crate::support::{Backend, TestDb, TestServer, reg, view};

const WRITERS: usize = 8;
const PER_WRITER: usize = 200;

/// What one Discover snapshot of one logical id showed.
struct Observation {
    writer: usize,
    revision: i64,
    count: usize,
    max_seen: i64,
}

async fn concurrent_registrations_get_distinct_revisions_seen_in_order(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let s = TestServer::start(&db).await;
    // The namespace's own creation takes a revision; do it first so writers only add instances.
    let mut first = s.registry.clone();
    let seed = first
        .register(reg("race", "seed"))
        .await
        .unwrap()
        .into_inner()
        .instance
        .unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let mut discovery = s.discovery.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut w = 0;
            while !done.load(Ordering::Relaxed) {
                let req = proto::DiscoverRequest {
                    logical_ids: vec![format!("writer-{w}")],
                    page_size: 1000,
                    ..view("race", DiscoverView::All)
                };
                let page = discovery.discover(req).await.unwrap().into_inner();
                seen.push(Observation {
                    writer: w,
                    revision: page.revision,
                    count: page.instances.len(),
                    max_seen: page.instances.iter().map(|i| i.revision).max().unwrap_or(0),
                });
                w = (w + 1) % WRITERS;
            }
            seen
        })
    };

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let mut client = s.registry.clone();
        writers.push(tokio::spawn(async move {
            let mut revisions = Vec::with_capacity(PER_WRITER);
            for _ in 0..PER_WRITER {
                let i = client
                    .register(reg("race", &format!("writer-{w}")))
                    .await
                    .unwrap();
                revisions.push(i.into_inner().instance.unwrap().revision);
            }
            revisions
        }));
    }
    let mut by_writer = Vec::new();
    for w in writers {
        by_writer.push(w.await.unwrap());
    }
    done.store(true, Ordering::Relaxed);
    let observations = reader.await.unwrap();

    // Distinct and gap-free: namespace, seed and every registration use each revision once.
    let mut all: Vec<i64> = by_writer.iter().flatten().copied().collect();
    all.push(seed.revision);
    all.sort();
    let expected: Vec<i64> = (2..=(WRITERS * PER_WRITER) as i64 + 2).collect();
    assert_eq!(all, expected, "revisions are distinct and consecutive");
    for revs in &by_writer {
        assert!(
            revs.windows(2).all(|p| p[0] < p[1]),
            "one writer's revisions increase"
        );
    }

    // Each snapshot shows exactly the writer's registrations up to its revision, and snapshot
    // revisions never go backwards: nothing at or below a seen revision appears later.
    let truth: Vec<BTreeMap<i64, ()>> = by_writer
        .iter()
        .map(|revs| revs.iter().map(|r| (*r, ())).collect())
        .collect();
    assert!(
        observations.len() > WRITERS,
        "the reader overlapped the writers"
    );
    let mut last = 0;
    for o in &observations {
        assert!(
            o.revision >= last,
            "snapshot revision went back from {last} to {}",
            o.revision
        );
        last = o.revision;
        assert!(o.max_seen <= o.revision);
        let committed = truth[o.writer].range(..=o.revision).count();
        assert_eq!(
            o.count, committed,
            "writer {} at revision {}",
            o.writer, o.revision
        );
    }
    s.stop().await;
}

on_both_backends!(concurrent_registrations_get_distinct_revisions_seen_in_order);
