//! The Rust client library: connect, register, discover, and a [`keeper::Keeper`] that holds
//! an agent's heartbeat stream open across disconnects and server restarts.
//!
//! Like `ctl`, it speaks the generated types of `proto/` directly.

pub mod backoff;
pub mod cache;
pub mod keeper;
pub mod options;

use std::time::Duration;

pub use options::{ConnectError, ConnectOptions, Transport};

use crate::proto::{
    self, discovery_service_client::DiscoveryServiceClient,
    registry_service_client::RegistryServiceClient,
};

/// A connection to the registry (any replica behind one address). It connects lazily and
/// reconnects by itself, so it can be made before the server is up.
#[derive(Clone)]
pub struct Client {
    pub registry: RegistryServiceClient<Transport>,
    pub discovery: DiscoveryServiceClient<Transport>,
}

/// A registration as the server granted it.
#[derive(Debug, Clone)]
pub struct Registered {
    pub instance: proto::Instance,
    pub heartbeat_interval: Duration,
}

impl Client {
    /// `endpoint` is `http://host:port`: no TLS, no token.
    pub fn connect(endpoint: &str) -> Result<Client, ConnectError> {
        Self::connect_with(endpoint, &ConnectOptions::default())
    }

    /// `endpoint` is `http://host:port` or `https://host:port`; TLS and the token as `options`
    /// say.
    pub fn connect_with(endpoint: &str, options: &ConnectOptions) -> Result<Client, ConnectError> {
        let channel = options.connect_lazy(endpoint)?;
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
