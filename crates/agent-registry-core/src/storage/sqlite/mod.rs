//! The SQLite backend: the zero-config default, one file, one replica.
//!
//! Writes go through a pool of exactly one connection, so SQLite's single-writer rule never
//! surfaces as SQLITE_BUSY; reads use a separate read-only pool (WAL lets them run alongside).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use tokio::time::Instant;
use uuid::Uuid;

use crate::domain::{
    ChangeSet, DeathReason, Instance, InstanceStatus, Namespace, StoreClock, StoredCard, now,
};
use crate::storage::ops::{CardKey, Kill, WriteTx};
use crate::storage::{Flushed, StoreError, StoreOptions, StoreStats, StoredBeat};

mod cards;
mod log;

const INSTANCE_COLUMNS: &str = "instance_id, namespace, logical_id, epoch, status, agent_type, \
    version, endpoint, capabilities, labels, actor_name, node_id, ip_address, pid, lease_ttl, \
    started_at, last_heartbeat, stopped_at, death_reason, registered_by, card_digest, revision";
const NAMESPACE_COLUMNS: &str = "name, current_epoch, epoch_started_at, created_at, revision";

/// The file has no clock of its own: times are this process's ([`now`]), and the store clock's
/// offset stays zero.
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    max_readers: u32,
    stats: StoreStats,
    clock: Arc<StoreClock>,
}

impl SqliteStore {
    pub async fn open(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        let base = SqliteConnectOptions::from_str(url)?
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before the reply, even across a power cut.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        // A local file has no reason to recycle connections; no reaper timers either.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(options.timeout)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(base.clone().create_if_missing(true))
            .await?;
        // Migrations newer than this build (a rollback) are left alone: they stay additive.
        let mut migrator = sqlx::migrate!("../../migrations/sqlite");
        migrator.set_ignore_missing(true);
        migrator.run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.timeout)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(base.read_only(true))
            .await?;
        Ok(Self {
            writer,
            reader,
            max_readers: options.max_connections.max(1),
            stats: StoreStats::default(),
            clock: Arc::default(),
        })
    }

    async fn begin(&self) -> Result<SqliteTx, StoreError> {
        Ok(SqliteTx(self.writer.begin().await?))
    }
}

struct SqliteTx(Transaction<'static, Sqlite>);

impl SqliteTx {
    async fn commit(self) -> Result<(), StoreError> {
        Ok(self.0.commit().await?)
    }
}

fn corrupt(what: &str, value: impl std::fmt::Debug) -> StoreError {
    StoreError::Internal(format!("unexpected {what} {value:?} in the SQLite store"))
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn time(row: &SqliteRow, column: &str) -> Result<DateTime<Utc>, StoreError> {
    let v: i64 = row.try_get(column)?;
    DateTime::from_timestamp_micros(v).ok_or_else(|| corrupt(column, v))
}

fn uuid(row: &SqliteRow, column: &str) -> Result<Uuid, StoreError> {
    let v: String = row.try_get(column)?;
    Uuid::parse_str(&v).map_err(|_| corrupt(column, v))
}

fn json<T: serde::de::DeserializeOwned>(row: &SqliteRow, column: &str) -> Result<T, StoreError> {
    let v: String = row.try_get(column)?;
    serde_json::from_str(&v).map_err(|_| corrupt(column, v))
}

fn instance_from_row(row: &SqliteRow) -> Result<Instance, StoreError> {
    let status: String = row.try_get("status")?;
    let death: Option<String> = row.try_get("death_reason")?;
    let stopped: Option<i64> = row.try_get("stopped_at")?;
    let lease_ms: i64 = row.try_get("lease_ttl")?;
    Ok(Instance {
        instance_id: uuid(row, "instance_id")?,
        namespace: row.try_get("namespace")?,
        logical_id: row.try_get("logical_id")?,
        epoch: uuid(row, "epoch")?,
        status: InstanceStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
        agent_type: row.try_get("agent_type")?,
        version: row.try_get("version")?,
        endpoint: row.try_get("endpoint")?,
        capabilities: json(row, "capabilities")?,
        labels: json(row, "labels")?,
        actor_name: row.try_get("actor_name")?,
        registered_by: row.try_get("registered_by")?,
        node_id: row.try_get("node_id")?,
        ip_address: row.try_get("ip_address")?,
        pid: row.try_get("pid")?,
        lease_ttl: Duration::from_millis(lease_ms.max(0) as u64),
        started_at: time(row, "started_at")?,
        last_heartbeat: time(row, "last_heartbeat")?,
        stopped_at: match stopped {
            None => None,
            Some(v) => {
                Some(DateTime::from_timestamp_micros(v).ok_or_else(|| corrupt("stopped_at", v))?)
            }
        },
        death_reason: match death {
            None => None,
            Some(d) => Some(DeathReason::parse(&d).ok_or_else(|| corrupt("death_reason", &d))?),
        },
        card_digest: row.try_get("card_digest")?,
        revision: row.try_get("revision")?,
    })
}

fn namespace_from_row(row: &SqliteRow) -> Result<Namespace, StoreError> {
    Ok(Namespace {
        name: row.try_get("name")?,
        current_epoch: uuid(row, "current_epoch")?,
        epoch_started_at: time(row, "epoch_started_at")?,
        created_at: time(row, "created_at")?,
        revision: row.try_get("revision")?,
    })
}

#[async_trait]
impl WriteTx for SqliteTx {
    async fn lock_revision(&mut self) -> Result<(i64, DateTime<Utc>), StoreError> {
        // The single-connection write pool already serializes writers.
        let v = sqlx::query_scalar("SELECT value FROM registry_revision")
            .fetch_one(&mut *self.0)
            .await?;
        Ok((v, now()))
    }

    async fn save_revision(&mut self, revision: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE registry_revision SET value = ?")
            .bind(revision)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn log_before(&mut self, retention: Duration) -> Result<Option<i64>, StoreError> {
        let h = sqlx::query_scalar(
            "SELECT max(revision) FROM registry_change WHERE changed_at < CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER) - ?",
        )
        .bind(retention.as_micros().min(i64::MAX as u128) as i64)
        .fetch_one(&mut *self.0)
        .await?;
        Ok(h)
    }

    async fn raise_horizon(&mut self, horizon: i64) -> Result<i64, StoreError> {
        let h = sqlx::query_scalar(
            "UPDATE registry_revision SET compacted = max(compacted, ?) RETURNING compacted",
        )
        .bind(horizon)
        .fetch_one(&mut *self.0)
        .await?;
        Ok(h)
    }

    async fn namespace(&mut self, name: &str) -> Result<Option<Namespace>, StoreError> {
        let sql = format!("SELECT {NAMESPACE_COLUMNS} FROM namespace WHERE name = ?");
        let row = sqlx::query(&sql)
            .bind(name)
            .fetch_optional(&mut *self.0)
            .await?;
        row.as_ref().map(namespace_from_row).transpose()
    }

    async fn insert_namespace(&mut self, ns: &Namespace) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO namespace (name, current_epoch, epoch_started_at, created_at, revision) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&ns.name)
        .bind(ns.current_epoch.to_string())
        .bind(micros(ns.epoch_started_at))
        .bind(micros(ns.created_at))
        .bind(ns.revision)
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn update_namespace(&mut self, ns: &Namespace) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE namespace SET current_epoch = ?, epoch_started_at = ?, revision = ? WHERE name = ?",
        )
        .bind(ns.current_epoch.to_string())
        .bind(micros(ns.epoch_started_at))
        .bind(ns.revision)
        .bind(&ns.name)
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn instance(&mut self, id: Uuid) -> Result<Option<Instance>, StoreError> {
        let sql = format!("SELECT {INSTANCE_COLUMNS} FROM registry_instance WHERE instance_id = ?");
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(&mut *self.0)
            .await?;
        row.as_ref().map(instance_from_row).transpose()
    }

    async fn instances(&mut self, ids: &[Uuid]) -> Result<Vec<Instance>, StoreError> {
        let sql = format!(
            "SELECT {INSTANCE_COLUMNS} FROM registry_instance \
             WHERE instance_id IN (SELECT value FROM json_each(?))"
        );
        let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        let rows = sqlx::query(&sql)
            .bind(to_json(&ids))
            .fetch_all(&mut *self.0)
            .await?;
        rows.iter().map(instance_from_row).collect()
    }

    async fn insert_instances(&mut self, rows: &[Instance]) -> Result<(), StoreError> {
        // One multi-row INSERT per chunk; SQLite allows 32 766 bound values per statement.
        for chunk in rows.chunks(1000) {
            let mut q = sqlx::QueryBuilder::<Sqlite>::new(
                "INSERT INTO registry_instance (instance_id, namespace, logical_id, epoch, status, \
                 agent_type, version, endpoint, capabilities, labels, actor_name, node_id, \
                 ip_address, pid, lease_ttl, started_at, last_heartbeat, stopped_at, death_reason, \
                 revision, registered_by, card_digest) ",
            );
            q.push_values(chunk, |mut b, i| {
                b.push_bind(i.instance_id.to_string())
                    .push_bind(i.namespace.clone())
                    .push_bind(i.logical_id.clone())
                    .push_bind(i.epoch.to_string())
                    .push_bind(i.status.as_str())
                    .push_bind(i.agent_type.clone())
                    .push_bind(i.version.clone())
                    .push_bind(i.endpoint.clone())
                    .push_bind(to_json(&i.capabilities))
                    .push_bind(to_json(&i.labels))
                    .push_bind(i.actor_name.clone())
                    .push_bind(i.node_id.clone())
                    .push_bind(i.ip_address.clone())
                    .push_bind(i.pid)
                    .push_bind(i.lease_ttl.as_millis() as i64)
                    .push_bind(micros(i.started_at))
                    .push_bind(micros(i.last_heartbeat))
                    .push_bind(i.stopped_at.map(micros))
                    .push_bind(i.death_reason.map(DeathReason::as_str))
                    .push_bind(i.revision)
                    .push_bind(i.registered_by.clone())
                    .push_bind(i.card_digest.clone());
            });
            q.build().execute(&mut *self.0).await?;
        }
        Ok(())
    }

    async fn update_instance(&mut self, i: &Instance) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE registry_instance SET status = ?, stopped_at = ?, death_reason = ?, \
             last_heartbeat = ?, revision = ? WHERE instance_id = ?",
        )
        .bind(i.status.as_str())
        .bind(i.stopped_at.map(micros))
        .bind(i.death_reason.map(DeathReason::as_str))
        .bind(micros(i.last_heartbeat))
        .bind(i.revision)
        .bind(i.instance_id.to_string())
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn kill_rows(
        &mut self,
        kill: Kill<'_>,
        reason: DeathReason,
        at: DateTime<Utc>,
        first: i64,
    ) -> Result<Vec<Instance>, StoreError> {
        let select = match kill {
            Kill::Expired { .. } => {
                "SELECT instance_id, started_at FROM registry_instance \
                 WHERE instance_id IN (SELECT value FROM json_each(?4)) AND status <> 'DEAD' \
                   AND last_heartbeat + CAST(lease_ttl * 1000 * ?6 AS INTEGER) <= ?5"
            }
            Kill::Fenced { .. } => {
                "SELECT instance_id, started_at FROM registry_instance \
                 WHERE namespace = ?4 AND epoch <> ?5 AND status <> 'DEAD' \
                 ORDER BY instance_id LIMIT ?6"
            }
        };
        let sql = format!(
            "WITH c AS ({select}), \
                  n AS (SELECT instance_id AS id, \
                               ?1 + row_number() OVER (ORDER BY started_at, instance_id) - 1 AS rev \
                        FROM c) \
             UPDATE registry_instance SET status = 'DEAD', death_reason = ?2, stopped_at = ?3, \
                    revision = n.rev \
             FROM n WHERE registry_instance.instance_id = n.id \
             RETURNING {INSTANCE_COLUMNS}"
        );
        let query = sqlx::query(&sql)
            .bind(first)
            .bind(reason.as_str())
            .bind(micros(at));
        let query = match kill {
            Kill::Expired {
                ids,
                cutoff,
                ttl_factor,
            } => {
                let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
                query
                    .bind(to_json(&ids))
                    .bind(micros(cutoff))
                    .bind(ttl_factor)
            }
            Kill::Fenced {
                namespace,
                epoch,
                limit,
            } => query.bind(namespace).bind(epoch.to_string()).bind(limit),
        };
        let rows = query.fetch_all(&mut *self.0).await?;
        let mut dead: Vec<Instance> = rows
            .iter()
            .map(instance_from_row)
            .collect::<Result<_, _>>()?;
        dead.sort_unstable_by_key(|i| i.revision);
        Ok(dead)
    }

    async fn card_states(&mut self, keys: &[CardKey]) -> Result<Vec<(CardKey, bool)>, StoreError> {
        // In process: a statement per key costs no round trip.
        let mut out = Vec::new();
        for key in keys {
            if let Some(collected) = cards::state(&mut self.0, &key.0, &key.1, &key.2).await? {
                out.push((key.clone(), collected));
            }
        }
        Ok(out)
    }

    async fn put_cards(&mut self, cards: &[StoredCard]) -> Result<(), StoreError> {
        for card in cards {
            cards::put(&mut self.0, card).await?;
        }
        Ok(())
    }

    async fn collect_cards(
        &mut self,
        horizon: i64,
        first: i64,
        at: DateTime<Utc>,
    ) -> Result<Vec<StoredCard>, StoreError> {
        cards::collect(&mut self.0, horizon, first, at).await
    }

    async fn live_beats(
        &mut self,
        ids: &[Uuid],
    ) -> Result<(Vec<(Uuid, DateTime<Utc>)>, DateTime<Utc>), StoreError> {
        let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        let rows = sqlx::query(
            "SELECT instance_id, last_heartbeat FROM registry_instance \
             WHERE instance_id IN (SELECT value FROM json_each(?)) AND status <> 'DEAD'",
        )
        .bind(to_json(&ids))
        .fetch_all(&mut *self.0)
        .await?;
        let beats = rows
            .iter()
            .map(|r| Ok((uuid(r, "instance_id")?, time(r, "last_heartbeat")?)))
            .collect::<Result<_, StoreError>>()?;
        Ok((beats, now()))
    }
}

/// JSON text for the list and map columns.
fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("strings and maps of strings always encode")
}

// Register, transition, advance_epoch and expire come from the shared macro.
crate::storage::impl_store!(SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn clock(&self) -> &Arc<StoreClock> {
        &self.clock
    }

    fn pool_full(&self) -> bool {
        let full = |p: &SqlitePool, max: u32| p.size() >= max && p.num_idle() == 0;
        full(&self.writer, 1) || full(&self.reader, self.max_readers)
    }

    async fn flush_heartbeats(&self, beats: &[(Uuid, Instant)]) -> Result<Flushed, StoreError> {
        let mut conn = self.writer.acquire().await?;
        let (measured, store_time) = (Instant::now(), now());
        let flushed = |rows| Flushed {
            rows,
            store_time,
            measured,
        };
        if beats.is_empty() {
            return Ok(flushed(0));
        }
        // One statement whatever the batch size: the batch travels as one JSON array.
        let batch: Vec<(String, i64)> = beats
            .iter()
            .map(|(id, b)| (id.to_string(), micros(flushed(0).stored(*b))))
            .collect();
        let done = sqlx::query(
            "UPDATE registry_instance SET last_heartbeat = b.t \
             FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS t \
                   FROM json_each(?)) AS b \
             WHERE registry_instance.instance_id = b.id AND registry_instance.status <> 'DEAD' \
               AND registry_instance.last_heartbeat < b.t",
        )
        .bind(to_json(&batch))
        .execute(&mut *conn)
        .await?;
        self.stats.count_flush();
        Ok(flushed(done.rows_affected()))
    }

    fn stats(&self) -> &StoreStats {
        &self.stats
    }

    async fn heartbeats(&self, ids: &[Uuid]) -> Result<Vec<StoredBeat>, StoreError> {
        let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        let mut conn = self.reader.acquire().await?;
        let (read, store_now) = (Instant::now(), now());
        let rows = sqlx::query(
            "SELECT instance_id, last_heartbeat FROM registry_instance \
             WHERE instance_id IN (SELECT value FROM json_each(?)) AND status <> 'DEAD'",
        )
        .bind(to_json(&ids))
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|r| {
                let at = time(r, "last_heartbeat")?;
                Ok(StoredBeat {
                    instance_id: uuid(r, "instance_id")?,
                    at,
                    local: crate::storage::local_instant(read, store_now, at),
                })
            })
            .collect()
    }

    async fn changes_since(&self, after: i64, limit: i64) -> Result<ChangeSet, StoreError> {
        self.read_changes(after, crate::storage::Read::Log(limit.max(1))).await
    }

    async fn changes_page(&self, after: i64, limit: i64) -> Result<ChangeSet, StoreError> {
        self.read_changes(after, crate::storage::Read::Page(limit.max(1))).await
    }

    async fn snapshot(&self) -> Result<ChangeSet, StoreError> {
        self.read_changes(0, crate::storage::Read::Snapshot).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn probe_write(&self) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO registry_probe (id, at) VALUES (1, ?) \
             ON CONFLICT (id) DO UPDATE SET at = excluded.at",
        )
        .bind(micros(now()))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
});
