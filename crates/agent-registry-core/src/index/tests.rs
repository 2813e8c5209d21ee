//! Unit tests of ordered application and the three views.

use std::time::Duration;

use chrono::Utc;
use uuid::Uuid;

use super::{Index, View};
use crate::domain::{ChangeSet, Instance, InstanceFilter, InstanceStatus, Namespace, now};

fn ns(rev: i64) -> Namespace {
    Namespace {
        name: "default".into(),
        current_epoch: Uuid::from_u128(1),
        epoch_started_at: now(),
        created_at: now(),
        revision: rev,
    }
}

fn inst(lid: &str, id: u128, rev: i64, status: InstanceStatus, age_s: i64) -> Instance {
    Instance {
        instance_id: Uuid::from_u128(id),
        epoch: Uuid::from_u128(1),
        status,
        lease_ttl: Duration::from_secs(3600),
        started_at: now() - chrono::Duration::seconds(age_s),
        revision: rev,
        ..Instance::sample(lid)
    }
}

fn set(first: i64, last: i64, namespaces: Vec<Namespace>, instances: Vec<Instance>) -> ChangeSet {
    ChangeSet {
        first,
        last,
        horizon: 0,
        namespaces,
        instances,
        cards: vec![],
    }
}

fn filter() -> InstanceFilter {
    InstanceFilter {
        namespace: "default".into(),
        ..Default::default()
    }
}

#[test]
fn a_change_ahead_of_a_gap_waits_for_the_gap() {
    let index = Index::default();
    index.apply(set(1, 1, vec![ns(1)], vec![]));
    let ahead = set(
        3,
        3,
        vec![],
        vec![inst("b", 3, 3, InstanceStatus::Alive, 0)],
    );
    assert_eq!(index.apply(ahead), 1, "revision 3 must wait for 2");
    assert!(index.get(Uuid::from_u128(3)).is_none());
    index.apply(set(
        2,
        2,
        vec![],
        vec![inst("a", 2, 2, InstanceStatus::Alive, 0)],
    ));
    assert_eq!(index.revision(), 3);
    assert!(index.get(Uuid::from_u128(3)).is_some());
}

#[test]
fn an_older_row_never_replaces_a_newer_one() {
    let index = Index::default();
    let mut dead = inst("a", 2, 3, InstanceStatus::Dead, 0);
    dead.death_reason = Some(crate::domain::DeathReason::Evicted);
    index.apply(set(1, 3, vec![ns(1)], vec![dead]));
    // A read-back overlapping what is held carries the same row at its older revision.
    index.apply(set(
        1,
        4,
        vec![ns(1)],
        vec![inst("a", 2, 2, InstanceStatus::Alive, 0)],
    ));
    assert_eq!(
        index.get(Uuid::from_u128(2)).unwrap().status,
        InstanceStatus::Dead
    );
    assert_eq!(index.revision(), 4);
}

#[test]
fn active_picks_the_most_senior_live_instance_per_logical_id() {
    let index = Index::default();
    index.apply(set(
        1,
        5,
        vec![ns(1)],
        vec![
            inst("a", 10, 2, InstanceStatus::Alive, 5),
            inst("a", 11, 3, InstanceStatus::Alive, 50), // senior
            inst("a", 12, 4, InstanceStatus::Draining, 500),
            inst("b", 13, 5, InstanceStatus::Starting, 5),
        ],
    ));
    let ids = |view| {
        let page = index
            .discover(&filter(), view, 100, "", Utc::now())
            .unwrap();
        page.items
            .iter()
            .map(|i| i.instance_id.as_u128())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(View::Active), vec![11]);
    assert_eq!(ids(View::Live), vec![10, 11]);
    assert_eq!(ids(View::All), vec![10, 11, 12, 13]);
}

#[test]
fn pages_cover_every_match_exactly_once() {
    let index = Index::default();
    let instances: Vec<_> = (0..25)
        .map(|n| {
            inst(
                &format!("lid-{}", n % 7),
                100 + n as u128,
                2 + n,
                InstanceStatus::Alive,
                0,
            )
        })
        .collect();
    index.apply(set(1, 26, vec![ns(1)], instances));
    for (view, expected) in [(View::All, 25), (View::Live, 25), (View::Active, 7)] {
        let (mut seen, mut token) = (Vec::new(), String::new());
        loop {
            let page = index
                .discover(&filter(), view, 3, &token, Utc::now())
                .unwrap();
            assert!(page.items.len() <= 3);
            seen.extend(page.items.iter().map(|i| i.instance_id));
            token = page.next_page_token;
            if token.is_empty() {
                break;
            }
        }
        let unique: std::collections::BTreeSet<_> = seen.iter().collect();
        assert_eq!((seen.len(), unique.len()), (expected, expected), "{view:?}");
    }
}

#[test]
fn observers_see_rows_in_revision_order_even_when_sets_arrive_out_of_order() {
    let index = Index::default();
    let mut seen = Vec::new();
    index.apply_observed(set(1, 1, vec![ns(1)], vec![]), &mut |i| {
        seen.push(i.revision)
    });
    let mut dead = inst("a", 2, 3, InstanceStatus::Dead, 0);
    dead.death_reason = Some(crate::domain::DeathReason::Evicted);
    index.apply_observed(set(3, 3, vec![], vec![dead]), &mut |i| {
        seen.push(i.revision)
    });
    assert!(seen.is_empty(), "revision 3 waits for 2");
    let alive = inst("a", 2, 2, InstanceStatus::Alive, 0);
    index.apply_observed(set(2, 2, vec![], vec![alive]), &mut |i| {
        seen.push(i.revision)
    });
    assert_eq!(
        seen,
        vec![2, 3],
        "the death is observed after the registration"
    );
}

#[test]
fn a_collected_death_leaves_no_ghost_when_an_older_read_arrives_late() {
    let index = Index::default();
    let mut dead = inst("x", 2, 3, InstanceStatus::Dead, 0);
    dead.death_reason = Some(crate::domain::DeathReason::Deregistered);
    dead.stopped_at = Some(now());
    index.apply(set(
        1,
        3,
        vec![ns(1)],
        vec![inst("x", 2, 2, InstanceStatus::Alive, 0), dead.clone()],
    ));
    // The store collected it: the horizon prunes it here too.
    let mut collected = ChangeSet::after(3);
    collected.horizon = 3;
    index.apply(collected);
    assert!(index.get(Uuid::from_u128(2)).is_none());
    // A stale read-back of revisions 2..=3 arrives afterwards: nothing comes back to life.
    let mut seen = Vec::new();
    index.apply_observed(
        set(
            2,
            3,
            vec![],
            vec![inst("x", 2, 2, InstanceStatus::Alive, 0), dead],
        ),
        &mut |row| seen.push(row.revision),
    );
    assert!(index.get(Uuid::from_u128(2)).is_none());
    assert!(
        seen.is_empty(),
        "nothing already applied is announced again"
    );
}

#[test]
fn a_rebuild_never_moves_the_index_backwards() {
    let index = Index::default();
    index.apply(set(
        1,
        5,
        vec![ns(1)],
        vec![inst("a", 2, 5, InstanceStatus::Alive, 0)],
    ));
    let stale = set(
        1,
        4,
        vec![ns(1)],
        vec![inst("a", 2, 4, InstanceStatus::Alive, 0)],
    );
    let mut reset_at = None;
    let out = index.reset(stale, &mut |_| {}, &mut |r| reset_at = Some(r));
    assert_eq!((out, reset_at), (None, None));
    assert_eq!(index.revision(), 5);
    let newer = set(
        1,
        7,
        vec![ns(1)],
        vec![inst("b", 3, 7, InstanceStatus::Alive, 0)],
    );
    assert_eq!(
        index.reset(newer, &mut |_| {}, &mut |r| reset_at = Some(r)),
        Some(7)
    );
    assert_eq!(reset_at, Some(7));
    assert!(
        index.get(Uuid::from_u128(2)).is_none(),
        "the snapshot replaces everything"
    );
    assert!(index.get(Uuid::from_u128(3)).is_some());
}
