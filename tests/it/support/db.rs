//! One database per test: a temp SQLite file, or a Postgres database of its own created on the
//! suite's server and dropped afterwards; and the few SQL reads tests make.

use super::Backend;
use super::postgres::{connect_admin, postgres_admin_url, with_database};

/// One database that belongs to one test; dropped (Postgres) or deleted (SQLite) afterwards.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<(String, String)>,
}

impl TestDb {
    /// `None` when the backend is not available here (the skip has been announced).
    pub async fn new(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("registry.db").display());
                Some(TestDb {
                    url,
                    backend,
                    _dir: Some(dir),
                    pg_name: None,
                })
            }
            Backend::Postgres => {
                let admin = postgres_admin_url()?;
                let name = format!("ar_test_{}", uuid::Uuid::new_v4().simple());
                let mut conn = connect_admin(&admin).await;
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                Some(TestDb {
                    url: with_database(&admin, &name),
                    backend,
                    _dir: None,
                    pg_name: Some((admin, name)),
                })
            }
        }
    }

    /// One integer a SQL query returns (e.g. a count).
    pub async fn query_i64(&self, sql: &str) -> i64 {
        Self::query_i64_at(&self.url, sql).await
    }

    /// One integer a SQL query returns, from the database at `url`.
    pub async fn query_i64_at(url: &str, sql: &str) -> i64 {
        if url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(url)
                .await
                .expect("connect sqlite");
            let v: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await.expect(sql);
            pool.close().await;
            v
        } else {
            let pool = sqlx::PgPool::connect(url).await.expect("connect postgres");
            let v: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await.expect(sql);
            pool.close().await;
            v
        }
    }

    /// Instance ids (with revisions) a SQL query over the public views returns.
    pub async fn query_ids(&self, sql: &str) -> Vec<(String, i64)> {
        match self.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.url)
                    .await
                    .expect("connect sqlite");
                let rows: Vec<(String, i64)> =
                    sqlx::query_as(sql).fetch_all(&pool).await.expect(sql);
                pool.close().await;
                rows
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.url)
                    .await
                    .expect("connect postgres");
                let sql = sql.replace("instance_id,", "instance_id::text,");
                let rows: Vec<(String, i64)> =
                    sqlx::query_as(&sql).fetch_all(&pool).await.expect("query");
                pool.close().await;
                rows
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.pg_name.take() else {
            return;
        };
        // Drop runs outside any runtime we may block: use a private one on its own thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = connect_admin(&admin).await;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .ok()
            })
        })
        .join();
    }
}
