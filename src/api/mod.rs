//! Thin gRPC handlers: decode the request, call the registry, encode the reply.
//!
//! This module and `proto` are the only ones that see generated types.

mod admin;
mod convert;
mod discovery;
mod heartbeat;
mod registry;
mod status;

use std::sync::Arc;

use crate::proto::{
    admin_service_server::AdminServiceServer, discovery_service_server::DiscoveryServiceServer,
    registry_service_server::RegistryServiceServer,
};
use crate::registry::Registry;

pub use admin::AdminApi;
pub use discovery::DiscoveryApi;
pub use registry::RegistryApi;

/// The three services of the contract, sharing one registry.
pub struct Services {
    pub registry: RegistryServiceServer<RegistryApi>,
    pub discovery: DiscoveryServiceServer<DiscoveryApi>,
    pub admin: AdminServiceServer<AdminApi>,
}

pub fn services(core: Arc<Registry>) -> Services {
    Services {
        registry: RegistryServiceServer::new(RegistryApi(core.clone())),
        discovery: DiscoveryServiceServer::new(DiscoveryApi(core.clone())),
        admin: AdminServiceServer::new(AdminApi(core)),
    }
}
