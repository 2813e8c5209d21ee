//! Agent cards on Postgres: the versions of each agent's card (`agent_card`), stored, published
//! again, read back and collected.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use crate::domain::StoredCard;
use crate::storage::StoreError;
use crate::storage::card_rows::CardRow;
use crate::storage::ops::CardKey;

pub(super) const CARD_COLUMNS: &str =
    "namespace, logical_id, digest, kind, card, collected, published_at, revision";

/// One row of `agent_card`, its bytes left to be read as a card ([`CardRow::parse`]).
pub(super) fn card_from_row(row: &PgRow) -> Result<CardRow, StoreError> {
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
        published_at: row.try_get("published_at")?,
        revision: row.try_get("revision")?,
    })
}

/// Which of `keys` are stored versions, with whether each is collected: one statement.
pub(super) async fn states(
    tx: &mut PgConnection,
    keys: &[CardKey],
) -> Result<Vec<(CardKey, bool)>, StoreError> {
    let column = |f: fn(&CardKey) -> &String| keys.iter().map(f).cloned().collect::<Vec<_>>();
    let rows = sqlx::query(
        "SELECT c.namespace, c.logical_id, c.digest, c.collected FROM agent_card c \
         JOIN UNNEST($1::text[], $2::text[], $3::text[]) AS k (namespace, logical_id, digest) \
           ON c.namespace = k.namespace AND c.logical_id = k.logical_id AND c.digest = k.digest",
    )
    .bind(column(|k| &k.0))
    .bind(column(|k| &k.1))
    .bind(column(|k| &k.2))
    .fetch_all(tx)
    .await?;
    rows.iter()
        .map(|r| {
            let key = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
            Ok((key, r.try_get(3)?))
        })
        .collect()
}

/// Stores versions (new, revived, or published again) as given, no two of the same key: one
/// statement.
pub(super) async fn put(tx: &mut PgConnection, cards: &[StoredCard]) -> Result<(), StoreError> {
    let mut bodies = Vec::with_capacity(cards.len());
    for card in cards {
        let Some(body) = &card.card else {
            return Err(StoreError::Internal(
                "a collected card cannot be put".into(),
            ));
        };
        bodies.push(body);
    }
    let text = |f: &dyn Fn(&StoredCard) -> String| cards.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO agent_card (namespace, logical_id, digest, kind, card, name, version, \
                                 published_at, revision, collected) \
         SELECT *, false FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], \
                                     $5::bytea[], $6::text[], $7::text[], $8::timestamptz[], \
                                     $9::int8[]) \
         ON CONFLICT (namespace, logical_id, digest) DO UPDATE SET kind = excluded.kind, \
             card = excluded.card, name = excluded.name, version = excluded.version, \
             published_at = excluded.published_at, revision = excluded.revision, \
             collected = false",
    )
    .bind(text(&|c| c.namespace.clone()))
    .bind(text(&|c| c.logical_id.clone()))
    .bind(text(&|c| c.digest.clone()))
    .bind(text(&|c| c.kind.as_str().to_string()))
    .bind(bodies.iter().map(|b| &b.bytes[..]).collect::<Vec<_>>())
    .bind(bodies.iter().map(|b| b.summary.name()).collect::<Vec<_>>())
    .bind(
        bodies
            .iter()
            .map(|b| b.summary.version())
            .collect::<Vec<_>>(),
    )
    .bind(cards.iter().map(|c| c.published_at).collect::<Vec<_>>())
    .bind(cards.iter().map(|c| c.revision).collect::<Vec<_>>())
    .execute(tx)
    .await?;
    Ok(())
}

/// Collects, in one statement, the versions published at or below `horizon` that no retained
/// instance serves (none that is not dead, nor one whose death the horizon has not reached)
/// and that are not their agent's latest: their bytes go, and each takes a revision from
/// `first` on, so replicas learn it. Returns the tombstones.
pub(super) async fn collect(
    tx: &mut PgConnection,
    horizon: i64,
    first: i64,
    at: DateTime<Utc>,
) -> Result<Vec<StoredCard>, StoreError> {
    let sql = format!(
        "WITH latest AS ( \
             SELECT namespace, logical_id, max(revision) AS revision FROM agent_card \
             WHERE NOT collected GROUP BY namespace, logical_id), \
         c AS ( \
             SELECT a.namespace, a.logical_id, a.digest FROM agent_card a \
             JOIN latest l ON l.namespace = a.namespace AND l.logical_id = a.logical_id \
             WHERE NOT a.collected AND a.revision <= $1 AND a.revision < l.revision \
               AND NOT EXISTS (SELECT 1 FROM registry_instance i \
                               WHERE i.namespace = a.namespace AND i.logical_id = a.logical_id \
                                 AND i.card_digest = a.digest \
                                 AND (i.status <> 'DEAD' OR i.revision > $1))), \
         n AS (SELECT namespace, logical_id, digest, \
                      $2::int8 + row_number() OVER (ORDER BY namespace, logical_id, digest) - 1 \
                      AS revision FROM c) \
         UPDATE agent_card SET collected = true, card = ''::bytea, revision = n.revision, \
                published_at = $3 \
         FROM n WHERE agent_card.namespace = n.namespace \
           AND agent_card.logical_id = n.logical_id AND agent_card.digest = n.digest \
         RETURNING {}",
        CARD_COLUMNS
            .split(", ")
            .map(|c| format!("agent_card.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let rows = sqlx::query(&sql)
        .bind(horizon)
        .bind(first)
        .bind(at)
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
pub(super) async fn purge_round(pool: &sqlx::PgPool, horizon: i64) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "DELETE FROM agent_card WHERE (namespace, logical_id, digest) IN \
             (SELECT namespace, logical_id, digest FROM agent_card \
              WHERE collected AND revision <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
    )
    .bind(horizon)
    .bind(crate::storage::PURGE_BATCH)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(done)
}
