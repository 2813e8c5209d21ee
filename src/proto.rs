//! The contract as the server sees it: the messages and client stubs of
//! `agent_registry_client::proto` (one set of types for both ends), the service traits generated
//! over them, and the descriptor set that reflection and the HTTP API's JSON mapping read.

#![allow(clippy::all, missing_docs)]

mod generated {
    tonic::include_proto!("agentregistry.v1");
}

pub use agent_registry_client::proto::*;
pub use generated::{
    admin_service_server, catalog_service_server, discovery_service_server, registry_service_server,
};

/// Every file of the contract, encoded, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("agentregistry_descriptor");
