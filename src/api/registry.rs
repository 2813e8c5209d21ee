//! `RegistryService`: Register, Heartbeat, Deregister.

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::convert;
use crate::domain::RegisterInput;
use crate::proto::{self, registry_service_server::RegistryService};
use crate::registry::Registry;

pub struct RegistryApi(pub Arc<Registry>);

type HeartbeatStream = Pin<Box<dyn Stream<Item = Result<proto::HeartbeatResponse, Status>> + Send>>;

#[tonic::async_trait]
impl RegistryService for RegistryApi {
    async fn register(
        &self,
        request: Request<proto::RegisterRequest>,
    ) -> Result<Response<proto::RegisterResponse>, Status> {
        let r = request.into_inner();
        let input = RegisterInput {
            namespace: r.namespace,
            logical_id: r.logical_id,
            agent_type: r.agent_type,
            version: r.version,
            endpoint: r.endpoint,
            capabilities: r.capabilities,
            labels: r.labels.into_iter().collect(),
            actor_name: r.actor_name,
            node_id: r.node_id,
            ip_address: r.ip_address,
            pid: r.pid,
            lease_ttl: convert::from_duration(r.lease_ttl),
            instance_id: r.instance_id,
            expected_epoch: r.expected_epoch,
            ready: r.ready,
        };
        let instance = self.0.register(input).await?;
        Ok(Response::new(proto::RegisterResponse {
            heartbeat_interval: Some(convert::duration(Registry::heartbeat_interval(
                instance.lease_ttl,
            ))),
            instance: Some(convert::instance(&instance)),
        }))
    }

    type HeartbeatStream = HeartbeatStream;

    async fn heartbeat(
        &self,
        _request: Request<Streaming<proto::HeartbeatRequest>>,
    ) -> Result<Response<Self::HeartbeatStream>, Status> {
        Err(Status::unimplemented(
            "Heartbeat is not implemented by this server version",
        ))
    }

    async fn deregister(
        &self,
        request: Request<proto::DeregisterRequest>,
    ) -> Result<Response<proto::DeregisterResponse>, Status> {
        let r = request.into_inner();
        let instance = self.0.deregister(&r.instance_id, &r.reason).await?;
        Ok(Response::new(proto::DeregisterResponse {
            instance: Some(convert::instance(&instance)),
        }))
    }
}
