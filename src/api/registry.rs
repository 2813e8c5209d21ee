//! `RegistryService`: Register, Heartbeat, Deregister.

use std::sync::Arc;

use tonic::{Request, Response, Status, Streaming};

use super::{authorize_instance, authorize_namespace, caller, convert, heartbeat};
use crate::proto::{self, registry_service_server::RegistryService};
use crate::registry::Registry;
use crate::security::Action;
use crate::security::tokens::Revocation;

pub struct RegistryApi(pub Arc<Registry>);

#[tonic::async_trait]
impl RegistryService for RegistryApi {
    async fn register(
        &self,
        request: Request<proto::RegisterRequest>,
    ) -> Result<Response<proto::RegisterResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        authorize_namespace(&caller, Action::Register, &r.namespace)?;
        let any_owner = caller.may_act_for_others();
        let input = convert::register_input(r, caller.name(), any_owner);
        let instance = self.0.register(input).await?;
        Ok(Response::new(proto::RegisterResponse {
            heartbeat_interval: Some(convert::duration(
                self.0.heartbeat_interval(instance.lease_ttl),
            )),
            instance: Some(convert::instance(&instance)),
        }))
    }

    type HeartbeatStream = heartbeat::HeartbeatStream;

    async fn heartbeat(
        &self,
        request: Request<Streaming<proto::HeartbeatRequest>>,
    ) -> Result<Response<Self::HeartbeatStream>, Status> {
        let caller = caller(&request)?;
        let revocation = request.extensions().get::<Revocation>().cloned();
        Ok(Response::new(heartbeat::open(
            self.0.clone(),
            caller,
            revocation,
            request.into_inner(),
        )))
    }

    async fn deregister(
        &self,
        request: Request<proto::DeregisterRequest>,
    ) -> Result<Response<proto::DeregisterResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        authorize_instance(&self.0, &caller, Action::Deregister, &r.instance_id).await?;
        let instance = self.0.deregister(&r.instance_id, &r.reason).await?;
        Ok(Response::new(proto::DeregisterResponse {
            instance: Some(convert::instance(&instance)),
        }))
    }
}
