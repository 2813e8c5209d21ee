//! The catalog scenario's comparison: what an operator would otherwise run — Postgres
//! full-text search over the same cards, read from the registry's own `agent_card` table into
//! a table with a weighted `tsvector` (name and skill names A, tags B, descriptions and
//! examples C), a GIN index on it and one on the tags, joined to `active_instances` so that
//! only live agents are found, as the registry answers.

use std::time::Duration;

use serde_json::json;
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use tokio::time::Instant;

use crate::cards;
use crate::stats::{Latency, histogram, record};

const BUILD: &str = r#"
DROP TABLE IF EXISTS bench_card_search;
CREATE TABLE bench_card_search AS
SELECT c.namespace, c.logical_id,
       setweight(to_tsvector('english', coalesce(j->>'name', '') || ' ' ||
           coalesce((SELECT string_agg(s->>'name', ' ') FROM jsonb_array_elements(j->'skills') s), '')), 'A') ||
       setweight(to_tsvector('english',
           coalesce((SELECT string_agg(t, ' ') FROM jsonb_array_elements(j->'skills') s,
                     jsonb_array_elements_text(s->'tags') t), '')), 'B') ||
       setweight(to_tsvector('english', coalesce(j->>'description', '') || ' ' ||
           coalesce((SELECT string_agg(coalesce(s->>'description', '') || ' ' ||
                     coalesce(s->'examples'->>0, ''), ' ') FROM jsonb_array_elements(j->'skills') s), '')), 'C')
         AS doc,
       ARRAY(SELECT DISTINCT t FROM jsonb_array_elements(j->'skills') s,
             jsonb_array_elements_text(s->'tags') t) AS tags
FROM (SELECT namespace, logical_id, convert_from(card, 'UTF8')::jsonb AS j
      FROM agent_card WHERE NOT collected AND namespace = $1) c;
"#;

const INDEXES: &[&str] = &[
    "CREATE INDEX bench_card_search_doc ON bench_card_search USING gin (doc)",
    "CREATE INDEX bench_card_search_tags ON bench_card_search USING gin (tags)",
    "CREATE INDEX bench_card_search_id ON bench_card_search (namespace, logical_id)",
    "ANALYZE bench_card_search",
];

/// One tag, live agents only, by logical id: the registry's filter-only search.
const FILTER: &str = "
SELECT s.logical_id FROM bench_card_search s
WHERE s.namespace = $1 AND s.tags @> ARRAY[$2]
  AND EXISTS (SELECT 1 FROM active_instances i
              WHERE i.namespace = s.namespace AND i.logical_id = s.logical_id)
ORDER BY s.logical_id LIMIT $3";

/// Either word, ranked, with one tag, live agents only: the two-word query and a filter.
const QUERY: &str = "
SELECT s.logical_id, ts_rank(s.doc, q) AS rank
FROM bench_card_search s, to_tsquery('english', $4) q
WHERE s.namespace = $1 AND s.doc @@ q AND s.tags @> ARRAY[$2]
  AND EXISTS (SELECT 1 FROM active_instances i
              WHERE i.namespace = s.namespace AND i.logical_id = s.logical_id)
ORDER BY rank DESC, s.logical_id LIMIT $3";

pub async fn run(
    url: &str,
    namespace: &str,
    calls: usize,
    page_size: i32,
) -> Result<serde_json::Value, String> {
    let mut db = PgConnection::connect(url)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let t = Instant::now();
    for statement in BUILD.split(';').filter(|s| !s.trim().is_empty()) {
        let q = sqlx::query(statement);
        let q = if statement.contains("$1") {
            q.bind(namespace)
        } else {
            q
        };
        q.execute(&mut db)
            .await
            .map_err(|e| format!("build: {e}"))?;
    }
    for statement in INDEXES {
        sqlx::query(statement)
            .execute(&mut db)
            .await
            .map_err(|e| format!("{statement}: {e}"))?;
    }
    let build = t.elapsed();
    let mut out = serde_json::Map::new();
    for (name, sql) in [("filter_only", FILTER), ("two_words_and_filter", QUERY)] {
        let (mut h, mut results, mut empty) = (histogram(), 0usize, 0usize);
        for n in 0..calls + calls / 10 {
            let (words, tag) = match sql == FILTER {
                true => (String::new(), cards::tag(n)),
                false => cards::query(n),
            };
            let t = Instant::now();
            let q = sqlx::query(sql)
                .bind(namespace)
                .bind(&tag)
                .bind(page_size as i64);
            let q = match sql == QUERY {
                true => q.bind(words.split(' ').collect::<Vec<_>>().join(" | ")),
                false => q,
            };
            let rows = q
                .fetch_all(&mut db)
                .await
                .map_err(|e| format!("{name}: {e}"))?;
            let d: Duration = t.elapsed();
            if n >= calls / 10 {
                record(&mut h, d);
                results += rows.len();
                empty += rows.is_empty() as usize;
            }
        }
        out.insert(
            name.into(),
            json!({
                "latency": Latency::of(&h),
                "mean_results": results as f64 / calls.max(1) as f64,
                "empty_answers": empty,
            }),
        );
    }
    let _ = sqlx::query("DROP TABLE bench_card_search")
        .execute(&mut db)
        .await;
    out.insert("build_s".into(), json!(build.as_secs_f64()));
    Ok(out.into())
}

/// Flushes and vacuums the database so that nothing of Postgres's own runs while searches
/// are measured.
pub async fn settle(url: &str) -> Result<(), String> {
    let mut db = PgConnection::connect(url)
        .await
        .map_err(|e| format!("connecting to {url}: {e}"))?;
    for statement in ["CHECKPOINT", "VACUUM (ANALYZE)"] {
        sqlx::query(statement)
            .execute(&mut db)
            .await
            .map_err(|e| format!("{statement}: {e}"))?;
    }
    Ok(())
}
