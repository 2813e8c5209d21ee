//! `DiscoveryService`: Discover, GetInstance, Watch.

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::status::{self, invalid};
use super::{authorize_instance, caller, convert};
use crate::proto::{self, discovery_service_server::DiscoveryService};
use crate::security::status as security_status;
use crate::security::tokens::{Revocation, revoked};
use crate::security::{Action, Caller, Scope};
use agent_registry_core::domain::validate_filter;
use agent_registry_core::registry::{DiscoverQuery, Registry, RegistryError, View};

pub struct DiscoveryApi(pub Arc<Registry>);

pub type WatchStream = Pin<Box<dyn Stream<Item = Result<proto::WatchResponse, Status>> + Send>>;

pub(super) fn view(v: i32) -> Result<View, Status> {
    match proto::DiscoverView::try_from(v) {
        Ok(proto::DiscoverView::Unspecified | proto::DiscoverView::Active) => Ok(View::Active),
        Ok(proto::DiscoverView::Live) => Ok(View::Live),
        Ok(proto::DiscoverView::All) => Ok(View::All),
        Err(_) => Err(invalid("view", "unknown view")),
    }
}

/// The filters Discover and Watch share, validated.
pub(super) fn filter(
    namespace: &str,
    logical_ids: Vec<String>,
    agent_type: String,
    capabilities: Vec<String>,
    labels: std::collections::HashMap<String, String>,
) -> Result<agent_registry_core::domain::InstanceFilter, RegistryError> {
    let labels = labels.into_iter().collect();
    Ok(validate_filter(
        namespace,
        logical_ids,
        agent_type,
        capabilities,
        labels,
    )?)
}

/// Discover: one page of the view the filters select.
pub async fn discover(
    registry: &Registry,
    caller: &Caller,
    r: proto::DiscoverRequest,
) -> Result<proto::DiscoverResponse, Status> {
    let filter = filter(
        &r.namespace,
        r.logical_ids,
        r.agent_type,
        r.capabilities,
        r.label_selector,
    )
    .map_err(status::registry)?;
    caller.authorize(Action::Discover, Scope::Namespace(&filter.namespace))?;
    let query = DiscoverQuery {
        filter,
        view: view(r.view)?,
        page_size: r.page_size,
        page_token: r.page_token,
    };
    let page = registry.discover(&query).map_err(status::registry)?;
    Ok(proto::DiscoverResponse {
        instances: page.items.iter().map(convert::listed).collect(),
        next_page_token: page.next_page_token,
        revision: page.revision,
    })
}

/// GetInstance: one instance by id, whatever its status.
pub async fn get_instance(
    registry: &Registry,
    caller: &Caller,
    r: proto::GetInstanceRequest,
) -> Result<proto::GetInstanceResponse, Status> {
    authorize_instance(registry, caller, Action::GetInstance, &r.instance_id).await?;
    let instance = registry
        .get_instance(&r.instance_id)
        .map_err(status::registry)?;
    Ok(proto::GetInstanceResponse {
        instance: Some(convert::listed(&instance)),
    })
}

/// Watch: the changes of the filtered set, one message per step; after an error it ends.
pub async fn watch(
    registry: &Registry,
    caller: &Caller,
    revocation: Option<Revocation>,
    r: proto::WatchRequest,
) -> Result<WatchStream, Status> {
    let filter = filter(
        &r.namespace,
        r.logical_ids,
        r.agent_type,
        r.capabilities,
        r.label_selector,
    )
    .map_err(status::registry)?;
    caller.authorize(Action::Watch, Scope::Namespace(&filter.namespace))?;
    let outbox = registry
        .watch(filter, r.start_revision)
        .await
        .map_err(status::registry)?;
    let stream = futures_util::stream::unfold(Some((outbox, revocation)), |w| async move {
        let (mut w, mut revocation) = w?;
        let next = tokio::select! {
            next = w.next() => next?,
            _ = revoked(&mut revocation) => return Some((Err(security_status::revoked()), None)),
        };
        match next {
            Ok(out) => Some((Ok(convert::watch_response(out)), Some((w, revocation)))),
            Err(e) => Some((Err(status::registry(e)), None)),
        }
    });
    Ok(Box::pin(stream))
}

bind! {
    impl DiscoveryService for DiscoveryApi {
        discover: DiscoverRequest => DiscoverResponse;
        get_instance: GetInstanceRequest => GetInstanceResponse;
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<proto::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let caller = caller(&request)?;
        let revocation = request.extensions().get::<Revocation>().cloned();
        watch(&self.0, &caller, revocation, request.into_inner())
            .await
            .map(Response::new)
    }
}
