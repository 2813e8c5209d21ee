//! The shape both backends' change-log code shares: what a read asks for, how its rows become
//! one `ChangeSet`, and the purge loop. Each backend keeps only its SQL dialect and locking.

use std::future::Future;

use crate::domain::{ChangeSet, Instance, Namespace};
use crate::storage::{PURGE_BATCH, StoreError};

/// What a backend's change read returns.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Read {
    /// Every current row (no history).
    Snapshot,
    /// At most this many change-log rows after a revision, with namespaces.
    Log(i64),
    /// At most this many change-log rows, without namespaces.
    Page(i64),
}

impl Read {
    pub fn is_snapshot(self) -> bool {
        matches!(self, Read::Snapshot)
    }

    /// A page is for replaying instance changes (Watch): no namespaces.
    pub fn with_namespaces(self) -> bool {
        !matches!(self, Read::Page(_))
    }

    /// The most instance rows the read returns (bound to the query's second placeholder).
    pub fn limit(self) -> i64 {
        match self {
            Read::Page(n) | Read::Log(n) => n,
            Read::Snapshot => i64::MAX,
        }
    }

    /// A read from `after` of a log compacted through `horizon` cannot be answered (a snapshot
    /// always can).
    pub fn check_horizon(self, after: i64, horizon: i64) -> Result<(), StoreError> {
        match !self.is_snapshot() && after < horizon {
            true => Err(StoreError::Compacted { horizon }),
            false => Ok(()),
        }
    }

    /// The namespace query; `p1` is the backend's first placeholder (`$1`, `?`).
    pub fn namespaces_sql(columns: &str, p1: &str) -> String {
        format!("SELECT {columns} FROM namespace WHERE revision > {p1} ORDER BY revision")
    }

    /// The card query: every version not collected for a snapshot, else every version
    /// published or collected after `after` (bound to `p1`); a page reads none.
    pub fn cards_sql(self, columns: &str, p1: &str) -> Option<String> {
        match self {
            Read::Snapshot => Some(format!(
                "SELECT {columns} FROM agent_card WHERE NOT collected AND revision > {p1} \
                 ORDER BY revision"
            )),
            Read::Log(_) => Some(format!(
                "SELECT {columns} FROM agent_card WHERE revision > {p1} ORDER BY revision"
            )),
            Read::Page(_) => None,
        }
    }

    /// The instance query (current rows for a snapshot, else the log), bound to `after` and
    /// [`Read::limit`].
    pub fn instances_sql(self, columns: &str, p1: &str, p2: &str) -> String {
        let table = match self.is_snapshot() {
            true => "registry_instance",
            false => "registry_change",
        };
        format!("SELECT {columns} FROM {table} WHERE revision > {p1} ORDER BY revision LIMIT {p2}")
    }

    /// The rows read after `after`, with the revision counter and horizon of the same snapshot:
    /// a full page ends at its last row, a short one reaches the counter.
    pub fn change_set(
        self,
        after: i64,
        counter: i64,
        horizon: i64,
        namespaces: Vec<Namespace>,
        instances: Vec<Instance>,
    ) -> ChangeSet {
        let last = match instances.last() {
            Some(row) if instances.len() as i64 == self.limit() => row.revision,
            _ => counter,
        };
        ChangeSet {
            first: after + 1,
            last,
            horizon,
            namespaces,
            instances,
            // Read apart and parsed once the transaction ends (`card_rows::parse_all`).
            cards: Vec::new(),
        }
    }
}

/// Runs purge rounds — each deleting at most [`PURGE_BATCH`] log rows and as many dead
/// instances, returning both counts — until one deletes less than a batch of each. Returns the
/// instance rows deleted.
pub(crate) async fn purge<F, Fut>(mut round: F) -> Result<u64, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(u64, u64), StoreError>>,
{
    let mut deleted = 0;
    loop {
        let (log, dead) = round().await?;
        deleted += dead;
        if log < PURGE_BATCH as u64 && dead < PURGE_BATCH as u64 {
            return Ok(deleted);
        }
    }
}

/// The body of a backend's change-log read inside its read transaction `tx` (begun by the
/// backend with its own isolation and timeout): the revision counter and horizon, the horizon
/// check, the namespace and instance rows assembled into a `ChangeSet`, and the card rows
/// beside it, to be parsed once the transaction has ended (`card_rows::parse_all`). `$p1`, `$p2` are
/// the dialect's placeholders; `NAMESPACE_COLUMNS`, `INSTANCE_COLUMNS`, `CARD_COLUMNS`,
/// `namespace_from_row`, `instance_from_row` and `card_from_row` are the backend's own, in
/// scope where it is used.
macro_rules! read_log {
    ($tx:ident, $read:expr, $after:expr, $p1:literal, $p2:literal) => {{
        let (read, after) = ($read, $after);
        let (counter, horizon): (i64, i64) =
            sqlx::query_as("SELECT value, compacted FROM registry_revision")
                .fetch_one(&mut *$tx)
                .await?;
        read.check_horizon(after, horizon)?;
        let namespaces = match read.with_namespaces() {
            true => sqlx::query(&$crate::storage::Read::namespaces_sql(
                NAMESPACE_COLUMNS,
                $p1,
            ))
            .bind(after)
            .fetch_all(&mut *$tx)
            .await?
            .iter()
            .map(namespace_from_row)
            .collect::<Result<_, _>>()?,
            false => Vec::new(),
        };
        let instances = sqlx::query(&read.instances_sql(INSTANCE_COLUMNS, $p1, $p2))
            .bind(after)
            .bind(read.limit())
            .fetch_all(&mut *$tx)
            .await?
            .iter()
            .map(instance_from_row)
            .collect::<Result<_, _>>()?;
        let cards = match read.cards_sql(CARD_COLUMNS, $p1) {
            Some(sql) => sqlx::query(&sql)
                .bind(after)
                .fetch_all(&mut *$tx)
                .await?
                .iter()
                .map(card_from_row)
                .collect::<Result<_, _>>()?,
            None => Vec::<$crate::storage::card_rows::CardRow>::new(),
        };
        (
            read.change_set(after, counter, horizon, namespaces, instances),
            cards,
        )
    }};
}
pub(crate) use read_log;
