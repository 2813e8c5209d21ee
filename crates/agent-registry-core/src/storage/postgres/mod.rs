//! The Postgres backend: the production source of truth, shared by every replica.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{Connection, Postgres, Row, Transaction};
use tokio::time::Instant;
use uuid::Uuid;

use crate::domain::{
    ChangeSet, DeathReason, Instance, InstanceStatus, Namespace, StoreClock, StoredCard,
};
use crate::storage::ops::{CardKey, Kill, WriteTx};
use crate::storage::{
    Flushed, StoreError, StoreOptions, StoreStats, StoredBeat, TimeSource, micros_of,
};

mod cards;
mod log;

const INSTANCE_COLUMNS: &str = "instance_id, namespace, logical_id, epoch, status, agent_type, \
    version, endpoint, capabilities, labels, actor_name, node_id, ip_address, pid, \
    (extract(epoch from lease_ttl) * 1000000)::int8 AS lease_ttl_us, started_at, last_heartbeat, \
    stopped_at, death_reason, registered_by, card_digest, revision";
const NAMESPACE_COLUMNS: &str = "name, current_epoch, epoch_started_at, created_at, revision";

pub struct PostgresStore {
    pool: PgPool,
    max_connections: u32,
    timeout: Duration,
    stats: StoreStats,
    clock: Arc<StoreClock>,
    /// Whose clock the statements use: `None` binds NULL, so SQL falls back to the server's.
    process_time: bool,
}

/// The server-side settings each connection asks for at start-up: every statement and every
/// idle transaction bounded (a replica that wedges mid-transaction cannot hold the revision lock
/// for long), and TCP keepalive from the server's end so the sessions of a replica that vanished
/// are reaped with their locks. (sqlx offers no client-side keepalive; every wait on our side is
/// bounded by the call timeouts and the release check instead.)
fn session_settings(options: &StoreOptions) -> Vec<(&'static str, String)> {
    let ms = |d: Duration| d.as_millis().max(1).to_string();
    let secs = |d: Duration| d.as_secs().max(1).to_string();
    let probe = (options.keepalive / 3).max(Duration::from_secs(1));
    vec![
        ("statement_timeout", ms(options.timeout)),
        ("idle_in_transaction_session_timeout", ms(options.timeout)),
        ("tcp_keepalives_idle", secs(options.keepalive)),
        ("tcp_keepalives_interval", secs(probe)),
        ("tcp_keepalives_count", "3".into()),
        // Data the server sent and we never acknowledged ends the connection too.
        ("tcp_user_timeout", ms(options.keepalive * 2)),
    ]
}

impl PostgresStore {
    pub async fn open(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        let connect = PgConnectOptions::from_str(url)?.options(session_settings(options));
        let release_check = options.timeout;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.timeout)
            // A connection handed back while a statement was in flight (its caller timed out)
            // is tested before sqlx's own unbounded test: one that does not answer in time is
            // dropped, so a silent network cannot keep pool slots for ever.
            .after_release(move |conn, _| {
                Box::pin(async move {
                    match tokio::time::timeout(release_check, conn.ping()).await {
                        Ok(Ok(())) => Ok(true),
                        Ok(Err(e)) => Err(e),
                        Err(_) => Err(sqlx::Error::PoolTimedOut),
                    }
                })
            })
            .connect_with(connect)
            .await?;
        // Migrations on a connection of their own, without the statement timeout: a long
        // migration, or the wait for another replica's migration lock, must not be cancelled.
        // Migrations newer than this build (a rollback) are left alone: they stay additive.
        let migrating = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(PgConnectOptions::from_str(url)?)
            .await?;
        let mut migrator = sqlx::migrate!("../../migrations/postgres");
        migrator.set_ignore_missing(true);
        let migrated = migrator.run(&migrating).await;
        migrating.close().await;
        migrated?;
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
            max_connections: options.max_connections,
            timeout: options.timeout,
            stats: StoreStats::default(),
            clock: Arc::default(),
            process_time: options.time == TimeSource::Process,
        })
    }

    async fn begin(&self) -> Result<PgTx, StoreError> {
        Ok(PgTx {
            tx: self.pool.begin().await?,
            now: self.process_now(),
        })
    }

    /// The time to bind where SQL takes `COALESCE($n, <server clock>)`.
    fn process_now(&self) -> Option<DateTime<Utc>> {
        self.process_time.then(crate::domain::now)
    }
}

struct PgTx {
    tx: Transaction<'static, Postgres>,
    /// The process's time, when that is the store's clock (tests); else the server's.
    now: Option<DateTime<Utc>>,
}

impl PgTx {
    async fn commit(self) -> Result<(), StoreError> {
        Ok(self.tx.commit().await?)
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
        card_digest: row.try_get("card_digest")?,
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
    async fn lock_revision(&mut self) -> Result<(i64, DateTime<Utc>), StoreError> {
        // The clock is read after the lock is held (the CTE runs first), so a transaction that
        // waited for the lock stamps its changes with when it could make them. (The clock's
        // offset is not measured here: the lock wait would count in it.)
        let (v, at): (i64, DateTime<Utc>) = sqlx::query_as(
            "WITH l AS (SELECT value FROM registry_revision FOR UPDATE) \
             SELECT value, COALESCE($1, clock_timestamp()) FROM l",
        )
        .bind(self.now)
        .fetch_one(&mut *self.tx)
        .await?;
        Ok((v, at))
    }

    async fn save_revision(&mut self, revision: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE registry_revision SET value = $1")
            .bind(revision)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn log_before(&mut self, retention: Duration) -> Result<Option<i64>, StoreError> {
        let h = sqlx::query_scalar(
            "SELECT max(revision) FROM registry_change WHERE changed_at < now() - $1 * interval '1 microsecond'",
        )
        .bind(retention.as_micros().min(i64::MAX as u128) as i64)
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(h)
    }

    async fn raise_horizon(&mut self, horizon: i64) -> Result<i64, StoreError> {
        let h = sqlx::query_scalar(
            "UPDATE registry_revision SET compacted = GREATEST(compacted, $1) RETURNING compacted",
        )
        .bind(horizon)
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(h)
    }

    async fn namespace(&mut self, name: &str) -> Result<Option<Namespace>, StoreError> {
        let sql = format!("SELECT {NAMESPACE_COLUMNS} FROM namespace WHERE name = $1");
        let row = sqlx::query(&sql)
            .bind(name)
            .fetch_optional(&mut *self.tx)
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
        .execute(&mut *self.tx)
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
        .execute(&mut *self.tx)
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
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(instance_from_row).transpose()
    }

    async fn instances(&mut self, ids: &[Uuid]) -> Result<Vec<Instance>, StoreError> {
        let sql = format!(
            "SELECT {INSTANCE_COLUMNS} FROM registry_instance WHERE instance_id = ANY($1) \
             ORDER BY instance_id FOR UPDATE"
        );
        let rows = sqlx::query(&sql).bind(ids).fetch_all(&mut *self.tx).await?;
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
             registered_by, card_digest) \
             SELECT u.id, u.ns, u.lid, u.epoch, u.status, u.agent_type, u.version, u.endpoint, \
                    ARRAY(SELECT c FROM jsonb_array_elements_text(u.caps) \
                          WITH ORDINALITY AS t(c, n) ORDER BY n), u.labels, u.actor, u.node, \
                    u.ip, u.pid, u.lease_us * interval '1 microsecond', u.started, u.last_hb, \
                    u.stopped, u.death, u.rev, u.owner, u.card \
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::text[], $6::text[], \
                         $7::text[], $8::text[], $9::jsonb[], $10::jsonb[], $11::text[], \
                         $12::text[], $13::text[], $14::int8[], $15::int8[], $16::timestamptz[], \
                         $17::timestamptz[], $18::timestamptz[], $19::text[], $20::int8[], \
                         $21::text[], $22::text[]) \
               AS u(id, ns, lid, epoch, status, agent_type, version, endpoint, caps, labels, \
                    actor, node, ip, pid, lease_us, started, last_hb, stopped, death, rev, owner, \
                    card)",
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
        .bind(texts(|i| &i.card_digest))
        .execute(&mut *self.tx)
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
        .execute(&mut *self.tx)
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
        // The rows are locked in instance_id order (the order every writer uses); a row a flush
        // renewed while the lock waited is re-checked in its new version and left alone.
        let select = match kill {
            Kill::Expired { .. } => {
                "SELECT r.instance_id, r.started_at FROM registry_instance AS r \
                 JOIN unnest($4::uuid[]) AS c(id) ON r.instance_id = c.id \
                 WHERE r.status <> 'DEAD' AND r.last_heartbeat + r.lease_ttl * $6 <= $5 \
                 ORDER BY r.instance_id FOR UPDATE OF r"
            }
            Kill::Fenced { .. } => {
                "SELECT r.instance_id, r.started_at FROM registry_instance AS r \
                 WHERE r.namespace = $4 AND r.epoch <> $5 AND r.status <> 'DEAD' \
                 ORDER BY r.instance_id LIMIT $6 FOR UPDATE OF r"
            }
        };
        let sql = format!(
            "WITH c AS ({select}), \
                  n AS (SELECT instance_id AS id, \
                               $1::int8 + row_number() OVER (ORDER BY started_at, instance_id) - 1 \
                               AS rev FROM c) \
             UPDATE registry_instance SET status = 'DEAD', death_reason = $2, stopped_at = $3, \
                    revision = n.rev \
             FROM n WHERE registry_instance.instance_id = n.id \
             RETURNING {INSTANCE_COLUMNS}"
        );
        let query = sqlx::query(&sql).bind(first).bind(reason.as_str()).bind(at);
        let query = match kill {
            Kill::Expired {
                ids,
                cutoff,
                ttl_factor,
            } => query.bind(ids).bind(cutoff).bind(ttl_factor),
            Kill::Fenced {
                namespace,
                epoch,
                limit,
            } => query.bind(namespace).bind(epoch).bind(limit),
        };
        let rows = query.fetch_all(&mut *self.tx).await?;
        let mut dead: Vec<Instance> = rows
            .iter()
            .map(instance_from_row)
            .collect::<Result<_, _>>()?;
        dead.sort_unstable_by_key(|i| i.revision);
        Ok(dead)
    }

    async fn card_states(&mut self, keys: &[CardKey]) -> Result<Vec<(CardKey, bool)>, StoreError> {
        cards::states(&mut self.tx, keys).await
    }

    async fn put_cards(&mut self, cards: &[StoredCard]) -> Result<(), StoreError> {
        cards::put(&mut self.tx, cards).await
    }

    async fn collect_cards(
        &mut self,
        horizon: i64,
        first: i64,
        at: DateTime<Utc>,
    ) -> Result<Vec<StoredCard>, StoreError> {
        cards::collect(&mut self.tx, horizon, first, at).await
    }

    async fn live_beats(
        &mut self,
        ids: &[Uuid],
    ) -> Result<(Vec<(Uuid, DateTime<Utc>)>, DateTime<Utc>), StoreError> {
        let at: DateTime<Utc> = sqlx::query_scalar("SELECT COALESCE($1, clock_timestamp())")
            .bind(self.now)
            .fetch_one(&mut *self.tx)
            .await?;
        let rows = sqlx::query_as(
            "SELECT r.instance_id, r.last_heartbeat FROM registry_instance AS r \
             JOIN unnest($1::uuid[]) AS c(id) ON r.instance_id = c.id WHERE r.status <> 'DEAD'",
        )
        .bind(ids)
        .fetch_all(&mut *self.tx)
        .await?;
        Ok((rows, at))
    }
}

// Register, transition, advance_epoch and expire come from the shared macro.
crate::storage::impl_store!(PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn clock(&self) -> &Arc<StoreClock> {
        &self.clock
    }

    fn pool_full(&self) -> bool {
        self.pool.size() >= self.max_connections && self.pool.num_idle() == 0
    }

    async fn flush_heartbeats(&self, beats: &[(Uuid, Instant)]) -> Result<Flushed, StoreError> {
        let mut conn = self.pool.acquire().await?;
        // Ages are measured once a connection is in hand, just before the statement leaves.
        let (measured, sent) = (Instant::now(), crate::domain::now());
        if beats.is_empty() {
            return Ok(Flushed {
                rows: 0,
                store_time: self.clock.now(),
                measured,
            });
        }
        let ids: Vec<Uuid> = beats.iter().map(|(id, _)| *id).collect();
        let ages: Vec<i64> = beats
            .iter()
            .map(|(_, b)| micros_of(measured.saturating_duration_since(*b)))
            .collect();
        let flush = sqlx::query_as(
            // Each beat is stored as the server's clock minus its age, so every replica's
            // beats are on one clock. Rows are locked in instance_id order first, the order
            // every other writer uses, so a flush never deadlocks with a sweep or an epoch
            // advance. The batch is joined as a relation, never tested with `= ANY($1)`: with
            // 100 000 ids the generic plan of that prepared statement joined the two row by
            // row, quadratic (a flush of 100 000 rows was seen running for minutes). The update
            // finds the locked rows by key, not by `ctid`: a row another transaction changed
            // while the lock waited is returned in its new version, which the statement's
            // snapshot cannot see by address.
            "WITH t AS (SELECT COALESCE($3, statement_timestamp()) AS now), \
                  b AS (SELECT b.id, t.now - b.age * interval '1 microsecond' AS beat \
                        FROM unnest($1::uuid[], $2::int8[]) AS b(id, age), t), \
                  locked AS (SELECT r.instance_id, b.beat FROM registry_instance AS r \
                             JOIN b ON r.instance_id = b.id \
                             WHERE r.status <> 'DEAD' AND r.last_heartbeat < b.beat \
                             ORDER BY r.instance_id FOR UPDATE OF r), \
                  done AS (UPDATE registry_instance AS r SET last_heartbeat = locked.beat \
                           FROM locked WHERE r.instance_id = locked.instance_id \
                             AND r.status <> 'DEAD' AND r.last_heartbeat < locked.beat \
                           RETURNING 1) \
             SELECT (SELECT now FROM t), (SELECT count(*) FROM done)",
        )
        .bind(ids)
        .bind(ages)
        .bind(self.process_now());
        // A batch too big for one statement timeout gets a longer one, in a transaction of its
        // own (still one statement); the call site allows the same.
        let factor = crate::storage::flush_timeout_factor(beats.len());
        let (store_time, rows): (DateTime<Utc>, i64) = if factor > 1 {
            let mut tx = conn.begin().await?;
            let ms = self.timeout.as_millis() * factor as u128;
            sqlx::query(&format!("SET LOCAL statement_timeout = {ms}"))
                .execute(&mut *tx)
                .await?;
            let done = flush.fetch_one(&mut *tx).await?;
            tx.commit().await?;
            done
        } else {
            flush.fetch_one(&mut *conn).await?
        };
        self.stats.count_flush();
        if !self.process_time {
            self.clock.observe(sent, store_time);
        }
        Ok(Flushed {
            rows: rows as u64,
            store_time,
            measured,
        })
    }

    fn stats(&self) -> &StoreStats {
        &self.stats
    }

    async fn heartbeats(&self, ids: &[Uuid]) -> Result<Vec<StoredBeat>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let read = Instant::now();
        let rows: Vec<(Uuid, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
            "SELECT r.instance_id, r.last_heartbeat, COALESCE($2, statement_timestamp()) \
             FROM registry_instance AS r JOIN unnest($1::uuid[]) AS c(id) \
               ON r.instance_id = c.id WHERE r.status <> 'DEAD'",
        )
        .bind(ids)
        .bind(self.process_now())
        .fetch_all(&mut *conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(instance_id, at, now)| StoredBeat {
                instance_id,
                at,
                local: crate::storage::local_instant(read, now, at),
            })
            .collect())
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
        // A connection of the pool, like every other call: a wedged pool fails the ping.
        let mut conn = self.pool.acquire().await?;
        let sent = crate::domain::now();
        let at: DateTime<Utc> = sqlx::query_scalar("SELECT statement_timestamp()")
            .fetch_one(&mut *conn)
            .await?;
        if !self.process_time {
            self.clock.observe(sent, at);
        }
        Ok(())
    }

    async fn probe_write(&self) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO registry_probe (id, at) VALUES (true, statement_timestamp()) \
             ON CONFLICT (id) DO UPDATE SET at = excluded.at",
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
});
