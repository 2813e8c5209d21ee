//! Where a page of a search ends, as the opaque token a client hands back: the last hit's
//! score (when ranked) and logical id, sealed for its query as every listing's token is
//! (`page.rs`).

use super::page::{not_issued, open, seal};
use crate::domain::ValidationError;

/// Where a page ends: the last hit's score (ranked) and logical id.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Cursor {
    pub score: Option<f32>,
    pub logical_id: String,
}

/// `{score:8 hex or -}|{logical_id}` sealed for `query` (`page::seal`).
pub(super) fn encode(query: u64, c: &Cursor) -> String {
    let score = c
        .score
        .map_or("-".to_string(), |s| format!("{:08x}", s.to_bits()));
    seal(query, &format!("{score}|{}", c.logical_id))
}

pub(super) fn decode(token: &str, query: u64) -> Result<Option<Cursor>, ValidationError> {
    let Some(body) = open(token, query)? else {
        return Ok(None);
    };
    let (score, lid) = body.split_once('|').ok_or_else(not_issued)?;
    let score = match score {
        "-" => None,
        hex => Some(
            u32::from_str_radix(hex, 16)
                .map(f32::from_bits)
                .map_err(|_| not_issued())?,
        ),
    };
    Ok(Some(Cursor {
        score,
        logical_id: lid.to_string(),
    }))
}
