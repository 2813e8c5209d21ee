//! Reading and collecting the change log on Postgres.

use super::cards::{self, CARD_COLUMNS, card_from_row};
use super::{
    INSTANCE_COLUMNS, NAMESPACE_COLUMNS, PostgresStore, instance_from_row, namespace_from_row,
};
use crate::domain::ChangeSet;
use crate::storage::{Read, StoreError};

impl PostgresStore {
    /// The change log after `after`, or (`snapshot`) every current row, with the counter and
    /// the horizon, all from one consistent snapshot.
    pub(in crate::storage) async fn read_changes(
        &self,
        after: i64,
        read: Read,
    ) -> Result<ChangeSet, StoreError> {
        let mut tx = self.pool.begin().await?;
        // One snapshot for the counter and the rows: everything at or below `last` is in it.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await?;
        if read.is_snapshot() {
            let ms = self.timeout.as_millis() * crate::storage::SNAPSHOT_TIMEOUT_FACTOR as u128;
            sqlx::query(&format!("SET LOCAL statement_timeout = {ms}"))
                .execute(&mut *tx)
                .await?;
        }
        let (mut changes, cards) = crate::storage::log::read_log!(tx, read, after, "$1", "$2");
        tx.commit().await?;
        // Read as cards after the transaction ends: a large catalog takes seconds to parse.
        changes.cards = crate::storage::card_rows::parse_all(cards, changes.last).await?;
        Ok(changes)
    }

    /// Deletes the change log through `horizon` and the dead instances dead by then, a batch
    /// per statement, outside any write transaction. Returns the instance rows deleted.
    pub(in crate::storage) async fn purge_through(&self, horizon: i64) -> Result<u64, StoreError> {
        crate::storage::log::purge(|| self.purge_round(horizon)).await
    }

    /// One batch of each: (log rows, dead instances) deleted.
    async fn purge_round(&self, horizon: i64) -> Result<(u64, u64), StoreError> {
        let log = sqlx::query(
            "DELETE FROM registry_change WHERE revision IN \
                 (SELECT revision FROM registry_change WHERE revision <= $1 \
                  ORDER BY revision LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(horizon)
        .bind(crate::storage::PURGE_BATCH)
        .execute(&self.pool)
        .await?
        .rows_affected();
        let dead = sqlx::query(
            "DELETE FROM registry_instance WHERE instance_id IN \
                 (SELECT instance_id FROM registry_instance \
                  WHERE status = 'DEAD' AND revision <= $1 \
                  ORDER BY instance_id LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(horizon)
        .bind(crate::storage::PURGE_BATCH)
        .execute(&self.pool)
        .await?
        .rows_affected();
        // Card tombstones past the horizon count with the log: every replica has seen them.
        let tombstones = cards::purge_round(&self.pool, horizon).await?;
        Ok((log + tombstones, dead))
    }
}
