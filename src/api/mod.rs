//! The gRPC front end: thin handlers that decode the request, authorize it, call a registry use
//! case and encode the reply; the contract's operations (`ops`) the HTTP front end binds too;
//! the layer that counts calls. Its statuses are built in `status` alone.
//!
//! Generated types are seen by the front ends (`api`, `web`, `xds`), `proto`, `server` (health
//! and reflection) and the wire clients (`ctl`, `sidecar`, and the `agent-registry-client`
//! crate). `agent-registry-core` cannot see them: it does not depend on the contract.

/// Implements a service whose methods bind the operations of the same name: the caller from
/// the access layer, the request's message, the operation's reply. Other items pass through.
macro_rules! bind {
    (impl $service:ident for $api:ident {
        $($method:ident: $req:ident => $resp:ident;)*
    } $($rest:tt)*) => {
        #[tonic::async_trait]
        impl $service for $api {
            $(
                async fn $method(
                    &self,
                    request: Request<proto::$req>,
                ) -> Result<Response<proto::$resp>, Status> {
                    let caller = caller(&request)?;
                    $method(&self.0, &caller, request.into_inner())
                        .await
                        .map(Response::new)
                }
            )*
            $($rest)*
        }
    };
}

mod admin;
pub mod call_metrics;
pub mod cards;
mod catalog;
#[doc(hidden)]
pub mod convert;
mod discovery;
mod heartbeat;
mod registry;
pub mod status;

#[cfg(test)]
mod proptests;

use std::sync::Arc;

use crate::proto::{
    admin_service_server::AdminServiceServer, catalog_service_server::CatalogServiceServer,
    discovery_service_server::DiscoveryServiceServer,
    registry_service_server::RegistryServiceServer,
};
use crate::security::policy::Namespaces;
use crate::security::{Action, Caller, Role, Scope};
use agent_registry_core::registry::{Registry, RegistryError};

pub use admin::AdminApi;
pub use catalog::CatalogApi;
pub use discovery::DiscoveryApi;
pub use registry::RegistryApi;

/// The contract's operations as functions of the registry, the caller and the request's
/// message: the gRPC services above bind them to their methods, and the HTTP API binds the
/// same functions to its routes, so both front ends answer alike by construction.
pub mod ops {
    pub use super::admin::{
        advance_epoch, drain_instance, evict_instance, get_namespace, list_namespaces,
    };
    pub use super::catalog::{
        get_agent, get_card, list_card_versions, publish_card, search_agents,
    };
    pub use super::discovery::{WatchStream, discover, get_instance, watch};
    pub use super::heartbeat::beat_once;
    pub use super::registry::{deregister, register};
}

/// The services of the contract, sharing one registry.
pub struct Services {
    pub registry: RegistryServiceServer<RegistryApi>,
    pub discovery: DiscoveryServiceServer<DiscoveryApi>,
    pub admin: AdminServiceServer<AdminApi>,
    pub catalog: CatalogServiceServer<CatalogApi>,
}

/// `max_message_bytes` bounds decoding; the access layer refuses longer messages first, with
/// RESOURCE_EXHAUSTED.
pub fn services(core: Arc<Registry>, max_message_bytes: usize) -> Services {
    Services {
        registry: RegistryServiceServer::new(RegistryApi(core.clone()))
            .max_decoding_message_size(max_message_bytes),
        discovery: DiscoveryServiceServer::new(DiscoveryApi(core.clone()))
            .max_decoding_message_size(max_message_bytes),
        admin: AdminServiceServer::new(AdminApi(core.clone()))
            .max_decoding_message_size(max_message_bytes),
        catalog: CatalogServiceServer::new(CatalogApi(core))
            .max_decoding_message_size(max_message_bytes),
    }
}

/// The caller the access layer established for this request. Its absence is a wiring bug:
/// refuse rather than run open.
fn caller<T>(request: &tonic::Request<T>) -> Result<Caller, tonic::Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(crate::security::status::no_caller)
}

/// Authorizes `action` on the instance `id` names: the role first (so a forbidden call costs
/// no lookup), then the instance's namespace and owner. An id that no replica knows is
/// NOT_FOUND for every token but an unrestricted admin, without reaching the store (where a
/// row may linger for a moment after compaction).
async fn authorize_instance(
    registry: &Registry,
    caller: &Caller,
    action: Action,
    id: &str,
) -> Result<(), tonic::Status> {
    let Caller::Token(grant) = caller else {
        return Ok(());
    };
    caller.authorize(action, Scope::Listing)?;
    match registry.locate(id).await.map_err(status::registry)? {
        Some(instance) => {
            caller.authorize(
                action,
                Scope::Instance {
                    namespace: &instance.namespace,
                    owner: &instance.registered_by,
                },
            )?;
            Ok(())
        }
        None if grant.role == Role::Admin && grant.namespaces == Namespaces::All => Ok(()),
        None => Err(status::registry(RegistryError::NotFound(format!(
            "instance_id {id}"
        )))),
    }
}

/// Authorizes `action` on a namespace as the request spells it (empty: `default`).
fn authorize_namespace(
    caller: &Caller,
    action: Action,
    namespace: &str,
) -> Result<(), tonic::Status> {
    if let Caller::Open = caller {
        return Ok(());
    }
    let ns = agent_registry_core::domain::normalize_namespace("namespace", namespace)
        .map_err(agent_registry_core::registry::RegistryError::from)
        .map_err(status::registry)?;
    Ok(caller.authorize(action, Scope::Namespace(&ns))?)
}
