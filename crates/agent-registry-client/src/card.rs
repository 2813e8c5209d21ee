//! Agent cards on the client side: the digest the registry gives a card (`sha256:` of its
//! RFC 8785 canonical form), so a registration can name a stored card instead of sending it.

use sha2::{Digest, Sha256};

/// The digest of the card `json` (`sha256:<hex>`), or `None` when it is not a JSON object (the
/// registry will say what is wrong with it).
pub fn digest(json: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    if !value.is_object() {
        return None;
    }
    let canonical = serde_json_canonicalizer::to_vec(&value).ok()?;
    let hash = Sha256::digest(&canonical);
    Some(format!(
        "sha256:{}",
        hash.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn formatting_does_not_change_the_digest() {
        let a = super::digest(r#"{"b": [1, 2.0], "a": "x"}"#).unwrap();
        let b = super::digest("{\"a\":\"x\",\"b\":[1,2]}").unwrap();
        assert_eq!(a, b);
        assert!(a.starts_with("sha256:") && a.len() == 71);
        assert_eq!(super::digest("[1]"), None);
    }
}
