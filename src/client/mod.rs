//! The Rust client library: connect, register, discover, and a [`keeper::Keeper`] that holds
//! an agent's heartbeat stream open across disconnects and server restarts.
//!
//! Like `ctl`, it speaks the generated types of `proto/` directly.

pub mod backoff;
pub mod cache;
pub mod keeper;

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::proto::{
    self, discovery_service_client::DiscoveryServiceClient,
    registry_service_client::RegistryServiceClient,
};

/// A connection to the registry (any replica behind one address). It connects lazily and
/// reconnects by itself, so it can be made before the server is up.
#[derive(Clone)]
pub struct Client {
    pub registry: RegistryServiceClient<Channel>,
    pub discovery: DiscoveryServiceClient<Channel>,
}

/// A registration as the server granted it.
#[derive(Debug, Clone)]
pub struct Registered {
    pub instance: proto::Instance,
    pub heartbeat_interval: Duration,
}

impl Client {
    /// `endpoint` is `http://host:port`.
    pub fn connect(endpoint: &str) -> Result<Client, tonic::transport::Error> {
        let channel = Endpoint::from_shared(endpoint.to_string())?
            .connect_timeout(Duration::from_secs(5))
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10))
            .connect_lazy();
        Ok(Client {
            registry: RegistryServiceClient::new(channel.clone()),
            discovery: DiscoveryServiceClient::new(channel),
        })
    }

    pub async fn register(&self, req: proto::RegisterRequest) -> Result<Registered, tonic::Status> {
        let reply = self.registry.clone().register(req).await?.into_inner();
        let instance = reply
            .instance
            .ok_or_else(|| tonic::Status::internal("the reply carried no instance"))?;
        Ok(Registered {
            instance,
            heartbeat_interval: reply
                .heartbeat_interval
                .map(duration)
                .unwrap_or(Duration::from_secs(5)),
        })
    }

    /// Every instance Discover returns for `req`, across all pages.
    pub async fn discover(
        &self,
        mut req: proto::DiscoverRequest,
    ) -> Result<Vec<proto::Instance>, tonic::Status> {
        let mut all = Vec::new();
        loop {
            let page = self
                .discovery
                .clone()
                .discover(req.clone())
                .await?
                .into_inner();
            all.extend(page.instances);
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            req.page_token = page.next_page_token;
        }
    }
}

fn duration(d: prost_types::Duration) -> Duration {
    Duration::new(d.seconds.max(0) as u64, d.nanos.max(0) as u32)
}
