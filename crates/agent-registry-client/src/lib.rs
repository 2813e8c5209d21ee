//! The Rust client of agent-registry: the contract's generated types ([`proto`]), a [`Client`]
//! that connects, registers and discovers, a [`keeper::Keeper`] that holds an agent's heartbeat
//! stream open across disconnects and server restarts, and a [`cache::WatchCache`].
//!
//! It depends on gRPC (tonic) and nothing of the server: no storage, HTTP front end or Redis.

pub mod backoff;
pub mod cache;
pub mod card;
pub mod keeper;
pub mod options;
pub mod proto;
pub mod targets;

use std::sync::Arc;
use std::time::Duration;

pub use options::{ConnectError, ConnectOptions, Transport};
pub use targets::{Target, Targets};

use crate::proto::{
    catalog_service_client::CatalogServiceClient, discovery_service_client::DiscoveryServiceClient,
    registry_service_client::RegistryServiceClient,
};

/// A connection to the registry (a replica behind one of its addresses). It connects lazily
/// and reconnects by itself, so it can be made before the server is up; [`Client::failover`]
/// moves to the next replica.
#[derive(Clone)]
pub struct Client {
    pub registry: RegistryServiceClient<Transport>,
    pub discovery: DiscoveryServiceClient<Transport>,
    pub catalog: CatalogServiceClient<Transport>,
    targets: Arc<Targets>,
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
        Self::connect_any(&[endpoint.to_string()], options)
    }

    /// Several addresses of one registry (replicas, or names resolving to several): it starts
    /// on the first and [`Client::failover`] goes round them all.
    pub fn connect_any(
        addresses: &[String],
        options: &ConnectOptions,
    ) -> Result<Client, ConnectError> {
        let targets = Arc::new(Targets::new(addresses, options)?);
        let channel = targets.first()?;
        Ok(Self::on(channel, targets))
    }

    fn on(channel: Transport, targets: Arc<Targets>) -> Client {
        Client {
            registry: RegistryServiceClient::new(channel.clone()),
            discovery: DiscoveryServiceClient::new(channel.clone()),
            catalog: CatalogServiceClient::new(channel),
            targets,
        }
    }

    /// A client on a fresh connection to the next replica (after looking the names up again);
    /// this one stays usable. When no other connection can be made, this one is returned.
    pub async fn failover(&self) -> Client {
        match self.targets.next().await {
            Ok((target, channel)) => {
                tracing::info!(%target, "moving to another registry address");
                Self::on(channel, self.targets.clone())
            }
            Err(e) => {
                tracing::warn!(error = %e, "no other registry address to move to");
                self.clone()
            }
        }
    }

    /// Registers `req`. A card it carries is sent only when the registry does not hold it yet:
    /// the registration first names the card by its digest (so a fleet of replicas sends the
    /// card's bytes once), and sends the bytes when the registry answers `NOT_FOUND`.
    pub async fn register(&self, req: proto::RegisterRequest) -> Result<Registered, tonic::Status> {
        let by_digest = req
            .card
            .as_ref()
            .and_then(|c| card::digest(&c.json))
            .map(|d| proto::RegisterRequest {
                card: None,
                card_digest: d,
                ..req.clone()
            });
        if let Some(short) = by_digest {
            match self.register_once(short).await {
                Err(e) if e.code() == tonic::Code::NotFound => {}
                done => return done,
            }
        }
        self.register_once(req).await
    }

    async fn register_once(
        &self,
        req: proto::RegisterRequest,
    ) -> Result<Registered, tonic::Status> {
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

    /// One page of the agents a search selects (live ones unless `include_offline`).
    pub async fn search_agents(
        &self,
        req: proto::SearchAgentsRequest,
    ) -> Result<proto::SearchAgentsResponse, tonic::Status> {
        Ok(self.catalog.clone().search_agents(req).await?.into_inner())
    }

    /// The agent `logical_id` of `namespace`: its current card and live instances.
    pub async fn agent(
        &self,
        namespace: &str,
        logical_id: &str,
    ) -> Result<proto::Agent, tonic::Status> {
        let req = proto::GetAgentRequest {
            namespace: namespace.into(),
            logical_id: logical_id.into(),
        };
        let reply = self.catalog.clone().get_agent(req).await?.into_inner();
        reply
            .agent
            .ok_or_else(|| tonic::Status::internal("the reply carried no agent"))
    }

    /// Publishes `card` (an A2A card unless `kind` says MCP) for the agent, ahead of any
    /// instance; the digest it is stored under.
    pub async fn publish_card(
        &self,
        namespace: &str,
        logical_id: &str,
        card: proto::Card,
    ) -> Result<String, tonic::Status> {
        let req = proto::PublishCardRequest {
            namespace: namespace.into(),
            logical_id: logical_id.into(),
            card: Some(card),
        };
        Ok(self
            .catalog
            .clone()
            .publish_card(req)
            .await?
            .into_inner()
            .digest)
    }

    /// A card by digest, from any agent the caller may read.
    pub async fn card(&self, digest: &str) -> Result<proto::StoredCard, tonic::Status> {
        let req = proto::GetCardRequest {
            digest: digest.into(),
            ..Default::default()
        };
        let reply = self.catalog.clone().get_card(req).await?.into_inner();
        reply
            .card
            .ok_or_else(|| tonic::Status::internal("the reply carried no card"))
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
