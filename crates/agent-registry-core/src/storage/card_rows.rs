//! Card rows as both backends read them, parsed apart from the read: a snapshot's cards are
//! read inside its transaction and parsed once it has ended, on every core, so a large
//! catalog neither holds a transaction open (Postgres ends one idle past `--store-timeout`)
//! nor stalls the runtime's workers.

use chrono::{DateTime, Utc};

use super::StoreError;
use crate::domain::StoredCard;
use crate::domain::card::{Card, CardKind};

/// Below this many cards a read parses them in place.
const PARALLEL_FROM: usize = 256;

/// One `agent_card` row, its bytes not yet read as a card (`None`: collected).
pub(crate) struct CardRow {
    pub namespace: String,
    pub logical_id: String,
    pub digest: String,
    pub kind: String,
    pub bytes: Option<Vec<u8>>,
    pub published_at: DateTime<Utc>,
    pub revision: i64,
}

impl CardRow {
    /// The stored card; an unknown kind or bytes that no longer read as a card are corrupt.
    pub fn parse(self) -> Result<StoredCard, StoreError> {
        let kind = CardKind::parse(&self.kind).ok_or_else(|| corrupt("kind", &self.kind))?;
        let card = match self.bytes {
            None => None,
            Some(bytes) => Some(
                Card::from_stored(kind, bytes, self.digest.clone())
                    .map_err(|e| corrupt("card", &e.to_string()))?,
            ),
        };
        Ok(StoredCard {
            namespace: self.namespace,
            logical_id: self.logical_id,
            digest: self.digest,
            kind,
            card,
            published_at: self.published_at,
            revision: self.revision,
        })
    }
}

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Internal(format!("unexpected {what} {value:?} in agent_card"))
}

/// The rows at or below revision `last`, parsed, in their order: in place when few, else in
/// one blocking task per core.
pub(crate) async fn parse_all(
    mut rows: Vec<CardRow>,
    last: i64,
) -> Result<Vec<StoredCard>, StoreError> {
    // Versions past a full page belong to the next one (they are current rows, read again).
    rows.retain(|r| r.revision <= last);
    if rows.len() < PARALLEL_FROM {
        return rows.into_iter().map(CardRow::parse).collect();
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_task = rows.len().div_ceil(cores);
    let mut tasks = Vec::with_capacity(cores);
    while !rows.is_empty() {
        let rest = rows.split_off(per_task.min(rows.len()));
        let chunk = std::mem::replace(&mut rows, rest);
        tasks.push(tokio::task::spawn_blocking(move || {
            chunk
                .into_iter()
                .map(CardRow::parse)
                .collect::<Result<Vec<_>, _>>()
        }));
    }
    let mut out = Vec::new();
    for task in tasks {
        let parsed = task
            .await
            .map_err(|e| StoreError::Internal(format!("parsing cards: {e}")))??;
        out.extend(parsed);
    }
    Ok(out)
}
