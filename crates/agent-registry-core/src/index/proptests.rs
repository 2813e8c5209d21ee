//! Property tests of Discover through the postings: for any history of rows (registrations,
//! changed labels, drains, deaths, collected deaths, an old epoch) and any filter, view and
//! page size, paging through the index gives exactly what a plain scan of every instance gives.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use proptest::collection::{btree_set, vec};
use proptest::prelude::*;
use uuid::Uuid;

use super::{Index, View};
use crate::domain::{ChangeSet, Instance, InstanceFilter, InstanceStatus, Namespace};

const LIDS: [&str; 4] = ["a", "b", "c", "d"];
const TYPES: [&str; 3] = ["", "x", "y"];
const CAPS: [&str; 3] = ["p", "q", "r"];
const LABELS: [(&str, &str); 3] = [("zone", "1"), ("zone", "2"), ("tier", "web")];

fn epoch(current: bool) -> Uuid {
    Uuid::from_u128(if current { 1 } else { 2 })
}

/// One row of the history: which instance, and everything a Discover filter or view reads.
#[derive(Debug, Clone)]
struct Row {
    id: u128,
    lid: usize,
    kind: usize,
    caps: Vec<usize>,
    labels: Vec<usize>,
    status: InstanceStatus,
    current: bool,
    started_s: i64,
    beat_age_s: i64,
}

fn row() -> impl Strategy<Value = Row> {
    (
        (1u128..12, 0..LIDS.len(), 0..TYPES.len()),
        btree_set(0..CAPS.len(), 0..3),
        btree_set(0..LABELS.len(), 0..3),
        prop_oneof![
            4 => Just(InstanceStatus::Alive),
            1 => Just(InstanceStatus::Starting),
            1 => Just(InstanceStatus::Draining),
            1 => Just(InstanceStatus::Dead),
        ],
        (prop::bool::weighted(0.85), 0i64..5, 0i64..30),
    )
        .prop_map(
            |((id, lid, kind), caps, labels, status, (current, started_s, beat_age_s))| Row {
                id,
                lid,
                kind,
                caps: caps.into_iter().collect(),
                labels: labels.into_iter().collect(),
                status,
                current,
                started_s,
                beat_age_s,
            },
        )
}

fn instance(r: &Row, revision: i64, lid: &str, now: DateTime<Utc>) -> Instance {
    Instance {
        instance_id: Uuid::from_u128(r.id),
        epoch: epoch(r.current),
        status: r.status,
        agent_type: TYPES[r.kind].into(),
        capabilities: r.caps.iter().map(|c| CAPS[*c].to_string()).collect(),
        labels: r
            .labels
            .iter()
            .map(|l| (LABELS[*l].0.to_string(), LABELS[*l].1.to_string()))
            .collect(),
        lease_ttl: Duration::from_secs(15),
        started_at: now - TimeDelta::seconds(r.started_s),
        last_heartbeat: now - TimeDelta::seconds(r.beat_age_s),
        revision,
        ..Instance::sample(lid)
    }
}

fn filter() -> impl Strategy<Value = InstanceFilter> {
    (
        prop::option::of(0..TYPES.len()),
        btree_set(0..CAPS.len(), 0..2),
        btree_set(0..LABELS.len(), 0..2),
        btree_set(0..LIDS.len(), 0..2),
    )
        .prop_map(|(kind, caps, labels, lids)| InstanceFilter {
            namespace: "default".into(),
            logical_ids: lids.into_iter().map(|l| LIDS[l].to_string()).collect(),
            agent_type: kind.map(|k| TYPES[k].to_string()),
            capabilities: caps.into_iter().map(|c| CAPS[c].to_string()).collect(),
            label_selector: labels
                .into_iter()
                .map(|l| (LABELS[l].0.to_string(), LABELS[l].1.to_string()))
                .collect(),
        })
}

/// What Discover must answer, by scanning every instance (key order: logical id, id).
fn expected(rows: &[Instance], f: &InstanceFilter, view: View, now: DateTime<Utc>) -> Vec<Uuid> {
    let live = |i: &Instance| {
        i.status == InstanceStatus::Alive && i.epoch == epoch(true) && i.lease_expires_at() > now
    };
    let mut sorted: Vec<&Instance> = rows.iter().collect();
    sorted.sort_by(|a, b| (&a.logical_id, a.instance_id).cmp(&(&b.logical_id, b.instance_id)));
    let chosen: Vec<&Instance> = match view {
        View::All => sorted.into_iter().filter(|i| f.matches(i)).collect(),
        View::Live => sorted
            .into_iter()
            .filter(|i| live(i) && f.matches(i))
            .collect(),
        View::Active => {
            let mut active: BTreeMap<&str, &Instance> = BTreeMap::new();
            for i in sorted.into_iter().filter(|i| live(i)) {
                let best = active.entry(&i.logical_id).or_insert(i);
                if i.seniority() < best.seniority() {
                    *best = i;
                }
            }
            active.into_values().filter(|i| f.matches(i)).collect()
        }
    };
    chosen.into_iter().map(|i| i.instance_id).collect()
}

proptest! {
    #[test]
    fn filtered_pages_equal_a_full_scan(
        history in vec(row(), 1..40),
        collect_dead in any::<bool>(),
        f in filter(),
        view in prop_oneof![Just(View::All), Just(View::Live), Just(View::Active)],
        page_size in 1usize..5,
    ) {
        let now = crate::domain::now();
        let index = Index::default();
        let namespace = Namespace {
            name: "default".into(),
            current_epoch: epoch(true),
            epoch_started_at: now,
            created_at: now,
            revision: 1,
        };
        // Each row a revision of its own; an instance keeps its first logical id.
        let mut latest: BTreeMap<u128, Instance> = BTreeMap::new();
        let mut revision = 1;
        let mut sets = vec![ChangeSet { first: 1, last: 1, horizon: 0, namespaces: vec![namespace], instances: vec![], cards: vec![] }];
        for r in &history {
            revision += 1;
            let lid = latest.get(&r.id).map_or(LIDS[r.lid].to_string(), |i| i.logical_id.clone());
            let mut i = instance(r, revision, &lid, now);
            // A stored beat never moves back (the index keeps the newest it saw).
            if let Some(prior) = latest.get(&r.id) {
                i.last_heartbeat = i.last_heartbeat.max(prior.last_heartbeat);
            }
            latest.insert(r.id, i.clone());
            sets.push(ChangeSet { first: revision, last: revision, horizon: 0, namespaces: vec![], instances: vec![i], cards: vec![] });
        }
        for s in sets {
            index.apply(s);
        }
        if collect_dead {
            // The store collected every death so far: they leave the index (and the postings).
            index.apply(ChangeSet { first: revision + 1, last: revision + 1, horizon: revision, namespaces: vec![], instances: vec![], cards: vec![] });
            latest.retain(|_, i| i.status != InstanceStatus::Dead);
        }
        let rows: Vec<Instance> = latest.into_values().collect();
        let want = expected(&rows, &f, view, now);
        let mut got = Vec::new();
        let mut token = String::new();
        loop {
            let page = index.discover(&f, view, page_size, &token, now).unwrap();
            prop_assert!(page.items.len() <= page_size);
            got.extend(page.items.iter().map(|l| l.instance_id));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        prop_assert_eq!(got, want);
    }
}
