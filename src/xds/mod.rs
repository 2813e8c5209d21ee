//! The xDS front end: an Aggregated Discovery Service (state of the world) on the gRPC port, so
//! a stock gRPC client resolves `xds:///<logical_id>.<namespace>` to the live instances of
//! that logical id. It reads the index through the registry's use cases and follows the same
//! change feed as Watch; it never writes.
//!
//! Resource names: every resource of a target has the target's name (see [`names`]); the
//! Listener routes to the Cluster of that name, whose endpoints are the ClusterLoadAssignment
//! of that name (see [`resources`]).

pub mod names;
pub mod protocol;
pub mod resources;
mod status;
mod stream;

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::security::Caller;
use crate::security::status::no_caller;
use crate::security::tokens::Revocation;
use agent_registry_core::registry::Registry;

/// How the xDS server maps instances to endpoints.
#[derive(Debug, Clone)]
pub struct XdsConfig {
    /// The label whose value (1–65536) weighs an endpoint; empty: every endpoint weighs 1.
    pub weight_label: String,
}

impl Default for XdsConfig {
    fn default() -> Self {
        Self {
            weight_label: DEFAULT_WEIGHT_LABEL.into(),
        }
    }
}

pub const DEFAULT_WEIGHT_LABEL: &str = "agent-registry/weight";

/// Instances left out of (or weighed by default in) a load assignment are logged once per
/// reason; this many are remembered before the memory starts over.
const REPORTED_MAX: usize = 10_000;

/// What every stream of this replica shares.
pub(crate) struct Shared {
    registry: Arc<Registry>,
    config: XdsConfig,
    reported: Mutex<HashSet<(uuid::Uuid, String)>>,
}

impl Shared {
    fn report_once(&self, left_out: &resources::LeftOut) {
        let mut seen = agent_registry_core::common::lock(&self.reported);
        if seen.len() >= REPORTED_MAX {
            seen.clear();
        }
        if seen.insert((left_out.instance_id, left_out.why.clone())) {
            tracing::warn!(instance_id = %left_out.instance_id, why = %left_out.why,
                "xDS: instance not served as given");
        }
    }
}

/// The ADS service.
pub struct XdsApi(Arc<Shared>);

impl XdsApi {
    pub fn new(registry: Arc<Registry>, config: XdsConfig) -> Self {
        Self(Arc::new(Shared {
            registry,
            config,
            reported: Mutex::default(),
        }))
    }

    /// The tonic service; `max_message_bytes` bounds decoding as for the other services.
    pub fn service(self, max_message_bytes: usize) -> AggregatedDiscoveryServiceServer<XdsApi> {
        AggregatedDiscoveryServiceServer::new(self).max_decoding_message_size(max_message_bytes)
    }
}

/// How a client names itself in the log: its node id, else its cluster.
fn peer_name(node: &Node) -> String {
    match node.id.is_empty() {
        false => node.id.clone(),
        true => node.cluster.clone(),
    }
}

type Responses<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for XdsApi {
    type StreamAggregatedResourcesStream = Responses<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = Responses<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let caller = request
            .extensions()
            .get::<Caller>()
            .cloned()
            .ok_or_else(no_caller)?;
        let revocation = request.extensions().get::<Revocation>().cloned();
        let changes = self.0.registry.changes();
        let (out, responses) = tokio::sync::mpsc::channel(1);
        let stream = stream::AdsStream {
            shared: self.0.clone(),
            caller,
            node: String::new(),
            protocol: protocol::Protocol::default(),
            endpoints_stale: false,
            recheck: None,
            denied: Default::default(),
        };
        tokio::spawn(stream.run(request.into_inner(), out, changes, revocation));
        Ok(Response::new(Box::pin(ReceiverStream::new(responses))))
    }

    async fn delta_aggregated_resources(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Err(status::unimplemented(
            "incremental (delta) xDS is not served; use state-of-the-world ADS",
        ))
    }
}
