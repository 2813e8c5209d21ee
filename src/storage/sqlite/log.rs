//! Reading and collecting the change log on SQLite.

use sqlx::Row;

use super::{
    INSTANCE_COLUMNS, NAMESPACE_COLUMNS, SqliteStore, instance_from_row, namespace_from_row,
};
use crate::domain::ChangeSet;
use crate::storage::{Read, StoreError};

impl SqliteStore {
    /// The change log after `after`, or (`snapshot`) every current row, with the counter and
    /// the horizon, all from one consistent snapshot.
    pub(in crate::storage) async fn read_changes(
        &self,
        after: i64,
        read: Read,
    ) -> Result<ChangeSet, StoreError> {
        let snapshot = matches!(read, Read::Snapshot);
        // A read transaction in WAL mode sees one snapshot from its first statement on.
        let mut tx = self.reader.begin().await?;
        let (last, horizon): (i64, i64) =
            sqlx::query_as("SELECT value, compacted FROM registry_revision")
                .fetch_one(&mut *tx)
                .await?;
        if !snapshot && after < horizon {
            return Err(StoreError::Compacted { horizon });
        }
        let namespaces = match read {
            // A page is for replaying instance changes (Watch): no namespaces.
            Read::Page(_) => Vec::new(),
            _ => {
                let sql = format!(
                    "SELECT {NAMESPACE_COLUMNS} FROM namespace WHERE revision > ? ORDER BY revision"
                );
                sqlx::query(&sql).bind(after).fetch_all(&mut *tx).await?
            }
        };
        let table = if snapshot {
            "registry_instance"
        } else {
            "registry_change"
        };
        let limit = match read {
            Read::Page(n) | Read::Log(n) => n,
            _ => i64::MAX,
        };
        let sql = format!(
            "SELECT {INSTANCE_COLUMNS} FROM {table} WHERE revision > ? ORDER BY revision LIMIT ?"
        );
        let instances = sqlx::query(&sql)
            .bind(after)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        // A full page ends at its last row; a short one reaches the end of the log.
        let last = match instances.last() {
            Some(row) if instances.len() as i64 == limit => row.try_get("revision")?,
            _ => last,
        };
        tx.commit().await?;
        Ok(ChangeSet {
            first: after + 1,
            last,
            horizon,
            namespaces: namespaces
                .iter()
                .map(namespace_from_row)
                .collect::<Result<_, _>>()?,
            instances: instances
                .iter()
                .map(instance_from_row)
                .collect::<Result<_, _>>()?,
        })
    }

    /// Deletes the change log through `horizon` and the dead instances dead by then, a batch
    /// per statement, each its own short write. Returns the instance rows deleted.
    pub(in crate::storage) async fn purge_through(&self, horizon: i64) -> Result<u64, StoreError> {
        let mut deleted = 0;
        loop {
            let log = sqlx::query(
                "DELETE FROM registry_change WHERE revision IN \
                 (SELECT revision FROM registry_change WHERE revision <= ? \
                  ORDER BY revision LIMIT ?)",
            )
            .bind(horizon)
            .bind(crate::storage::PURGE_BATCH)
            .execute(&self.writer)
            .await?
            .rows_affected();
            let dead = sqlx::query(
                "DELETE FROM registry_instance WHERE instance_id IN \
                 (SELECT instance_id FROM registry_instance \
                  WHERE status = 'DEAD' AND revision <= ? LIMIT ?)",
            )
            .bind(horizon)
            .bind(crate::storage::PURGE_BATCH)
            .execute(&self.writer)
            .await?
            .rows_affected();
            deleted += dead;
            if log < crate::storage::PURGE_BATCH as u64 && dead < crate::storage::PURGE_BATCH as u64
            {
                return Ok(deleted);
            }
        }
    }
}
