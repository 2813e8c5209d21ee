//! Opaque AIP-158 page tokens: a keyset cursor bound to the query that produced it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

use crate::domain::ValidationError;

/// Where the next page starts: strictly after this (logical id, instance id) key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub logical_id: String,
    pub instance_id: Uuid,
}

/// FNV-1a: a stable, dependency-free fingerprint of a query, so a token is only accepted by
/// the query that produced it.
pub fn fingerprint(query: &str) -> u64 {
    query.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A token of any listing: `{fingerprint:16 hex}{body}`, base64url.
pub(crate) fn seal(query: u64, body: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{query:016x}{body}"))
}

/// The body of `token` when this server issued it for `query`; `None` for no token.
pub(crate) fn open(token: &str, query: u64) -> Result<Option<String>, ValidationError> {
    if token.is_empty() {
        return Ok(None);
    }
    let raw = URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        // Tokens this server issues are ASCII (logical ids are too): anything else is forged,
        // and slicing it by byte offsets could split a character.
        .filter(|s| s.len() >= 16 && s.is_ascii())
        .ok_or_else(not_issued)?;
    if u64::from_str_radix(&raw[..16], 16).ok() != Some(query) {
        return Err(bad_token("belongs to a request with different filters"));
    }
    Ok(Some(raw[16..].to_string()))
}

/// A token refused: `page_token` named with why.
pub(crate) fn bad_token(message: &str) -> ValidationError {
    ValidationError {
        field: "page_token".into(),
        message: message.into(),
    }
}

/// A token no query of this server produced.
pub(crate) fn not_issued() -> ValidationError {
    bad_token("is not a token this server issued")
}

/// `{instance_id:36}{logical_id}` sealed for `query`.
pub fn encode(query: u64, cursor: &Cursor) -> String {
    seal(
        query,
        &format!("{}{}", cursor.instance_id, cursor.logical_id),
    )
}

pub fn decode(token: &str, query: u64) -> Result<Option<Cursor>, ValidationError> {
    let Some(body) = open(token, query)? else {
        return Ok(None);
    };
    let instance_id = body
        .get(..36)
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or_else(not_issued)?;
    Ok(Some(Cursor {
        logical_id: body[36..].to_string(),
        instance_id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_only_for_its_own_query() {
        let c = Cursor {
            logical_id: "vision/agent 7".into(),
            instance_id: Uuid::now_v7(),
        };
        let t = encode(42, &c);
        assert_eq!(decode(&t, 42).unwrap(), Some(c));
        assert_eq!(decode(&t, 43).unwrap_err().field, "page_token");
        assert_eq!(decode("!!", 42).unwrap_err().field, "page_token");
        assert_eq!(decode("", 42).unwrap(), None);
        let forged = URL_SAFE_NO_PAD.encode(format!("{}é{}", "0".repeat(15), "x".repeat(60)));
        assert_eq!(decode(&forged, 42).unwrap_err().field, "page_token");
    }
}

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;

    /// Strings a client might send as a token: short and long, any Unicode and control
    /// characters, and shapes near a real token (a fingerprint, an id, a logical id).
    fn token() -> impl Strategy<Value = String> {
        let raw = prop_oneof![
            "(?s).{0,40}",
            "(?s).{0,2000}",
            "[0-9a-f]{16}[0-9a-f-]{36}(?s).{0,40}",
            "[0-9a-f]{0,20}",
        ];
        raw.prop_flat_map(|s| prop_oneof![Just(s.clone()), Just(URL_SAFE_NO_PAD.encode(&s))])
    }

    proptest! {
        /// Whatever a client sends as a token, decoding answers or refuses naming `page_token`;
        /// it never panics.
        #[test]
        fn page_tokens_from_anywhere_never_panic(token in token(), query in any::<u64>()) {
            if let Err(e) = decode(&token, query) {
                prop_assert_eq!(&e.field[..], "page_token");
            }
        }
    }
}
