//! The contract's messages as JSON by the proto3 JSON mapping — lowerCamelCase names, enums by
//! name, 64-bit integers as strings, RFC 3339 times, durations as `"15s"`, default values left
//! out — driven by the descriptors reflection serves, so the HTTP API reads like grpcurl.

use std::sync::LazyLock;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};

use crate::proto;

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(proto::FILE_DESCRIPTOR_SET).expect("the contract's descriptors decode")
});

/// A message of the contract, by its full protobuf name.
pub trait Named: Message + Default {
    const NAME: &'static str;

    fn descriptor() -> MessageDescriptor {
        POOL.get_message_by_name(Self::NAME)
            .expect("every named message is in the contract")
    }
}

macro_rules! named {
    ($($t:ident),* $(,)?) => {$(
        impl Named for proto::$t {
            const NAME: &'static str = concat!("agentregistry.v1.", stringify!($t));
        }
    )*};
}

named!(
    RegisterRequest,
    RegisterResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    DeregisterRequest,
    DeregisterResponse,
    DiscoverResponse,
    GetInstanceResponse,
    WatchEvent,
    ListNamespacesResponse,
    GetNamespaceResponse,
    AdvanceEpochRequest,
    AdvanceEpochResponse,
    DrainInstanceRequest,
    DrainInstanceResponse,
    EvictInstanceRequest,
    EvictInstanceResponse,
    SearchAgentsResponse,
    GetAgentResponse,
    PublishCardResponse,
    ListCardVersionsResponse,
);

/// `message` as a JSON value.
pub fn to_value<M: Named>(message: &M) -> serde_json::Value {
    let dynamic = DynamicMessage::decode(M::descriptor(), message.encode_to_vec().as_slice())
        .expect("a message decodes from its own encoding");
    serde_json::to_value(&dynamic).expect("a message always maps to JSON")
}

/// A request body as `M`; the error names what was wrong (an unknown or mistyped field).
pub fn from_slice<M: Named>(body: &[u8]) -> Result<M, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(M::default());
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let dynamic = DynamicMessage::deserialize(M::descriptor(), &mut de)
        .and_then(|m| de.end().map(|()| m))
        .map_err(|e| e.to_string())?;
    dynamic.transcode_to::<M>().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_follow_the_proto3_json_mapping() {
        let reply = proto::HeartbeatResponse {
            sequence: 7,
            lease_expires_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            heartbeat_interval: Some(prost_types::Duration {
                seconds: 5,
                nanos: 0,
            }),
            directive: proto::Directive::Drain as i32,
            reason: String::new(),
        };
        assert_eq!(
            to_value(&reply),
            serde_json::json!({
                "sequence": "7",
                "leaseExpiresAt": "2023-11-14T22:13:20Z",
                "heartbeatInterval": "5s",
                "directive": "DIRECTIVE_DRAIN",
            })
        );
    }

    #[test]
    fn bodies_are_read_by_the_mapping_and_unknown_fields_named() {
        let r: proto::RegisterRequest = from_slice(
            br#"{"logicalId":"planner","leaseTtl":"20s","labels":{"zone":"a"},"pid":"42","ready":true}"#,
        )
        .unwrap();
        assert_eq!(r.logical_id, "planner");
        assert_eq!(r.lease_ttl.unwrap().seconds, 20);
        assert_eq!(r.pid, 42);
        assert!(r.ready);
        let e = from_slice::<proto::RegisterRequest>(br#"{"logicalID":"x"}"#).unwrap_err();
        assert!(e.contains("logicalID"), "{e}");
        let e = from_slice::<proto::RegisterRequest>(br#"{"leaseTtl":"soon"}"#).unwrap_err();
        assert!(!e.is_empty());
        assert_eq!(
            from_slice::<proto::RegisterRequest>(b" ").unwrap(),
            Default::default()
        );
    }
}
