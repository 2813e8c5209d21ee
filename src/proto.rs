//! The generated `agentregistry.v1` types and services, and the descriptor set for reflection.

#![allow(clippy::all, missing_docs)]

pub mod agentregistry {
    pub mod v1 {
        tonic::include_proto!("agentregistry.v1");
    }
}

pub use agentregistry::v1::*;

/// Every file of the contract, encoded, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("agentregistry_descriptor");
