//! `RegistryService`: Register, Heartbeat, Deregister.

use std::sync::Arc;

use tonic::{Request, Response, Status, Streaming};

use super::{authorize_instance, authorize_namespace, caller, convert, heartbeat, status};
use crate::proto::{self, registry_service_server::RegistryService};
use crate::security::tokens::Revocation;
use crate::security::{Action, Caller};
use agent_registry_core::registry::Registry;

pub struct RegistryApi(pub Arc<Registry>);

/// Register: a new instance (or the same one, on a retry), durable before the reply.
pub async fn register(
    registry: &Registry,
    caller: &Caller,
    r: proto::RegisterRequest,
) -> Result<proto::RegisterResponse, Status> {
    authorize_namespace(caller, Action::Register, &r.namespace)?;
    let any_owner = caller.may_act_for_others();
    let input = convert::register_input(r, caller.name(), any_owner);
    let instance = registry.register(input).await.map_err(status::registry)?;
    Ok(proto::RegisterResponse {
        heartbeat_interval: Some(convert::duration(
            registry.heartbeat_interval(instance.lease_ttl),
        )),
        instance: Some(convert::instance(&instance)),
    })
}

/// Deregister: DEAD (DEREGISTERED); its heartbeat stream ends.
pub async fn deregister(
    registry: &Registry,
    caller: &Caller,
    r: proto::DeregisterRequest,
) -> Result<proto::DeregisterResponse, Status> {
    authorize_instance(registry, caller, Action::Deregister, &r.instance_id).await?;
    let instance = registry
        .deregister(&r.instance_id, &r.reason)
        .await
        .map_err(status::registry)?;
    Ok(proto::DeregisterResponse {
        instance: Some(convert::instance(&instance)),
    })
}

bind! {
    impl RegistryService for RegistryApi {
        register: RegisterRequest => RegisterResponse;
        deregister: DeregisterRequest => DeregisterResponse;
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
}
