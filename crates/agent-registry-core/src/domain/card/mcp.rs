//! An MCP `server.json` as the official MCP Registry's schema defines it: `name` in reverse-DNS
//! form (`io.github.user/weather`), `description`, and `version` (a version, not a range).

use serde_json::{Map, Value};

use super::{Fields, ROOT, ValidationError, invalid};

/// Checks a `server.json`. It lists no skills: search reads its name and description.
pub(super) fn check(object: &Map<String, Value>) -> Result<(), ValidationError> {
    let card = Fields::new(ROOT, object);
    let name = card.string("name")?;
    let description = card.string("description")?;
    let version = card.string("version")?;
    let (namespace, server) = name.split_once('/').unwrap_or(("", ""));
    let name_ok = (3..=200).contains(&name.len())
        && !namespace.is_empty()
        && !server.is_empty()
        && namespace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        && server
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !name_ok {
        return Err(invalid(
            card.at("name"),
            "must be reverse-DNS: namespace/server, e.g. io.github.user/weather (3-200 \
             characters of a-z, A-Z, 0-9, '.', '-' before the one '/', and '_' also after it)",
        ));
    }
    let chars = description.chars().count();
    if !(1..=100).contains(&chars) {
        return Err(invalid(card.at("description"), "must be 1-100 characters"));
    }
    if version.is_empty() || version.len() > 255 {
        return Err(invalid(card.at("version"), "must be 1-255 characters"));
    }
    let range = version == "latest"
        || version.contains(['^', '~', '>', '<', '=', '*', ' '])
        || version.split('.').any(|part| part == "x" || part == "X");
    if range {
        return Err(invalid(
            card.at("version"),
            "must be one version (e.g. 1.0.2), not a range or `latest`",
        ));
    }
    Ok(())
}
