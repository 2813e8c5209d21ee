//! Query strings into the contract's request messages: Discover's and Watch's filters
//! (repeated parameters for repeated fields, `label=key=value`), views and paging. An unknown
//! parameter is refused by name, so a misspelt filter never silently widens a listing.

use std::collections::HashMap;

use super::error::{ApiError, invalid};
use crate::proto;

/// The pairs of a query string, in order.
fn pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn int<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ApiError> {
    value
        .parse()
        .map_err(|_| invalid(name, &format!("`{value}` is not an integer")))
}

/// The filters Discover and Watch share, with the namespace from the path.
#[derive(Default)]
struct Filters {
    logical_ids: Vec<String>,
    agent_type: String,
    capabilities: Vec<String>,
    labels: HashMap<String, String>,
}

impl Filters {
    /// The filters of `query`; every other parameter goes to `other`, which says whether it
    /// took it (`known` names those it takes, for the error about one it does not).
    fn read(
        query: Option<&str>,
        known: &str,
        mut other: impl FnMut(&str, String) -> Result<bool, ApiError>,
    ) -> Result<Filters, ApiError> {
        let mut f = Filters::default();
        for (name, value) in pairs(query) {
            match name.as_str() {
                "logicalId" => f.logical_ids.push(value),
                "agentType" => f.agent_type = value,
                "capability" => f.capabilities.push(value),
                "label" => {
                    let Some((k, v)) = value.split_once('=') else {
                        return Err(invalid("label", "expected `key=value`"));
                    };
                    f.labels.insert(k.to_string(), v.to_string());
                }
                _ if other(&name, value)? => {}
                _ => return Err(unknown(&name, &format!("{FILTERS}, {known}"))),
            }
        }
        Ok(f)
    }

    /// Logical ids, agent type, capabilities, label selector.
    fn into_parts(self) -> (Vec<String>, String, Vec<String>, HashMap<String, String>) {
        (
            self.logical_ids,
            self.agent_type,
            self.capabilities,
            self.labels,
        )
    }
}

fn unknown(name: &str, known: &str) -> ApiError {
    invalid(name, &format!("unknown query parameter; known: {known}"))
}

const FILTERS: &str = "logicalId, agentType, capability, label";

/// `view=active|live|all` (or the enum's own names).
fn view(value: &str) -> Result<proto::DiscoverView, ApiError> {
    let v = value.to_ascii_uppercase();
    let v = v.strip_prefix("DISCOVER_VIEW_").unwrap_or(&v);
    match v {
        "ACTIVE" => Ok(proto::DiscoverView::Active),
        "LIVE" => Ok(proto::DiscoverView::Live),
        "ALL" => Ok(proto::DiscoverView::All),
        _ => Err(invalid("view", "expected active, live or all")),
    }
}

/// `GET /v1/namespaces/{ns}/instances?…`
pub fn discover(
    namespace: String,
    query: Option<&str>,
) -> Result<proto::DiscoverRequest, ApiError> {
    let mut r = proto::DiscoverRequest {
        namespace,
        ..Default::default()
    };
    let f = Filters::read(query, "view, pageSize, pageToken", |name, value| {
        match name {
            "view" => r.view = view(&value)? as i32,
            "pageSize" => r.page_size = int("pageSize", &value)?,
            "pageToken" => r.page_token = value,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    (
        r.logical_ids,
        r.agent_type,
        r.capabilities,
        r.label_selector,
    ) = f.into_parts();
    Ok(r)
}

/// `GET /v1/namespaces/{ns}/watch?…`; a `Last-Event-ID` (the browser's resume) overrides
/// `startRevision`.
pub fn watch(
    namespace: String,
    query: Option<&str>,
    last_event_id: Option<&str>,
) -> Result<proto::WatchRequest, ApiError> {
    let mut r = proto::WatchRequest {
        namespace,
        ..Default::default()
    };
    let f = Filters::read(query, "startRevision", |name, value| {
        match name {
            "startRevision" => r.start_revision = int("startRevision", &value)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    if let Some(id) = last_event_id.map(str::trim).filter(|id| !id.is_empty()) {
        r.start_revision = int("Last-Event-ID", id)?;
    }
    (
        r.logical_ids,
        r.agent_type,
        r.capabilities,
        r.label_selector,
    ) = f.into_parts();
    Ok(r)
}

/// `GET /v1/namespaces?pageSize=&pageToken=`
pub fn namespaces(query: Option<&str>) -> Result<proto::ListNamespacesRequest, ApiError> {
    let mut r = proto::ListNamespacesRequest::default();
    for (name, value) in pairs(query) {
        match name.as_str() {
            "pageSize" => r.page_size = int("pageSize", &value)?,
            "pageToken" => r.page_token = value,
            _ => return Err(unknown(&name, "pageSize, pageToken")),
        }
    }
    Ok(r)
}

/// `GET /v1/namespaces/{ns}/agents?…`: SearchAgents (`kind=a2a|mcp`, repeatable lists).
pub fn search(
    namespace: String,
    query: Option<&str>,
) -> Result<proto::SearchAgentsRequest, ApiError> {
    let mut r = proto::SearchAgentsRequest {
        namespace,
        ..Default::default()
    };
    for (name, value) in pairs(query) {
        match name.as_str() {
            "query" | "q" => r.query = value,
            "skill" => r.skills.push(value),
            "tag" => r.tags.push(value),
            "inputMode" => r.input_modes.push(value),
            "outputMode" => r.output_modes.push(value),
            "kind" => r.kinds.push(kind(&value)? as i32),
            "includeOffline" => {
                r.include_offline = match value.as_str() {
                    "true" | "1" | "" => true,
                    "false" | "0" => false,
                    _ => return Err(invalid("includeOffline", "expected true or false")),
                }
            }
            "pageSize" => r.page_size = int("pageSize", &value)?,
            "pageToken" => r.page_token = value,
            _ => {
                return Err(unknown(
                    &name,
                    "query, skill, tag, inputMode, outputMode, kind, includeOffline, pageSize, \
                     pageToken",
                ));
            }
        }
    }
    Ok(r)
}

/// `kind=a2a|mcp` (or the enum's own names).
pub fn kind(value: &str) -> Result<proto::CardKind, ApiError> {
    let v = value.to_ascii_uppercase();
    match v.strip_prefix("CARD_KIND_").unwrap_or(&v) {
        "A2A" => Ok(proto::CardKind::A2a),
        "MCP" => Ok(proto::CardKind::Mcp),
        _ => Err(invalid("kind", "expected a2a or mcp")),
    }
}

/// `PUT …/card?kind=…`: the kind of the card in the body (default `a2a`).
pub fn card_kind(query: Option<&str>) -> Result<proto::CardKind, ApiError> {
    let mut out = proto::CardKind::A2a;
    for (name, value) in pairs(query) {
        match name.as_str() {
            "kind" => out = kind(&value)?,
            _ => return Err(unknown(&name, "kind")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_fill_repeated_fields() {
        let r = discover(
            "prod".into(),
            Some("view=live&logicalId=a&logicalId=b&capability=x&label=zone%3Deu&label=tier=1&pageSize=5"),
        )
        .unwrap_or_else(|e| panic!("{}", e.0));
        assert_eq!(r.view, proto::DiscoverView::Live as i32);
        assert_eq!(r.logical_ids, ["a", "b"]);
        assert_eq!(r.capabilities, ["x"]);
        assert_eq!(r.label_selector["zone"], "eu");
        assert_eq!(r.label_selector["tier"], "1");
        assert_eq!(r.page_size, 5);
    }

    #[test]
    fn bad_parameters_are_named() {
        let e = discover("p".into(), Some("capabilty=x")).err().unwrap();
        assert!(e.0.message().starts_with("capabilty:"), "{}", e.0.message());
        let e = discover("p".into(), Some("pageSize=ten")).err().unwrap();
        assert!(e.0.message().starts_with("pageSize:"), "{}", e.0.message());
        let e = discover("p".into(), Some("label=nokey")).err().unwrap();
        assert!(e.0.message().starts_with("label:"), "{}", e.0.message());
        let e = watch("p".into(), None, Some("x")).err().unwrap();
        assert!(
            e.0.message().starts_with("Last-Event-ID:"),
            "{}",
            e.0.message()
        );
    }

    #[test]
    fn last_event_id_overrides_the_start_revision() {
        let r = watch("p".into(), Some("startRevision=3"), Some("17"))
            .unwrap_or_else(|e| panic!("{}", e.0));
        assert_eq!(r.start_revision, 17);
    }
}
