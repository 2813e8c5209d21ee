//! Input validation: turns what a client sent into domain values, or names the offending field.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use uuid::Uuid;

use super::card::{CardInput, is_digest};
use super::types::{DEFAULT_NAMESPACE, Instance, InstanceStatus, NewInstance, now};

/// Bad input: INVALID_ARGUMENT for the caller, naming `field`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ValidationError {
    ValidationError {
        field: field.into(),
        message: message.into(),
    }
}

pub const MAX_LABELS: usize = 64;
pub const MAX_CAPABILITIES: usize = 64;
/// Most logical ids one Discover or Watch filter names (each is a range read of the index).
pub const MAX_FILTER_LOGICAL_IDS: usize = 256;
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
const MAX_ID_LEN: usize = 253;
const MAX_LABEL_VALUE_LEN: usize = 256;
const MAX_ENDPOINT_LEN: usize = 1024;

/// Lease bounds the server grants within.
#[derive(Debug, Clone, Copy)]
pub struct LeaseBounds {
    pub default_lease_ttl: Duration,
    pub min_lease_ttl: Duration,
    pub max_lease_ttl: Duration,
}

impl Default for LeaseBounds {
    fn default() -> Self {
        Self {
            default_lease_ttl: Duration::from_secs(15),
            min_lease_ttl: Duration::from_secs(2),
            max_lease_ttl: Duration::from_secs(3600),
        }
    }
}

/// A Register request as the API layer read it, before validation.
#[derive(Debug, Clone, Default)]
pub struct RegisterInput {
    pub namespace: String,
    pub logical_id: String,
    pub agent_type: String,
    pub version: String,
    pub endpoint: String,
    pub capabilities: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub actor_name: String,
    pub node_id: String,
    pub ip_address: String,
    pub pid: i64,
    /// `None`: the default. Negative values arrive as `Err(())` from the API layer.
    pub lease_ttl: Option<Result<Duration, ()>>,
    pub instance_id: String,
    pub expected_epoch: String,
    pub ready: bool,
    /// Who is registering: the caller's token name, set by the server, never by the request.
    pub registered_by: String,
    /// The caller may act on any owner's instance (an open server, an admin): a retry of
    /// another owner's id is then not refused.
    pub any_owner: bool,
    /// The card this instance serves, sent with the registration.
    pub card: Option<CardInput>,
    /// A card already stored for this namespace and logical id, by digest (`sha256:…`).
    pub card_digest: String,
}

/// Discover / Watch filters, validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstanceFilter {
    pub namespace: String,
    pub logical_ids: BTreeSet<String>,
    pub agent_type: Option<String>,
    pub capabilities: BTreeSet<String>,
    pub label_selector: BTreeMap<String, String>,
}

impl InstanceFilter {
    pub fn matches(&self, i: &Instance) -> bool {
        (self.logical_ids.is_empty() || self.logical_ids.contains(&i.logical_id))
            && self.agent_type.as_ref().is_none_or(|t| *t == i.agent_type)
            && self
                .capabilities
                .iter()
                .all(|c| i.capabilities.iter().any(|have| have == c))
            && self
                .label_selector
                .iter()
                .all(|(k, v)| i.labels.get(k) == Some(v))
    }
}

/// `default` when empty, otherwise a DNS label (1–63 of `a-z0-9-`, alphanumeric at both ends).
pub fn normalize_namespace(field: &str, value: &str) -> Result<String, ValidationError> {
    if value.is_empty() {
        return Ok(DEFAULT_NAMESPACE.to_string());
    }
    let ok = value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(value.to_string())
    } else {
        Err(invalid(
            field,
            "must be a DNS label: 1-63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit",
        ))
    }
}

/// A UUID in canonical hyphenated form (any case accepted, stored lowercase); nil is refused.
pub fn parse_uuid(field: &str, value: &str) -> Result<Uuid, ValidationError> {
    if value.is_empty() {
        return Err(invalid(field, "is required"));
    }
    match Uuid::try_parse(value) {
        Ok(id) if value.len() == 36 && !id.is_nil() => Ok(id),
        _ => Err(invalid(
            field,
            "must be a UUID in canonical form (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
        )),
    }
}

fn printable_ascii(s: &str) -> bool {
    s.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// A logical id as Register accepts it (1–253 printable ASCII characters).
pub fn validate_logical_id(value: &str) -> Result<(), ValidationError> {
    check_id("logical_id", value, true)
}

fn check_id(field: &str, value: &str, required: bool) -> Result<(), ValidationError> {
    if value.is_empty() {
        return if required {
            Err(invalid(field, "is required"))
        } else {
            Ok(())
        };
    }
    if value.len() > MAX_ID_LEN || !printable_ascii(value) {
        return Err(invalid(field, "must be 1-253 printable ASCII characters"));
    }
    Ok(())
}

fn check_text(field: &str, value: &str, max: usize) -> Result<(), ValidationError> {
    if value.len() > max {
        return Err(invalid(field, format!("must be at most {max} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// One name segment of a Kubernetes label key: 1–63 of `[A-Za-z0-9._-]`, alphanumeric ends.
fn label_name_ok(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Kubernetes label key syntax: an optional DNS-subdomain prefix and `/`, then a name.
fn label_key_ok(key: &str) -> bool {
    match key.split_once('/') {
        None => label_name_ok(key),
        Some((prefix, name)) => {
            prefix.len() <= 253
                && prefix
                    .split('.')
                    .all(|part| normalize_namespace("", part).is_ok() && !part.is_empty())
                && label_name_ok(name)
        }
    }
}

fn check_labels(field: &str, labels: &BTreeMap<String, String>) -> Result<(), ValidationError> {
    if labels.len() > MAX_LABELS {
        return Err(invalid(field, format!("at most {MAX_LABELS} labels")));
    }
    for (k, v) in labels {
        if !label_key_ok(k) {
            return Err(invalid(
                format!("{field}[{k:?}]"),
                "key must follow label key syntax: [prefix/]name, name 1-63 of [A-Za-z0-9._-] with alphanumeric ends",
            ));
        }
        check_text(&format!("{field}[{k:?}]"), v, MAX_LABEL_VALUE_LEN)?;
    }
    Ok(())
}

fn check_capabilities(field: &str, caps: &[String]) -> Result<(), ValidationError> {
    if caps.len() > MAX_CAPABILITIES {
        return Err(invalid(
            field,
            format!("at most {MAX_CAPABILITIES} capabilities"),
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, c) in caps.iter().enumerate() {
        check_id(&format!("{field}[{i}]"), c, true)?;
        if !seen.insert(c) {
            return Err(invalid(
                format!("{field}[{i}]"),
                format!("duplicate capability {c:?}"),
            ));
        }
    }
    Ok(())
}

/// Validates a registration completely before anything is written (SPEC §4.1).
pub fn validate_register(
    input: RegisterInput,
    limits: &LeaseBounds,
    max_card_bytes: usize,
) -> Result<NewInstance, ValidationError> {
    let namespace = normalize_namespace("namespace", &input.namespace)?;
    check_id("logical_id", &input.logical_id, true)?;
    check_id("agent_type", &input.agent_type, false)?;
    check_text("version", &input.version, MAX_ID_LEN)?;
    check_text("endpoint", &input.endpoint, MAX_ENDPOINT_LEN)?;
    check_capabilities("capabilities", &input.capabilities)?;
    check_labels("labels", &input.labels)?;
    check_text("actor_name", &input.actor_name, MAX_ID_LEN)?;
    check_text("node_id", &input.node_id, MAX_ID_LEN)?;
    if !input.ip_address.is_empty() && input.ip_address.parse::<IpAddr>().is_err() {
        return Err(invalid("ip_address", "must be an IPv4 or IPv6 address"));
    }
    if input.pid < 0 {
        return Err(invalid("pid", "must not be negative"));
    }
    let metadata: usize = [
        &input.agent_type,
        &input.version,
        &input.endpoint,
        &input.actor_name,
        &input.node_id,
        &input.ip_address,
    ]
    .iter()
    .map(|s| s.len())
    .sum::<usize>()
        + input.capabilities.iter().map(String::len).sum::<usize>()
        + input
            .labels
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
    if metadata > MAX_METADATA_BYTES {
        return Err(invalid(
            "labels",
            format!(
                "labels, capabilities and descriptive fields total {metadata} bytes; at most {MAX_METADATA_BYTES} allowed"
            ),
        ));
    }
    let lease_ttl = match input.lease_ttl {
        None => limits.default_lease_ttl,
        Some(Err(())) => return Err(invalid("lease_ttl", "must not be negative")),
        Some(Ok(d)) if d.is_zero() => limits.default_lease_ttl,
        Some(Ok(d)) => d.clamp(limits.min_lease_ttl, limits.max_lease_ttl),
    };
    let (instance_id, client_chose_id) = if input.instance_id.is_empty() {
        (Uuid::now_v7(), false)
    } else {
        (parse_uuid("instance_id", &input.instance_id)?, true)
    };
    let expected_epoch = if input.expected_epoch.is_empty() {
        None
    } else {
        Some(parse_uuid("expected_epoch", &input.expected_epoch)?)
    };
    let card = input
        .card
        .as_ref()
        .map(|c| c.parse(max_card_bytes))
        .transpose()?;
    let card_digest = match (&card, input.card_digest.as_str()) {
        (Some(card), "") => card.digest.clone(),
        (Some(card), named) if named == card.digest => named.to_string(),
        (Some(card), _) => {
            return Err(invalid(
                "card_digest",
                format!("differs from the digest of the card sent ({})", card.digest),
            ));
        }
        (None, "") => String::new(),
        (None, named) if is_digest(named) => named.to_string(),
        (None, _) => {
            return Err(invalid(
                "card_digest",
                "must be `sha256:` and 64 lowercase hex digits",
            ));
        }
    };
    let at = now();
    Ok(NewInstance {
        instance_id,
        client_chose_id,
        expected_epoch,
        ready: input.ready,
        any_owner: input.any_owner,
        card,
        template: Instance {
            instance_id,
            namespace,
            logical_id: input.logical_id,
            epoch: Uuid::nil(),
            status: InstanceStatus::Starting,
            agent_type: input.agent_type,
            version: input.version,
            endpoint: input.endpoint,
            capabilities: input.capabilities,
            labels: input.labels,
            actor_name: input.actor_name,
            registered_by: input.registered_by,
            node_id: input.node_id,
            ip_address: input.ip_address,
            pid: input.pid,
            lease_ttl,
            started_at: at,
            last_heartbeat: at,
            stopped_at: None,
            death_reason: None,
            card_digest,
            revision: 0,
        },
    })
}

/// Validates Discover / Watch filters.
pub fn validate_filter(
    namespace: &str,
    logical_ids: Vec<String>,
    agent_type: String,
    capabilities: Vec<String>,
    label_selector: BTreeMap<String, String>,
) -> Result<InstanceFilter, ValidationError> {
    let namespace = normalize_namespace("namespace", namespace)?;
    if logical_ids.len() > MAX_FILTER_LOGICAL_IDS {
        return Err(invalid(
            "logical_ids",
            format!("at most {MAX_FILTER_LOGICAL_IDS} logical ids"),
        ));
    }
    for (i, id) in logical_ids.iter().enumerate() {
        check_id(&format!("logical_ids[{i}]"), id, true)?;
    }
    check_id("agent_type", &agent_type, false)?;
    if capabilities.len() > MAX_CAPABILITIES {
        return Err(invalid(
            "capabilities",
            format!("at most {MAX_CAPABILITIES} capabilities"),
        ));
    }
    for (i, c) in capabilities.iter().enumerate() {
        check_id(&format!("capabilities[{i}]"), c, true)?;
    }
    check_labels("label_selector", &label_selector)?;
    Ok(InstanceFilter {
        namespace,
        logical_ids: logical_ids.into_iter().collect(),
        agent_type: (!agent_type.is_empty()).then_some(agent_type),
        capabilities: capabilities.into_iter().collect(),
        label_selector,
    })
}

/// AIP-158: 0 means 100, above 1000 is clamped, negative is refused.
pub fn validate_page_size(page_size: i32) -> Result<usize, ValidationError> {
    match page_size {
        n if n < 0 => Err(invalid("page_size", "must not be negative")),
        0 => Ok(100),
        n => Ok((n as usize).min(1000)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_keys_follow_kubernetes_syntax() {
        for ok in ["app", "app.kubernetes.io/name", "a_b-c.d", "x/y", "A1"] {
            assert!(label_key_ok(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "a/b/c",
            "/a",
            "a/",
            "Upper.Case/x",
            "sp ace",
            "é",
        ] {
            assert!(!label_key_ok(bad), "{bad}");
        }
    }

    #[test]
    fn namespaces_are_dns_labels() {
        assert_eq!(normalize_namespace("namespace", "").unwrap(), "default");
        assert!(normalize_namespace("namespace", "team-a1").is_ok());
        assert!(normalize_namespace("namespace", &"a".repeat(63)).is_ok());
        for bad in ["A", "-a", "a-", "a_b", "a.b", &"a".repeat(64)] {
            assert!(normalize_namespace("namespace", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lease_is_clamped_into_bounds() {
        let limits = LeaseBounds::default();
        let ttl = |d| {
            validate_register(
                RegisterInput {
                    logical_id: "a".into(),
                    lease_ttl: d,
                    ..Default::default()
                },
                &limits,
                crate::domain::card::DEFAULT_MAX_CARD_BYTES,
            )
            .map(|n| n.template.lease_ttl)
        };
        assert_eq!(ttl(None).unwrap(), Duration::from_secs(15));
        assert_eq!(
            ttl(Some(Ok(Duration::ZERO))).unwrap(),
            Duration::from_secs(15)
        );
        assert_eq!(
            ttl(Some(Ok(Duration::from_millis(10)))).unwrap(),
            Duration::from_secs(2)
        );
        assert_eq!(
            ttl(Some(Ok(Duration::from_secs(7200)))).unwrap(),
            Duration::from_secs(3600)
        );
        assert_eq!(ttl(Some(Err(()))).unwrap_err().field, "lease_ttl");
    }
}
