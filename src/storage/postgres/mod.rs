//! The Postgres backend: the production source of truth, shared by every replica.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

use crate::domain::{ChangeSet, DeathReason, Instance, InstanceStatus, Namespace};
use crate::storage::ops::WriteTx;
use crate::storage::{StoreError, StoreOptions, StoreStats};

mod log;

const INSTANCE_COLUMNS: &str = "instance_id, namespace, logical_id, epoch, status, agent_type, \
    version, endpoint, capabilities, labels, actor_name, node_id, ip_address, pid, \
    (extract(epoch from lease_ttl) * 1000000)::int8 AS lease_ttl_us, started_at, last_heartbeat, \
    stopped_at, death_reason, registered_by, revision";
const NAMESPACE_COLUMNS: &str = "name, current_epoch, epoch_started_at, created_at, revision";

pub struct PostgresStore {
    pool: PgPool,
    stats: StoreStats,
}

impl PostgresStore {
    pub async fn open(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        let commit: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&pool)
            .await?;
        if commit == "off" {
            tracing::warn!(
                "synchronous_commit is off: an acknowledged registration can be lost if Postgres crashes"
            );
        }
        Ok(Self {
            pool,
            stats: StoreStats::default(),
        })
    }

    async fn begin(&self) -> Result<PgTx, StoreError> {
        Ok(PgTx(self.pool.begin().await?))
    }
}

struct PgTx(Transaction<'static, Postgres>);

impl PgTx {
    async fn commit(self) -> Result<(), StoreError> {
        Ok(self.0.commit().await?)
    }
}

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Internal(format!("unexpected {what} {value:?} in registry_instance"))
}

fn instance_from_row(row: &PgRow) -> Result<Instance, StoreError> {
    let status: String = row.try_get("status")?;
    let death: Option<String> = row.try_get("death_reason")?;
    let lease_us: i64 = row.try_get("lease_ttl_us")?;
    Ok(Instance {
        instance_id: row.try_get("instance_id")?,
        namespace: row.try_get("namespace")?,
        logical_id: row.try_get("logical_id")?,
        epoch: row.try_get("epoch")?,
        status: InstanceStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
        agent_type: row.try_get("agent_type")?,
        version: row.try_get("version")?,
        endpoint: row.try_get("endpoint")?,
        capabilities: row.try_get("capabilities")?,
        labels: row.try_get::<Json<_>, _>("labels")?.0,
        actor_name: row.try_get("actor_name")?,
        registered_by: row.try_get("registered_by")?,
        node_id: row.try_get("node_id")?,
        ip_address: row.try_get("ip_address")?,
        pid: row.try_get("pid")?,
        lease_ttl: Duration::from_micros(lease_us.max(0) as u64),
        started_at: row.try_get("started_at")?,
        last_heartbeat: row.try_get("last_heartbeat")?,
        stopped_at: row.try_get("stopped_at")?,
        death_reason: match death {
            None => None,
            Some(d) => Some(DeathReason::parse(&d).ok_or_else(|| corrupt("death_reason", &d))?),
        },
        revision: row.try_get("revision")?,
    })
}

fn namespace_from_row(row: &PgRow) -> Result<Namespace, StoreError> {
    Ok(Namespace {
        name: row.try_get("name")?,
        current_epoch: row.try_get("current_epoch")?,
        epoch_started_at: row.try_get("epoch_started_at")?,
        created_at: row.try_get("created_at")?,
        revision: row.try_get("revision")?,
    })
}

#[async_trait]
impl WriteTx for PgTx {
    async fn lock_revision(&mut self) -> Result<i64, StoreError> {
        let v = sqlx::query_scalar("SELECT value FROM registry_revision FOR UPDATE")
            .fetch_one(&mut *self.0)
            .await?;
        Ok(v)
    }

    async fn save_revision(&mut self, revision: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE registry_revision SET value = $1")
            .bind(revision)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn log_before(&mut self, retention: Duration) -> Result<Option<i64>, StoreError> {
        let h = sqlx::query_scalar(
            "SELECT max(revision) FROM registry_change WHERE changed_at < now() - $1 * interval '1 microsecond'",
        )
        .bind(retention.as_micros().min(i64::MAX as u128) as i64)
        .fetch_one(&mut *self.0)
        .await?;
        Ok(h)
    }

    async fn raise_horizon(&mut self, horizon: i64) -> Result<i64, StoreError> {
        let h = sqlx::query_scalar(
            "UPDATE registry_revision SET compacted = GREATEST(compacted, $1) RETURNING compacted",
        )
        .bind(horizon)
        .fetch_one(&mut *self.0)
        .await?;
        Ok(h)
    }

    async fn namespace(&mut self, name: &str) -> Result<Option<Namespace>, StoreError> {
        let sql = format!("SELECT {NAMESPACE_COLUMNS} FROM namespace WHERE name = $1");
        let row = sqlx::query(&sql)
            .bind(name)
            .fetch_optional(&mut *self.0)
            .await?;
        row.as_ref().map(namespace_from_row).transpose()
    }

    async fn insert_namespace(&mut self, ns: &Namespace) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO namespace (name, current_epoch, epoch_started_at, created_at, revision) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&ns.name)
        .bind(ns.current_epoch)
        .bind(ns.epoch_started_at)
        .bind(ns.created_at)
        .bind(ns.revision)
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn update_namespace(&mut self, ns: &Namespace) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE namespace SET current_epoch = $2, epoch_started_at = $3, revision = $4 \
             WHERE name = $1",
        )
        .bind(&ns.name)
        .bind(ns.current_epoch)
        .bind(ns.epoch_started_at)
        .bind(ns.revision)
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn instance(&mut self, id: Uuid) -> Result<Option<Instance>, StoreError> {
        // Locked: the flusher does not take the revision lock, and must not move a heartbeat
        // under a decision made on this row.
        let sql = format!(
            "SELECT {INSTANCE_COLUMNS} FROM registry_instance WHERE instance_id = $1 FOR UPDATE"
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&mut *self.0)
            .await?;
        row.as_ref().map(instance_from_row).transpose()
    }

    async fn instances(&mut self, ids: &[Uuid]) -> Result<Vec<Instance>, StoreError> {
        let sql = format!(
            "SELECT {INSTANCE_COLUMNS} FROM registry_instance WHERE instance_id = ANY($1) \
             ORDER BY instance_id FOR UPDATE"
        );
        let rows = sqlx::query(&sql).bind(ids).fetch_all(&mut *self.0).await?;
        rows.iter().map(instance_from_row).collect()
    }

    async fn insert_instances(&mut self, rows: &[Instance]) -> Result<(), StoreError> {
        // One statement: every column travels as an array and `unnest` turns them into rows.
        // Capabilities go as jsonb (arrays of text[] must be rectangular) and are unpacked.
        let texts =
            |f: fn(&Instance) -> &str| rows.iter().map(f).map(str::to_owned).collect::<Vec<_>>();
        let json = |v: serde_json::Result<serde_json::Value>| v.expect("strings always encode");
        sqlx::query(
            "INSERT INTO registry_instance (instance_id, namespace, logical_id, epoch, status, \
             agent_type, version, endpoint, capabilities, labels, actor_name, node_id, ip_address, \
             pid, lease_ttl, started_at, last_heartbeat, stopped_at, death_reason, revision, \
             registered_by) \
             SELECT u.id, u.ns, u.lid, u.epoch, u.status, u.agent_type, u.version, u.endpoint, \
                    ARRAY(SELECT c FROM jsonb_array_elements_text(u.caps) \
                          WITH ORDINALITY AS t(c, n) ORDER BY n), u.labels, u.actor, u.node, \
                    u.ip, u.pid, u.lease_us * interval '1 microsecond', u.started, u.last_hb, \
                    u.stopped, u.death, u.rev, u.owner \
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::text[], $6::text[], \
                         $7::text[], $8::text[], $9::jsonb[], $10::jsonb[], $11::text[], \
                         $12::text[], $13::text[], $14::int8[], $15::int8[], $16::timestamptz[], \
                         $17::timestamptz[], $18::timestamptz[], $19::text[], $20::int8[], \
                         $21::text[]) \
               AS u(id, ns, lid, epoch, status, agent_type, version, endpoint, caps, labels, \
                    actor, node, ip, pid, lease_us, started, last_hb, stopped, death, rev, owner)",
        )
        .bind(rows.iter().map(|i| i.instance_id).collect::<Vec<_>>())
        .bind(texts(|i| &i.namespace))
        .bind(texts(|i| &i.logical_id))
        .bind(rows.iter().map(|i| i.epoch).collect::<Vec<_>>())
        .bind(texts(|i| i.status.as_str()))
        .bind(texts(|i| &i.agent_type))
        .bind(texts(|i| &i.version))
        .bind(texts(|i| &i.endpoint))
        .bind(
            rows.iter()
                .map(|i| json(serde_json::to_value(&i.capabilities)))
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|i| json(serde_json::to_value(&i.labels)))
                .collect::<Vec<_>>(),
        )
        .bind(texts(|i| &i.actor_name))
        .bind(texts(|i| &i.node_id))
        .bind(texts(|i| &i.ip_address))
        .bind(rows.iter().map(|i| i.pid).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|i| i.lease_ttl.as_micros() as i64)
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|i| i.started_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|i| i.last_heartbeat).collect::<Vec<_>>())
        .bind(rows.iter().map(|i| i.stopped_at).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|i| i.death_reason.map(|d| d.as_str().to_owned()))
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|i| i.revision).collect::<Vec<_>>())
        .bind(texts(|i| &i.registered_by))
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn update_instance(&mut self, i: &Instance) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE registry_instance SET status = $2, stopped_at = $3, death_reason = $4, \
             last_heartbeat = GREATEST(last_heartbeat, $5), revision = $6 WHERE instance_id = $1",
        )
        .bind(i.instance_id)
        .bind(i.status.as_str())
        .bind(i.stopped_at)
        .bind(i.death_reason.map(DeathReason::as_str))
        .bind(i.last_heartbeat)
        .bind(i.revision)
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn stale_instances(
        &mut self,
        namespace: &str,
        epoch: Uuid,
    ) -> Result<Vec<Instance>, StoreError> {
        let sql = format!(
            "SELECT {INSTANCE_COLUMNS} FROM registry_instance \
             WHERE namespace = $1 AND epoch <> $2 AND status <> 'DEAD' \
             ORDER BY instance_id FOR UPDATE"
        );
        let rows = sqlx::query(&sql)
            .bind(namespace)
            .bind(epoch)
            .fetch_all(&mut *self.0)
            .await?;
        rows.iter().map(instance_from_row).collect()
    }
}

// Register, transition, advance_epoch and expire come from the shared macro.
crate::storage::impl_store!(PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn flush_heartbeats(&self, beats: &[(Uuid, DateTime<Utc>)]) -> Result<u64, StoreError> {
        if beats.is_empty() {
            return Ok(0);
        }
        let (ids, times): (Vec<Uuid>, Vec<DateTime<Utc>>) = beats.iter().copied().unzip();
        let done = sqlx::query(
            // Rows are locked in instance_id order first, the order every other writer uses,
            // so a flush never deadlocks with a sweep or an epoch advance. The batch is joined
            // as a relation, never tested with `= ANY($1)`: with 100 000 ids the generic plan of
            // that prepared statement joined the two row by row, quadratic (a flush of 100 000
            // rows was seen running for minutes). The update finds the locked rows by key, not by
            // `ctid`: a row another transaction changed while the lock waited is returned in
            // its new version, which the statement's snapshot cannot see by address.
            "WITH b AS (SELECT * FROM unnest($1::uuid[], $2::timestamptz[]) AS b(id, t)), \
                  locked AS (SELECT r.instance_id, b.t FROM registry_instance AS r \
                             JOIN b ON r.instance_id = b.id \
                             WHERE r.status <> 'DEAD' AND r.last_heartbeat < b.t \
                             ORDER BY r.instance_id FOR UPDATE OF r) \
             UPDATE registry_instance AS r SET last_heartbeat = locked.t FROM locked \
             WHERE r.instance_id = locked.instance_id \
               AND r.status <> 'DEAD' AND r.last_heartbeat < locked.t",
        )
        .bind(ids)
        .bind(times)
        .execute(&self.pool)
        .await?;
        self.stats.count_flush();
        Ok(done.rows_affected())
    }

    fn stats(&self) -> &StoreStats {
        &self.stats
    }

    async fn heartbeats(&self, ids: &[Uuid]) -> Result<Vec<(Uuid, DateTime<Utc>)>, StoreError> {
        let rows = sqlx::query_as(
            "SELECT instance_id, last_heartbeat FROM registry_instance \
             WHERE instance_id = ANY($1) AND status <> 'DEAD'",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    async fn changes_since(&self, after: i64) -> Result<ChangeSet, StoreError> {
        self.read_changes(after, crate::storage::Read::Log).await
    }

    async fn changes_page(&self, after: i64, limit: i64) -> Result<ChangeSet, StoreError> {
        self.read_changes(after, crate::storage::Read::Page(limit.max(1))).await
    }

    async fn snapshot(&self) -> Result<ChangeSet, StoreError> {
        self.read_changes(0, crate::storage::Read::Snapshot).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
});
