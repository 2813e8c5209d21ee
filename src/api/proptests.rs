//! Property tests over everything a request goes through before the registry acts on it:
//! protobuf decoding, the conversions of this module and the domain's validation. No input
//! panics; whatever validation accepts is within the documented bounds. `PROPTEST_CASES`
//! raises the number of cases for a longer run.

use std::time::Duration;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use prost::Message;

use super::{convert, discovery, heartbeat};
use crate::proto;
use agent_registry_core::domain::card::DEFAULT_MAX_CARD_BYTES;
use agent_registry_core::domain::{
    LeaseBounds, MAX_CAPABILITIES, MAX_LABELS, normalize_namespace, parse_uuid, validate_page_size,
    validate_register,
};

/// JSON that is sometimes a card and often nearly one: objects with card members of any type.
fn card_json() -> impl Strategy<Value = String> {
    let member = prop_oneof![
        Just("name"),
        Just("description"),
        Just("version"),
        Just("skills"),
        Just("supportedInterfaces"),
        Just("capabilities"),
        Just("defaultInputModes"),
        Just("url"),
        Just("protocolVersion"),
        Just("tags"),
        Just("id"),
    ];
    let leaf = prop_oneof![
        text().prop_map(serde_json::Value::String),
        any::<i64>().prop_map(serde_json::Value::from),
        Just(serde_json::Value::Null),
    ];
    let value = leaf.prop_recursive(3, 24, 4, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            btree_map(text(), inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    });
    btree_map(member, value, 0..10).prop_map(|m| {
        let object: serde_json::Map<String, serde_json::Value> =
            m.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        serde_json::Value::Object(object).to_string()
    })
}

/// Strings that are sometimes plausible and often hostile: any Unicode, control characters,
/// label-like and UUID-like shapes, and long runs.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        "[a-z0-9]([a-z0-9.-]{0,70}[a-z0-9])?",
        "[a-z0-9.-]{0,20}/[a-zA-Z0-9_.-]{0,70}",
        "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "[\\x00-\\x1f\\x7f]{0,8}",
        (0usize..2000).prop_map(|n| "x".repeat(n)),
    ]
}

fn duration() -> impl Strategy<Value = Option<prost_types::Duration>> {
    proptest::option::of(
        (any::<i64>(), any::<i32>())
            .prop_map(|(seconds, nanos)| prost_types::Duration { seconds, nanos }),
    )
}

prop_compose! {
    fn register_request()(
        namespace in text(),
        logical_id in text(),
        agent_type in text(),
        version in text(),
        endpoint in text(),
        capabilities in vec(text(), 0..80),
        labels in btree_map(text(), text(), 0..80),
        actor_name in text(),
        pid in any::<i64>(),
        lease_ttl in duration(),
        instance_id in text(),
        expected_epoch in text(),
        ready in any::<bool>(),
        card in proptest::option::of((0..4i32, prop_oneof![text(), card_json()])),
        card_digest in prop_oneof![text(), "sha256:[0-9a-f]{64}"],
    ) -> proto::RegisterRequest {
        proto::RegisterRequest {
            namespace, logical_id, agent_type, version, endpoint, capabilities,
            labels: labels.into_iter().collect(), actor_name, node_id: String::new(),
            ip_address: String::new(), pid, lease_ttl, instance_id, expected_epoch, ready,
            card: card.map(|(kind, json)| proto::Card { kind, json }),
            card_digest,
        }
    }
}

/// Runs every conversion and check a request of each kind meets, as the handlers do.
fn through_the_handlers(bytes: &[u8]) {
    if let Ok(r) = proto::RegisterRequest::decode(bytes) {
        let _ = validate_register(
            convert::register_input(r, "", false),
            &LeaseBounds::default(),
            DEFAULT_MAX_CARD_BYTES,
        );
    }
    if let Ok(r) = proto::DiscoverRequest::decode(bytes) {
        let _ = discovery::view(r.view);
        let _ = validate_page_size(r.page_size);
        let _ = discovery::filter(
            &r.namespace,
            r.logical_ids,
            r.agent_type,
            r.capabilities,
            r.label_selector,
        );
    }
    if let Ok(r) = proto::WatchRequest::decode(bytes) {
        let _ = discovery::filter(
            &r.namespace,
            r.logical_ids,
            r.agent_type,
            r.capabilities,
            r.label_selector,
        );
    }
    if let Ok(r) = proto::HeartbeatRequest::decode(bytes) {
        let _ = parse_uuid("instance_id", &r.instance_id);
        let _ = heartbeat::status_of(r.status);
    }
    if let Ok(r) = proto::DeregisterRequest::decode(bytes) {
        let _ = parse_uuid("instance_id", &r.instance_id);
    }
    if let Ok(r) = proto::ListNamespacesRequest::decode(bytes) {
        let _ = validate_page_size(r.page_size);
    }
    if let Ok(r) = proto::AdvanceEpochRequest::decode(bytes) {
        let _ = normalize_namespace("namespace", &r.namespace);
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..4096)) {
        through_the_handlers(&bytes);
    }

    /// Well-formed protobuf with hostile field values, encoded and decoded like the wire does.
    #[test]
    fn hostile_registrations_are_accepted_within_bounds_or_refused_naming_a_field(
        req in register_request()
    ) {
        through_the_handlers(&req.encode_to_vec());
        let limits = LeaseBounds::default();
        let input = convert::register_input(req, "t", false);
        match validate_register(input, &limits, DEFAULT_MAX_CARD_BYTES) {
            Ok(new) => {
                let i = &new.template;
                prop_assert!(normalize_namespace("namespace", &i.namespace).is_ok());
                prop_assert!(!i.logical_id.is_empty() && i.logical_id.len() <= 253);
                prop_assert!(i.labels.len() <= MAX_LABELS);
                prop_assert!(i.capabilities.len() <= MAX_CAPABILITIES);
                prop_assert!(i.lease_ttl >= limits.min_lease_ttl);
                prop_assert!(i.lease_ttl <= limits.max_lease_ttl);
                prop_assert_eq!(&i.registered_by, "t");
            }
            Err(e) => {
                prop_assert!(!e.field.is_empty(), "an error names its field: {}", e);
            }
        }
    }

    #[test]
    fn durations_convert_or_are_refused(d in duration()) {
        match convert::from_duration(d) {
            None => prop_assert!(d.is_none()),
            Some(Ok(v)) => prop_assert!(v <= Duration::new(i64::MAX as u64, 999_999_999)),
            Some(Err(())) => {
                let d = d.unwrap();
                prop_assert!(d.seconds < 0 || d.nanos < 0 || d.nanos >= 1_000_000_000);
            }
        }
    }
}
