//! Mass expiry on Postgres: a namespace of N instances of which a share ran out of lease, expired
//! the way the registry does (a set-based statement per chunk of `EXPIRE_CHUNK`, each chunk its
//! own transaction under the revision lock) and, for the same rows in another database, the way
//! it used to (one UPDATE per instance, all in one transaction under the lock). Reports the
//! statements, the total time and the longest the revision lock was held.

use std::sync::Arc;
use std::time::Duration;

use agent_registry_core::domain::card::DEFAULT_MAX_CARD_BYTES;
use agent_registry_core::domain::{
    Instance, InstanceStatus, LeaseBounds, RegisterInput, validate_register,
};
use agent_registry_core::liveness::LivenessConfig;
use agent_registry_core::liveness::sweeper::EXPIRE_CHUNK;
use agent_registry_core::storage::{self, Store, StoreOptions};
use serde_json::json;
use tokio::time::Instant;
use uuid::Uuid;

use crate::progress;

#[derive(Debug, Clone, clap::Args)]
pub struct ExpiryArgs {
    /// Two empty Postgres databases: the registry's way runs in the first, the old way in the
    /// second.
    #[arg(long)]
    pub database_url: String,
    #[arg(long)]
    pub baseline_url: String,
    #[arg(long, default_value_t = 100_000)]
    pub instances: usize,
    /// How many of them ran out of lease.
    #[arg(long, default_value_t = 40_000)]
    pub expired: usize,
}

/// Fills `url` with `n` instances and ages the stored beat of the first `expired` past their
/// lease; returns the store and the ids to expire.
async fn fill(url: &str, n: usize, expired: usize) -> Result<(Arc<dyn Store>, Vec<Uuid>), String> {
    let options = StoreOptions {
        timeout: Duration::from_secs(120),
        ..StoreOptions::default()
    };
    let store = storage::open(url, &options)
        .await
        .map_err(|e| e.to_string())?;
    let mut ids: Vec<Uuid> = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(512) {
        let news = chunk
            .iter()
            .map(|i| {
                let input = RegisterInput {
                    namespace: "mass".into(),
                    logical_id: format!("agent-{i}"),
                    ready: true,
                    ..Default::default()
                };
                validate_register(input, &LeaseBounds::default(), DEFAULT_MAX_CARD_BYTES)
                    .expect("valid")
            })
            .collect();
        let done = store
            .register_batch(news)
            .await
            .map_err(|e| e.to_string())?;
        for r in done.results {
            let i: Instance = r.map_err(|e| e.to_string())?.instance;
            ids.push(i.instance_id);
        }
    }
    ids.truncate(expired);
    let pool = sqlx::PgPool::connect(url)
        .await
        .map_err(|e| e.to_string())?;
    sqlx::query(
        "UPDATE registry_instance SET last_heartbeat = now() - interval '1 hour' \
         WHERE instance_id = ANY($1)",
    )
    .bind(&ids)
    .execute(&pool)
    .await
    .map_err(|e| e.to_string())?;
    pool.close().await;
    Ok((store, ids))
}

/// The old way: one transaction, the revision lock, one UPDATE per instance in seniority order.
async fn per_row(url: &str, ids: &[Uuid]) -> Result<Duration, String> {
    let pool = sqlx::PgPool::connect(url)
        .await
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
    let mut rev: i64 = sqlx::query_scalar("SELECT value FROM registry_revision FOR UPDATE")
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| e.to_string())?;
    let rows: Vec<(Uuid,)> = sqlx::query_as(
        "SELECT instance_id FROM registry_instance WHERE instance_id = ANY($1) \
         ORDER BY started_at, instance_id FOR UPDATE",
    )
    .bind(ids)
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| e.to_string())?;
    for (id,) in rows {
        rev += 1;
        sqlx::query(
            "UPDATE registry_instance SET status = 'DEAD', death_reason = 'LEASE_EXPIRED', \
             stopped_at = now(), revision = $2 WHERE instance_id = $1",
        )
        .bind(id)
        .bind(rev)
        .execute(&mut *tx)
        .await
        .map_err(|e| e.to_string())?;
    }
    sqlx::query("UPDATE registry_revision SET value = $1")
        .bind(rev)
        .execute(&mut *tx)
        .await
        .map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())?;
    pool.close().await;
    Ok(started.elapsed())
}

pub async fn run(a: ExpiryArgs) -> Result<serde_json::Value, String> {
    progress!(
        "filling {} instances, {} run out (twice)",
        a.instances,
        a.expired
    );
    let (store, ids) = fill(&a.database_url, a.instances, a.expired).await?;
    let (old_store, old_ids) = fill(&a.baseline_url, a.instances, a.expired).await?;
    old_store.close().await;

    progress!("expiring in chunks of {EXPIRE_CHUNK}");
    let started = Instant::now();
    let (mut expired, mut transactions, mut longest) = (0usize, 0usize, Duration::ZERO);
    for chunk in ids.chunks(EXPIRE_CHUNK) {
        let t = Instant::now();
        let done = store
            .expire(chunk, LivenessConfig::default().expiry_slack())
            .await
            .map_err(|e| e.to_string())?;
        longest = longest.max(t.elapsed());
        transactions += 1;
        expired += done.changes.instances.len();
        assert!(
            done.changes
                .instances
                .iter()
                .all(|i| i.status == InstanceStatus::Dead)
        );
    }
    let chunked = started.elapsed();
    store.close().await;

    progress!("the old way: one UPDATE per instance");
    let old = per_row(&a.baseline_url, &old_ids).await?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok(json!({
        "scenario": "expiry",
        "instances": a.instances,
        "expired": expired,
        "chunk": EXPIRE_CHUNK,
        "transactions": transactions,
        // Per chunk: lock the revision, the set-based UPDATE, read the kept ones' beats, save
        // the revision (and COMMIT).
        "statements": transactions * 4,
        "total_ms": ms(chunked),
        "longest_lock_ms": ms(longest),
        "per_row_statements": old_ids.len() + 3,
        "per_row_total_ms": ms(old),
        "per_row_lock_ms": ms(old),
    }))
}
