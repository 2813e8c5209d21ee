//! `AdminService`: namespaces, epochs, drain and evict.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{authorize_instance, authorize_namespace, caller, convert, status};
use crate::proto::{self, admin_service_server::AdminService};
use crate::security::{Action, Caller, Scope};
use agent_registry_core::registry::Registry;

pub struct AdminApi(pub Arc<Registry>);

/// ListNamespaces: the namespaces the caller may see, one page.
pub async fn list_namespaces(
    registry: &Registry,
    caller: &Caller,
    r: proto::ListNamespacesRequest,
) -> Result<proto::ListNamespacesResponse, Status> {
    caller.authorize(Action::ListNamespaces, Scope::Listing)?;
    let page = registry
        .namespaces(r.page_size, &r.page_token, &|ns| caller.sees(ns))
        .map_err(status::registry)?;
    Ok(proto::ListNamespacesResponse {
        namespaces: page.items.iter().map(convert::namespace).collect(),
        next_page_token: page.next_page_token,
    })
}

/// GetNamespace: one namespace with its epoch and counts.
pub async fn get_namespace(
    registry: &Registry,
    caller: &Caller,
    r: proto::GetNamespaceRequest,
) -> Result<proto::GetNamespaceResponse, Status> {
    authorize_namespace(caller, Action::GetNamespace, &r.name)?;
    let ns = registry
        .namespace("name", &r.name)
        .map_err(status::registry)?;
    Ok(proto::GetNamespaceResponse {
        namespace: Some(convert::namespace(&ns)),
    })
}

/// AdvanceEpoch: a new current epoch, every older instance fenced.
pub async fn advance_epoch(
    registry: &Registry,
    caller: &Caller,
    r: proto::AdvanceEpochRequest,
) -> Result<proto::AdvanceEpochResponse, Status> {
    authorize_namespace(caller, Action::AdvanceEpoch, &r.namespace)?;
    let (ns, fenced) = registry
        .advance_epoch(&r.namespace)
        .await
        .map_err(status::registry)?;
    Ok(proto::AdvanceEpochResponse {
        namespace: Some(convert::namespace(&ns)),
        fenced_instances: fenced as i64,
    })
}

/// DrainInstance: DRAINING, and DRAIN down its stream.
pub async fn drain_instance(
    registry: &Registry,
    caller: &Caller,
    r: proto::DrainInstanceRequest,
) -> Result<proto::DrainInstanceResponse, Status> {
    authorize_instance(registry, caller, Action::Drain, &r.instance_id).await?;
    let instance = registry
        .drain(&r.instance_id, &r.reason)
        .await
        .map_err(status::registry)?;
    Ok(proto::DrainInstanceResponse {
        instance: Some(convert::instance(&instance)),
    })
}

/// EvictInstance: DEAD (EVICTED), and REREGISTER down its stream.
pub async fn evict_instance(
    registry: &Registry,
    caller: &Caller,
    r: proto::EvictInstanceRequest,
) -> Result<proto::EvictInstanceResponse, Status> {
    authorize_instance(registry, caller, Action::Evict, &r.instance_id).await?;
    let instance = registry
        .evict(&r.instance_id, &r.reason)
        .await
        .map_err(status::registry)?;
    Ok(proto::EvictInstanceResponse {
        instance: Some(convert::instance(&instance)),
    })
}

bind! {
    impl AdminService for AdminApi {
        list_namespaces: ListNamespacesRequest => ListNamespacesResponse;
        get_namespace: GetNamespaceRequest => GetNamespaceResponse;
        advance_epoch: AdvanceEpochRequest => AdvanceEpochResponse;
        drain_instance: DrainInstanceRequest => DrainInstanceResponse;
        evict_instance: EvictInstanceRequest => EvictInstanceResponse;
    }
}
