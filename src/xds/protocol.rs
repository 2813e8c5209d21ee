//! State-of-the-world xDS bookkeeping for one stream, without I/O: what the client subscribed
//! to per resource type, the version and nonce of the last response, and whether a request is
//! an ACK, a NACK, a stale one to ignore, or a change of subscription that needs an answer.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::protobuf::Any;

use super::resources::{CLUSTER, ENDPOINTS, LISTENER, ROUTE};

/// The resource types served, in the order a client learns their names.
pub const TYPES: [&str; 4] = [LISTENER, ROUTE, CLUSTER, ENDPOINTS];

/// Most names one stream may subscribe to per type: a stream's state is bounded by it.
pub const MAX_NAMES: usize = 1024;

#[derive(Debug, Default)]
struct TypeState {
    names: BTreeSet<String>,
    /// The nonce of the last response of this type; requests naming another are stale.
    nonce: Option<String>,
    /// The version of the last response of this type (0: none yet).
    version: u64,
    /// A digest of what that response carried, so an unchanged state is not sent again
    /// (a digest, not a copy: a stream holds no resources between responses).
    sent: Option<u64>,
    /// A response is owed whatever its content (a new subscription, a new stream).
    owed: bool,
}

/// What one request meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// The client accepted `version`; `resubscribed` when it also changed its names.
    Ack { version: String, resubscribed: bool },
    /// The client rejected the last response; it keeps `version`. Logged, never resent as is.
    Nack {
        version: String,
        detail: String,
        resubscribed: bool,
    },
    /// A first request for the type (a new stream, or a client that reconnected).
    Subscribed,
    /// It answers an older response than the last one sent: superseded, ignored.
    Stale,
    /// A type this server does not serve.
    UnknownType,
    /// More names than [`MAX_NAMES`].
    TooManyNames(usize),
}

/// One stream's subscriptions and the versions sent on it.
#[derive(Debug, Default)]
pub struct Protocol {
    types: BTreeMap<&'static str, TypeState>,
    nonces: u64,
}

impl Protocol {
    pub fn receive(&mut self, req: &DiscoveryRequest) -> Received {
        let Some(type_url) = TYPES.iter().copied().find(|t| *t == req.type_url) else {
            return Received::UnknownType;
        };
        if req.resource_names.len() > MAX_NAMES {
            return Received::TooManyNames(req.resource_names.len());
        }
        let state = self.types.entry(type_url).or_default();
        // No nonce, or none this stream ever sent of the type: a client new to this stream
        // (a reconnect may carry the nonce another replica gave it).
        let first = req.response_nonce.is_empty() || state.nonce.is_none();
        if !first && state.nonce.as_deref() != Some(req.response_nonce.as_str()) {
            return Received::Stale;
        }
        let names: BTreeSet<String> = req.resource_names.iter().cloned().collect();
        let resubscribed = names != state.names;
        if resubscribed || first {
            state.names = names;
            state.owed = true;
        }
        if first {
            return Received::Subscribed;
        }
        match &req.error_detail {
            Some(status) => Received::Nack {
                version: req.version_info.clone(),
                detail: status.message.clone(),
                resubscribed,
            },
            None => Received::Ack {
                version: req.version_info.clone(),
                resubscribed,
            },
        }
    }

    /// The names subscribed to for `type_url` (empty before any request of that type).
    pub fn names(&self, type_url: &str) -> impl Iterator<Item = &str> {
        self.types
            .get(type_url)
            .into_iter()
            .flat_map(|s| s.names.iter().map(String::as_str))
    }

    /// Whether a response of `type_url` is owed whatever its content.
    pub fn owed(&self, type_url: &str) -> bool {
        self.types.get(type_url).is_some_and(|s| s.owed)
    }

    /// Whether the client ever asked for `type_url` on this stream.
    pub fn subscribed(&self, type_url: &str) -> bool {
        self.types.contains_key(type_url)
    }

    /// The response carrying `resources` (every subscribed resource that exists), or `None`
    /// when nothing is owed and the client already has exactly these.
    pub fn respond(
        &mut self,
        type_url: &'static str,
        resources: Vec<Any>,
    ) -> Option<DiscoveryResponse> {
        let state = self.types.entry(type_url).or_default();
        let digest = digest(&resources);
        if !state.owed && state.sent == Some(digest) {
            return None;
        }
        self.nonces += 1;
        state.version += 1;
        state.owed = false;
        let nonce = self.nonces.to_string();
        state.nonce = Some(nonce.clone());
        state.sent = Some(digest);
        Some(DiscoveryResponse {
            version_info: state.version.to_string(),
            resources,
            type_url: type_url.to_string(),
            nonce,
            ..Default::default()
        })
    }
}

/// A digest of the resources' types and bytes (prost encodes deterministically).
fn digest(resources: &[Any]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for r in resources {
        r.type_url.hash(&mut h);
        r.value.hash(&mut h);
    }
    h.finish()
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
