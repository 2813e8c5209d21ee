//! Agent cards on SQLite, as on Postgres (`postgres/cards.rs`): times in microseconds, the
//! card a BLOB.

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use super::{micros, time};
use crate::domain::StoredCard;
use crate::storage::StoreError;
use crate::storage::card_rows::CardRow;

pub(super) const CARD_COLUMNS: &str =
    "namespace, logical_id, digest, kind, card, collected, published_at, revision";

/// One row of `agent_card`, its bytes left to be read as a card ([`CardRow::parse`]).
pub(super) fn card_from_row(row: &SqliteRow) -> Result<CardRow, StoreError> {
    let collected: bool = row.try_get("collected")?;
    Ok(CardRow {
        namespace: row.try_get("namespace")?,
        logical_id: row.try_get("logical_id")?,
        digest: row.try_get("digest")?,
        kind: row.try_get("kind")?,
        bytes: match collected {
            true => None,
            false => Some(row.try_get("card")?),
        },
        published_at: time(row, "published_at")?,
        revision: row.try_get("revision")?,
    })
}

/// `Some(collected)` when a version `digest` of the agent's card is stored.
pub(super) async fn state(
    tx: &mut SqliteConnection,
    namespace: &str,
    logical_id: &str,
    digest: &str,
) -> Result<Option<bool>, StoreError> {
    let row = sqlx::query_scalar(
        "SELECT collected FROM agent_card WHERE namespace = ? AND logical_id = ? AND digest = ?",
    )
    .bind(namespace)
    .bind(logical_id)
    .bind(digest)
    .fetch_optional(tx)
    .await?;
    Ok(row)
}

/// Stores a version (new, revived, or published again) as `card` says.
pub(super) async fn put(tx: &mut SqliteConnection, card: &StoredCard) -> Result<(), StoreError> {
    let Some(body) = &card.card else {
        return Err(StoreError::Internal(
            "a collected card cannot be put".into(),
        ));
    };
    sqlx::query(
        "INSERT INTO agent_card (namespace, logical_id, digest, kind, card, name, version, \
                                 published_at, revision, collected) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0) \
         ON CONFLICT (namespace, logical_id, digest) DO UPDATE SET kind = excluded.kind, \
             card = excluded.card, name = excluded.name, version = excluded.version, \
             published_at = excluded.published_at, revision = excluded.revision, collected = 0",
    )
    .bind(&card.namespace)
    .bind(&card.logical_id)
    .bind(&card.digest)
    .bind(card.kind.as_str())
    .bind(&body.bytes[..])
    .bind(body.summary.name())
    .bind(body.summary.version())
    .bind(micros(card.published_at))
    .bind(card.revision)
    .execute(tx)
    .await?;
    Ok(())
}

/// Collects what Postgres's `collect` does (see there): the versions at or below `horizon` no
/// retained instance serves, other than each agent's latest, revisions from `first` on.
pub(super) async fn collect(
    tx: &mut SqliteConnection,
    horizon: i64,
    first: i64,
    at: DateTime<Utc>,
) -> Result<Vec<StoredCard>, StoreError> {
    let sql = format!(
        "WITH latest AS ( \
             SELECT namespace, logical_id, max(revision) AS revision FROM agent_card \
             WHERE collected = 0 GROUP BY namespace, logical_id), \
         c AS ( \
             SELECT a.namespace, a.logical_id, a.digest FROM agent_card a \
             JOIN latest l ON l.namespace = a.namespace AND l.logical_id = a.logical_id \
             WHERE a.collected = 0 AND a.revision <= ?1 AND a.revision < l.revision \
               AND NOT EXISTS (SELECT 1 FROM registry_instance i \
                               WHERE i.namespace = a.namespace AND i.logical_id = a.logical_id \
                                 AND i.card_digest = a.digest \
                                 AND (i.status <> 'DEAD' OR i.revision > ?1))), \
         n AS (SELECT namespace, logical_id, digest, \
                      ?2 + row_number() OVER (ORDER BY namespace, logical_id, digest) - 1 \
                      AS revision FROM c) \
         UPDATE agent_card SET collected = 1, card = X'', revision = n.revision, \
                published_at = ?3 \
         FROM n WHERE agent_card.namespace = n.namespace \
           AND agent_card.logical_id = n.logical_id AND agent_card.digest = n.digest \
         RETURNING {CARD_COLUMNS}"
    );
    let rows = sqlx::query(&sql)
        .bind(horizon)
        .bind(first)
        .bind(micros(at))
        .fetch_all(tx)
        .await?;
    let mut out: Vec<StoredCard> = rows
        .iter()
        .map(|r| card_from_row(r)?.parse())
        .collect::<Result<_, _>>()?;
    out.sort_unstable_by_key(|c| c.revision);
    Ok(out)
}

/// Deletes one batch of tombstones at or below `horizon`; how many.
pub(super) async fn purge_round(
    writer: &sqlx::SqlitePool,
    horizon: i64,
) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "DELETE FROM agent_card WHERE rowid IN \
             (SELECT rowid FROM agent_card WHERE collected = 1 AND revision <= ? LIMIT ?)",
    )
    .bind(horizon)
    .bind(crate::storage::PURGE_BATCH)
    .execute(writer)
    .await?
    .rows_affected();
    Ok(done)
}
