//! The write transactions, written once over primitive row operations that each backend provides.
//!
//! Each operation first locks the revision counter, so the rules below always decide against
//! the latest committed state and hand out consecutive revisions.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use chrono::{DateTime, Utc};

use super::{
    Advanced, Expired, Published, Registered, RegisteredBatch, Slack, StoreError, StoredBeat,
    Transitioned,
};
use crate::domain::card::Card;
use crate::domain::{
    Admission, ChangeSet, DeathReason, Instance, InstanceStatus, Namespace, NewInstance, RuleError,
    StoredCard, Transition, admit_registration, apply_transition,
};

/// Most older-epoch instances one fencing statement marks DEAD: an epoch advance over a huge
/// namespace is a few set-based statements, not one per instance.
pub(crate) const FENCE_CHUNK: i64 = 5_000;

/// Row-level statements inside one open write transaction.
#[async_trait]
pub(crate) trait WriteTx: Send {
    /// Locks the registry-wide revision counter until commit and returns its value and the
    /// store's clock once the lock is held (the time every change of the transaction carries).
    async fn lock_revision(&mut self) -> Result<(i64, DateTime<Utc>), StoreError>;
    async fn save_revision(&mut self, revision: i64) -> Result<(), StoreError>;
    /// The highest logged revision older than `retention` by the database's clock, if any.
    async fn log_before(&mut self, retention: Duration) -> Result<Option<i64>, StoreError>;
    /// Raises the recorded compaction horizon to `horizon` (never lowers it); returns it.
    async fn raise_horizon(&mut self, horizon: i64) -> Result<i64, StoreError>;
    async fn namespace(&mut self, name: &str) -> Result<Option<Namespace>, StoreError>;
    async fn insert_namespace(&mut self, ns: &Namespace) -> Result<(), StoreError>;
    async fn update_namespace(&mut self, ns: &Namespace) -> Result<(), StoreError>;
    async fn instance(&mut self, id: Uuid) -> Result<Option<Instance>, StoreError>;
    /// The rows of `ids` that exist, in any order, locked until commit.
    async fn instances(&mut self, ids: &[Uuid]) -> Result<Vec<Instance>, StoreError>;
    /// Inserts new instance rows with one statement.
    async fn insert_instances(&mut self, rows: &[Instance]) -> Result<(), StoreError>;
    /// Writes status, stopped_at, death_reason, last_heartbeat and revision.
    async fn update_instance(&mut self, i: &Instance) -> Result<(), StoreError>;
    /// In one statement, marks DEAD with `reason` at `at` the rows `kill` selects, numbering
    /// their revisions from `first` in seniority order (started_at, instance_id), and returns
    /// them as they now are. Rows are locked in instance_id order.
    async fn kill_rows(
        &mut self,
        kill: Kill<'_>,
        reason: DeathReason,
        at: DateTime<Utc>,
        first: i64,
    ) -> Result<Vec<Instance>, StoreError>;
    /// The stored heartbeat of each of `ids` that is not dead, and the store's clock now.
    async fn live_beats(
        &mut self,
        ids: &[Uuid],
    ) -> Result<(Vec<(Uuid, DateTime<Utc>)>, DateTime<Utc>), StoreError>;
    /// Which of `keys` (namespace, logical id, digest) are stored versions of an agent's
    /// card, with whether each is collected; one statement.
    async fn card_states(&mut self, keys: &[CardKey]) -> Result<Vec<(CardKey, bool)>, StoreError>;
    /// Stores card versions as given (new, revived after collection, or published again), no
    /// two of the same key; one statement.
    async fn put_cards(&mut self, cards: &[StoredCard]) -> Result<(), StoreError>;
    /// In one statement, collects the card versions published at or below `horizon` that no
    /// retained instance serves and that are not their agent's latest, numbering their
    /// revisions from `first`; returns them (tombstones), in revision order.
    async fn collect_cards(
        &mut self,
        horizon: i64,
        first: i64,
        at: DateTime<Utc>,
    ) -> Result<Vec<StoredCard>, StoreError>;
}

/// A version of an agent's card: (namespace, logical id, digest).
pub(crate) type CardKey = (String, String, String);

/// Which rows one set-based kill takes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kill<'a> {
    /// The candidates among `ids` (not dead) whose stored lease, stretched by `ttl_factor`,
    /// ran out by `cutoff`: `last_heartbeat + lease_ttl × ttl_factor ≤ cutoff`.
    Expired {
        ids: &'a [Uuid],
        cutoff: DateTime<Utc>,
        ttl_factor: f64,
    },
    /// At most `limit` non-dead instances of `namespace` outside `epoch`.
    Fenced {
        namespace: &'a str,
        epoch: Uuid,
        limit: i64,
    },
}

/// Hands out consecutive revisions after the locked counter and records what changed.
struct Revisions {
    changes: ChangeSet,
}

impl Revisions {
    /// Locks the counter; returns the transaction's time too (the store's clock).
    async fn lock(tx: &mut impl WriteTx) -> Result<(Self, DateTime<Utc>), StoreError> {
        let (revision, at) = tx.lock_revision().await?;
        let revs = Self {
            changes: ChangeSet::after(revision),
        };
        Ok((revs, at))
    }

    fn next(&mut self) -> i64 {
        self.changes.last += 1;
        self.changes.last
    }

    /// Records rows a set-based statement changed with the revisions after `last`.
    fn extend(&mut self, rows: Vec<Instance>) {
        self.changes.last += rows.len() as i64;
        self.changes.instances.extend(rows);
    }

    /// Saves the counter. (The database's own triggers log the changed instance rows.)
    async fn finish(self, tx: &mut impl WriteTx) -> Result<ChangeSet, StoreError> {
        if !self.changes.is_empty() {
            tx.save_revision(self.changes.last).await?;
        }
        Ok(self.changes)
    }
}

/// Registers a batch in one transaction: one commit (one fsync) for all of them. Each
/// registration is judged before anything of it is written, so a refused one (a rule) leaves
/// no trace and does not disturb the others; a store error fails the whole batch.
pub(crate) async fn register_batch(
    tx: &mut impl WriteTx,
    news: Vec<NewInstance>,
) -> Result<RegisteredBatch, StoreError> {
    let (mut revs, at) = Revisions::lock(tx).await?;
    let mut results = Vec::with_capacity(news.len());
    // Client-chosen ids (retries) are read and locked up front in instance_id order, the order
    // every writer locks rows in, so a batch cannot deadlock with a flush.
    let mut chosen: Vec<Uuid> = news
        .iter()
        .filter(|n| n.client_chose_id)
        .map(|n| n.instance_id)
        .collect();
    chosen.sort_unstable();
    chosen.dedup();
    let mut batch = Batch::default();
    if !chosen.is_empty() {
        for row in tx.instances(&chosen).await? {
            batch.stored.insert(row.instance_id, row);
        }
    }
    // Every card version the batch names, looked up in one statement.
    let mut named: Vec<CardKey> = news
        .iter()
        .filter(|n| !n.template.card_digest.is_empty())
        .map(|n| card_key(&n.template))
        .collect();
    named.sort_unstable();
    named.dedup();
    if !named.is_empty() {
        batch.cards.extend(tx.card_states(&named).await?);
    }
    for new in news {
        results.push(register_one(tx, &mut revs, &mut batch, new, at).await?);
    }
    // Every card the batch stores, then every new instance, one statement each.
    if !batch.new_cards.is_empty() {
        tx.put_cards(&batch.new_cards).await?;
    }
    if !batch.created.is_empty() {
        tx.insert_instances(&batch.created).await?;
    }
    Ok(RegisteredBatch {
        results,
        changes: revs.finish(tx).await?,
    })
}

/// What a batch has decided so far and not yet written, or already read.
#[derive(Default)]
struct Batch {
    /// Namespaces read or created in this transaction: one lookup each per batch.
    namespaces: HashMap<String, Namespace>,
    /// New instances, inserted together at the end.
    created: Vec<Instance>,
    /// Position of each new instance in `created`, for a retry within the same batch.
    created_ids: HashMap<Uuid, usize>,
    /// Stored rows of the client-chosen ids, locked.
    stored: HashMap<Uuid, Instance>,
    /// Card versions the batch names, as stored (read up front) or stored by it: key →
    /// collected. A key absent is not stored.
    cards: HashMap<CardKey, bool>,
    /// Versions to store, written together at the end.
    new_cards: Vec<StoredCard>,
}

fn card_key(i: &Instance) -> CardKey {
    (
        i.namespace.clone(),
        i.logical_id.clone(),
        i.card_digest.clone(),
    )
}

impl Batch {
    /// `Some(collected)` when the version is stored (or stored earlier in this batch).
    fn card_state(&self, i: &Instance) -> Option<bool> {
        self.cards.get(&card_key(i)).copied()
    }
}

async fn register_one(
    tx: &mut impl WriteTx,
    revs: &mut Revisions,
    batch: &mut Batch,
    new: NewInstance,
    at: DateTime<Utc>,
) -> Result<Result<Registered, RuleError>, StoreError> {
    let name = &new.template.namespace;
    let stored = match batch.namespaces.get(name) {
        Some(ns) => Some(ns.clone()),
        None => tx.namespace(name).await?,
    };
    // Judged against the namespace as stored, or as it would be created.
    let mut ns = stored.clone().unwrap_or_else(|| Namespace {
        name: name.clone(),
        current_epoch: Uuid::now_v7(),
        epoch_started_at: at,
        created_at: at,
        revision: 0,
    });
    let existing = match new.client_chose_id {
        true => match batch.created_ids.get(&new.instance_id) {
            Some(&i) => Some(batch.created[i].clone()),
            None => batch.stored.get(&new.instance_id).cloned(),
        },
        false => None,
    };
    let admission = match admit_registration(existing.as_ref(), &ns, &new) {
        Ok(a) => a,
        Err(rule) => return Ok(Err(rule)),
    };
    // A card named by digest must be stored for this agent; one sent is stored unless it is.
    let mut store_card = None;
    if admission == Admission::Create && !new.template.card_digest.is_empty() {
        let state = batch.card_state(&new.template);
        match (&new.card, state) {
            (_, Some(false)) => {}
            (Some(card), _) => store_card = Some(card.clone()),
            (None, _) => {
                let i = &new.template;
                return Ok(Err(RuleError::UnknownCard {
                    namespace: i.namespace.clone(),
                    logical_id: i.logical_id.clone(),
                    digest: i.card_digest.clone(),
                }));
            }
        }
    }
    if stored.is_none() {
        ns.revision = revs.next();
        tx.insert_namespace(&ns).await?;
        revs.changes.namespaces.push(ns.clone());
    }
    batch.namespaces.insert(ns.name.clone(), ns.clone());
    if let Some(card) = store_card {
        let mut stored = stored_card(&new.template.namespace, &new.template.logical_id, card, at);
        stored.revision = revs.next();
        revs.changes.cards.push(stored.clone());
        batch.new_cards.push(stored);
        batch.cards.insert(card_key(&new.template), false);
    }
    let registered = match admission {
        Admission::Retry(mut instance) => {
            // A retry renews the lease; it is not a state change, so the revision stays.
            // (One created earlier in this batch is written at the end, already renewed.)
            instance.last_heartbeat = at;
            if !batch.created_ids.contains_key(&instance.instance_id) {
                tx.update_instance(&instance).await?;
            }
            Registered {
                instance: *instance,
                retried: true,
            }
        }
        Admission::Create => {
            let mut instance = new.template;
            instance.epoch = ns.current_epoch;
            instance.status = match new.ready {
                true => InstanceStatus::Alive,
                false => InstanceStatus::Starting,
            };
            instance.started_at = at;
            instance.last_heartbeat = at;
            instance.revision = revs.next();
            batch
                .created_ids
                .insert(instance.instance_id, batch.created.len());
            batch.created.push(instance.clone());
            revs.changes.instances.push(instance.clone());
            Registered {
                instance,
                retried: false,
            }
        }
    };
    Ok(Ok(registered))
}

pub(crate) async fn transition(
    tx: &mut impl WriteTx,
    id: Uuid,
    t: Transition,
) -> Result<Transitioned, StoreError> {
    let (mut revs, at) = Revisions::lock(tx).await?;
    let current = tx
        .instance(id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("instance_id {id}")))?;
    let instance = match apply_transition(&current, t, at)? {
        None => current,
        Some(mut next) => {
            next.revision = revs.next();
            tx.update_instance(&next).await?;
            revs.changes.instances.push(next.clone());
            next
        }
    };
    Ok(Transitioned {
        instance,
        changes: revs.finish(tx).await?,
    })
}

pub(crate) async fn advance_epoch(
    tx: &mut impl WriteTx,
    name: &str,
) -> Result<Advanced, StoreError> {
    let (mut revs, at) = Revisions::lock(tx).await?;
    let mut ns = tx
        .namespace(name)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("namespace {name}")))?;
    ns.current_epoch = Uuid::now_v7();
    ns.epoch_started_at = at;
    ns.revision = revs.next();
    tx.update_namespace(&ns).await?;
    revs.changes.namespaces.push(ns.clone());
    // Every older instance in this same transaction (SPEC §4.4), a bounded chunk per statement.
    let mut fenced = 0;
    loop {
        let kill = Kill::Fenced {
            namespace: name,
            epoch: ns.current_epoch,
            limit: FENCE_CHUNK,
        };
        let first = revs.changes.last + 1;
        let dead = tx
            .kill_rows(kill, DeathReason::EpochSuperseded, at, first)
            .await?;
        let n = dead.len() as i64;
        fenced += n as u64;
        revs.extend(dead);
        if n < FENCE_CHUNK {
            break;
        }
    }
    Ok(Advanced {
        namespace: ns,
        fenced,
        changes: revs.finish(tx).await?,
    })
}

/// Expires, in one statement, the candidates whose stored lease ran out more than `slack` ago
/// by the store's clock; reports the stored beat of those it keeps (renewed elsewhere).
pub(crate) async fn expire(
    tx: &mut impl WriteTx,
    candidates: &[Uuid],
    slack: Slack,
) -> Result<Expired, StoreError> {
    let (mut revs, at) = Revisions::lock(tx).await?;
    let cutoff = at - chrono::TimeDelta::from_std(slack.fixed).unwrap_or_default();
    let kill = Kill::Expired {
        ids: candidates,
        cutoff,
        ttl_factor: 1.0 + slack.per_lease,
    };
    let first = revs.changes.last + 1;
    let dead = tx
        .kill_rows(kill, DeathReason::LeaseExpired, at, first)
        .await?;
    revs.extend(dead);
    let (kept, store_now) = tx.live_beats(candidates).await?;
    let read = tokio::time::Instant::now();
    let renewed = kept
        .into_iter()
        .map(|(instance_id, at)| StoredBeat {
            instance_id,
            at,
            local: super::local_instant(read, store_now, at),
        })
        .collect();
    Ok(Expired {
        changes: revs.finish(tx).await?,
        renewed,
    })
}

/// Garbage collection, first step, under the revision lock (so no change still being
/// committed can fall below it): raises the compaction horizon to the newest change older
/// than `retention` (database time), and in the same transaction collects the card versions
/// it leaves unserved (see [`WriteTx::collect_cards`]): the new horizon and what was
/// collected, or `None`. The rows below it are deleted afterwards, outside the lock.
pub(crate) async fn raise_horizon(
    tx: &mut impl WriteTx,
    retention: Duration,
) -> Result<Option<(i64, ChangeSet)>, StoreError> {
    let (mut revs, at) = Revisions::lock(tx).await?;
    let Some(h) = tx.log_before(retention).await? else {
        return Ok(None);
    };
    let horizon = tx.raise_horizon(h).await?;
    let collected = tx.collect_cards(horizon, revs.changes.last + 1, at).await?;
    revs.changes.last += collected.len() as i64;
    revs.changes.cards = collected;
    Ok(Some((horizon, revs.finish(tx).await?)))
}

/// A version of an agent's card, to be stored now.
fn stored_card(namespace: &str, logical_id: &str, card: Card, at: DateTime<Utc>) -> StoredCard {
    StoredCard {
        namespace: namespace.to_string(),
        logical_id: logical_id.to_string(),
        digest: card.digest.clone(),
        kind: card.kind,
        card: Some(card),
        published_at: at,
        revision: 0,
    }
}

/// Stores `card` at the next revision and records it.
async fn put_card(
    tx: &mut impl WriteTx,
    revs: &mut Revisions,
    mut card: StoredCard,
) -> Result<StoredCard, StoreError> {
    card.revision = revs.next();
    tx.put_cards(std::slice::from_ref(&card)).await?;
    revs.changes.cards.push(card.clone());
    Ok(card)
}

/// Publishes a card for `logical_id` in `namespace` (created if new): stored, or published
/// again (the agent's latest from now on), at a new revision.
pub(crate) async fn publish_card(
    tx: &mut impl WriteTx,
    namespace: &str,
    logical_id: &str,
    card: Card,
) -> Result<Published, StoreError> {
    let (mut revs, at) = Revisions::lock(tx).await?;
    if tx.namespace(namespace).await?.is_none() {
        let ns = Namespace {
            name: namespace.to_string(),
            current_epoch: Uuid::now_v7(),
            epoch_started_at: at,
            created_at: at,
            revision: revs.next(),
        };
        tx.insert_namespace(&ns).await?;
        revs.changes.namespaces.push(ns);
    }
    let card = put_card(tx, &mut revs, stored_card(namespace, logical_id, card, at)).await?;
    Ok(Published {
        card,
        changes: revs.finish(tx).await?,
    })
}
