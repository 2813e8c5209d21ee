//! Where a page of a search ends, as the opaque token a client hands back: the last hit's
//! score (when ranked) and logical id, bound to the query it was issued for.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::domain::ValidationError;

/// Where a page ends: the last hit's score (ranked) and logical id.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Cursor {
    pub score: Option<f32>,
    pub logical_id: String,
}

fn bad_token(message: &str) -> ValidationError {
    ValidationError {
        field: "page_token".into(),
        message: message.into(),
    }
}

pub(super) fn encode(query: u64, c: &Cursor) -> String {
    let score = c
        .score
        .map_or("-".to_string(), |s| format!("{:08x}", s.to_bits()));
    URL_SAFE_NO_PAD.encode(format!("{query:016x}|{score}|{}", c.logical_id))
}

pub(super) fn decode(token: &str, query: u64) -> Result<Option<Cursor>, ValidationError> {
    if token.is_empty() {
        return Ok(None);
    }
    let raw = URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| bad_token("is not a token this server issued"))?;
    let mut parts = raw.splitn(3, '|');
    let (Some(q), Some(score), Some(lid)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad_token("is not a token this server issued"));
    };
    if u64::from_str_radix(q, 16).ok() != Some(query) {
        return Err(bad_token(
            "belongs to a search with a different query or filters",
        ));
    }
    let score = match score {
        "-" => None,
        hex => Some(
            u32::from_str_radix(hex, 16)
                .map(f32::from_bits)
                .map_err(|_| bad_token("is not a token this server issued"))?,
        ),
    };
    Ok(Some(Cursor {
        score,
        logical_id: lid.to_string(),
    }))
}
