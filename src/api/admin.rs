//! `AdminService`: namespaces, epochs, drain and evict.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{authorize_instance, authorize_namespace, caller, convert};
use crate::proto::{self, admin_service_server::AdminService};
use crate::registry::Registry;
use crate::security::{Action, Scope};

pub struct AdminApi(pub Arc<Registry>);

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn list_namespaces(
        &self,
        request: Request<proto::ListNamespacesRequest>,
    ) -> Result<Response<proto::ListNamespacesResponse>, Status> {
        let caller = caller(&request)?;
        caller.authorize(Action::ListNamespaces, Scope::Listing)?;
        let r = request.into_inner();
        let page = self
            .0
            .namespaces(r.page_size, &r.page_token, &|ns| caller.sees(ns))?;
        Ok(Response::new(proto::ListNamespacesResponse {
            namespaces: page.items.iter().map(convert::namespace).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn get_namespace(
        &self,
        request: Request<proto::GetNamespaceRequest>,
    ) -> Result<Response<proto::GetNamespaceResponse>, Status> {
        let caller = caller(&request)?;
        let name = request.into_inner().name;
        authorize_namespace(&caller, Action::GetNamespace, &name)?;
        let ns = self.0.namespace("name", &name)?;
        Ok(Response::new(proto::GetNamespaceResponse {
            namespace: Some(convert::namespace(&ns)),
        }))
    }

    async fn advance_epoch(
        &self,
        request: Request<proto::AdvanceEpochRequest>,
    ) -> Result<Response<proto::AdvanceEpochResponse>, Status> {
        let caller = caller(&request)?;
        let namespace = request.into_inner().namespace;
        authorize_namespace(&caller, Action::AdvanceEpoch, &namespace)?;
        let (ns, fenced) = self.0.advance_epoch(&namespace).await?;
        Ok(Response::new(proto::AdvanceEpochResponse {
            namespace: Some(convert::namespace(&ns)),
            fenced_instances: fenced as i64,
        }))
    }

    async fn drain_instance(
        &self,
        request: Request<proto::DrainInstanceRequest>,
    ) -> Result<Response<proto::DrainInstanceResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        authorize_instance(&self.0, &caller, Action::Drain, &r.instance_id).await?;
        let instance = self.0.drain(&r.instance_id, &r.reason).await?;
        Ok(Response::new(proto::DrainInstanceResponse {
            instance: Some(convert::instance(&instance)),
        }))
    }

    async fn evict_instance(
        &self,
        request: Request<proto::EvictInstanceRequest>,
    ) -> Result<Response<proto::EvictInstanceResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        authorize_instance(&self.0, &caller, Action::Evict, &r.instance_id).await?;
        let instance = self.0.evict(&r.instance_id, &r.reason).await?;
        Ok(Response::new(proto::EvictInstanceResponse {
            instance: Some(convert::instance(&instance)),
        }))
    }
}
