//! A server running in this process on its own port, on a test's database.

use std::sync::Arc;

use agent_registry::config::ServeArgs;
use agent_registry::proto::{
    self, admin_service_client::AdminServiceClient, catalog_service_client::CatalogServiceClient,
    discovery_service_client::DiscoveryServiceClient,
    registry_service_client::RegistryServiceClient,
};
use agent_registry_core::registry::Registry;
use agent_registry_core::storage;
use tokio::net::TcpListener;
use tonic::transport::Channel;

use super::TestDb;

/// A server running in this process on its own port.
pub struct TestServer {
    /// The replica itself, for what no RPC shows.
    pub node: Arc<Registry>,
    /// `http://127.0.0.1:PORT`, for clients started by the test.
    pub url: String,
    /// The HTTP API's `http://127.0.0.1:PORT`.
    pub http_url: String,
    pub registry: RegistryServiceClient<Channel>,
    pub discovery: DiscoveryServiceClient<Channel>,
    pub admin: AdminServiceClient<Channel>,
    pub catalog: CatalogServiceClient<Channel>,
    pub channel: Channel,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub async fn start(db: &TestDb) -> TestServer {
        Self::start_with(db, |_| {}).await
    }

    /// A server (one replica) on `db` with its settings adjusted by `configure`.
    pub async fn start_with(db: &TestDb, configure: impl FnOnce(&mut ServeArgs)) -> TestServer {
        let mut args = ServeArgs::for_database(&db.url);
        configure(&mut args);
        args.check().expect("valid settings");
        let (options, _) = args.store().unwrap();
        let store = storage::open(&args.database_url, &options)
            .await
            .expect("open store");
        let registry = Arc::new(
            Registry::open(store.clone(), args.settings().unwrap())
                .await
                .expect("hydrate"),
        );
        let node = registry.clone();
        let listener = TcpListener::bind(args.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_addr = http.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let stopped = async {
                let _ = rx.await;
            };
            agent_registry::server::serve_on(registry, &args, listener, Some(http), stopped)
                .await
                .expect("server ran");
            store.close().await;
        });
        // Lazily: a TLS server refuses a plaintext handshake, and its tests bring their own.
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy();
        TestServer {
            node,
            url: format!("http://{addr}"),
            http_url: format!("http://{http_addr}"),
            registry: RegistryServiceClient::new(channel.clone()),
            discovery: DiscoveryServiceClient::new(channel.clone()),
            admin: AdminServiceClient::new(channel.clone()),
            catalog: CatalogServiceClient::new(channel.clone()),
            channel,
            stop: Some(tx),
            task,
        }
    }

    /// Stops the server and waits until it has released the store.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        drop((
            self.registry,
            self.discovery,
            self.admin,
            self.channel,
            self.node,
        ));
        (&mut self.task).await.expect("server task");
    }

    /// Opens a Heartbeat stream; returns the sender of requests and the stream of replies.
    pub async fn open_stream(
        &mut self,
    ) -> (
        tokio::sync::mpsc::Sender<proto::HeartbeatRequest>,
        tonic::Streaming<proto::HeartbeatResponse>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let replies = self
            .registry
            .heartbeat(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("open heartbeat stream")
            .into_inner();
        (tx, replies)
    }

    /// GetInstance of `id`, which must exist.
    pub async fn instance(&mut self, id: &str) -> proto::Instance {
        let req = proto::GetInstanceRequest {
            instance_id: id.into(),
        };
        self.discovery
            .get_instance(req)
            .await
            .expect("get instance")
            .into_inner()
            .instance
            .expect("instance")
    }

    pub async fn register(&mut self, req: proto::RegisterRequest) -> proto::Instance {
        self.registry
            .register(req)
            .await
            .expect("register")
            .into_inner()
            .instance
            .expect("instance")
    }

    /// Every instance Discover returns for `req`, across all pages.
    pub async fn discover_all(&mut self, req: proto::DiscoverRequest) -> Vec<proto::Instance> {
        super::discover_all(&mut self.discovery, req).await
    }
}
