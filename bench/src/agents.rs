//! Simulated agents: their connections (one each, or shared), their registration, and one
//! heartbeat session each — against the registry's contract (the registry and the `echo`,
//! `pg-update` and `redis-set` peers all serve it) or against etcd's lease API.

use std::net::IpAddr;
use std::time::Duration;

use agent_registry::proto::{
    Directive, HeartbeatRequest, HeartbeatResponse, RegisterRequest,
    registry_service_client::RegistryServiceClient,
};
use etcd_client::{LeaseKeepAliveStream, LeaseKeeper};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

/// Which protocol the agents speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `agentregistry.v1.RegistryService`: Register, then a Heartbeat stream.
    Registry,
    /// etcd v3: LeaseGrant, then a LeaseKeepAlive stream.
    Etcd,
}

impl Protocol {
    /// etcd speaks its own API; every other target serves the registry's contract.
    pub fn for_target(target: &str) -> Self {
        if target == "etcd" {
            Self::Etcd
        } else {
            Self::Registry
        }
    }
}

/// One HTTP/2 connection, shared by `--per-connection` agents.
#[derive(Clone)]
pub enum Conn {
    Registry(Channel),
    /// Boxed: etcd's client is a few KiB, a channel a few words.
    Etcd(Box<etcd_client::Client>),
}

/// The `n`th of `count` loopback source addresses (127.0.0.1, 127.0.0.2, …): each address
/// has its own ephemeral port range, so more connections fit than one address allows.
pub fn source_address(n: usize, count: usize) -> Option<IpAddr> {
    (count > 1).then(|| IpAddr::from([127, 0, 0, 1 + (n % count) as u8]))
}

pub async fn connect(
    protocol: Protocol,
    addr: &str,
    source: Option<IpAddr>,
) -> Result<Conn, String> {
    match protocol {
        Protocol::Registry => Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .local_address(source)
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .map(Conn::Registry)
            .map_err(|e| format!("connect {addr}: {e}")),
        // etcd's client takes no source address; at the scales etcd is run here one is enough.
        Protocol::Etcd => etcd_client::Client::connect([format!("http://{addr}")], None)
            .await
            .map(|c| Conn::Etcd(Box::new(c)))
            .map_err(|e| format!("connect etcd {addr}: {e}")),
    }
}

/// One connection speaking the registry's contract (the registry or a `bench-peer`).
pub async fn registry_channel(addr: &str) -> Result<Channel, String> {
    match connect(Protocol::Registry, addr, None).await? {
        Conn::Registry(c) => Ok(c),
        Conn::Etcd(_) => unreachable!("registry protocol"),
    }
}

/// A namespace of its own for one run, so runs against one server never see each other.
pub fn run_namespace() -> String {
    format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// A registered agent: the registry's instance id, or etcd's lease id.
#[derive(Debug, Clone)]
pub enum Registered {
    Registry(String),
    Etcd(i64),
}

/// The registration every simulated agent sends (`i` makes its logical id unique).
pub fn register_request(namespace: &str, i: usize, kind: &str, ttl: Duration) -> RegisterRequest {
    RegisterRequest {
        namespace: namespace.to_string(),
        logical_id: format!("agent-{i}"),
        agent_type: kind.to_string(),
        version: "1.0.0".into(),
        endpoint: format!("10.0.{}.{}:8080", (i / 250) % 250, i % 250),
        capabilities: vec!["bench".into()],
        lease_ttl: Some(prost_types::Duration {
            seconds: ttl.as_secs() as i64,
            nanos: 0,
        }),
        ready: true,
        ..Default::default()
    }
}

pub async fn register(
    conn: &Conn,
    request: RegisterRequest,
    ttl: Duration,
) -> Result<Registered, String> {
    match conn {
        Conn::Registry(ch) => {
            let r = RegistryServiceClient::new(ch.clone())
                .register(request)
                .await
                .map_err(|s| format!("register: {:?} {}", s.code(), s.message()))?;
            let id = r.into_inner().instance.map(|i| i.instance_id);
            id.map(Registered::Registry)
                .ok_or_else(|| "register: no instance in the answer".into())
        }
        Conn::Etcd(c) => c
            .clone()
            .lease_grant(ttl.as_secs() as i64, None)
            .await
            .map(|r| Registered::Etcd(r.id()))
            .map_err(|e| format!("lease grant: {e}")),
    }
}

/// One agent's open heartbeat stream.
pub enum Session {
    Registry {
        tx: mpsc::Sender<HeartbeatRequest>,
        rx: tonic::Streaming<HeartbeatResponse>,
        id: String,
        sequence: u64,
    },
    Etcd {
        keeper: LeaseKeeper,
        stream: LeaseKeepAliveStream,
    },
}

impl Session {
    /// Opens the stream; for the registry this sends (and awaits) the first beat, since the
    /// server answers the call once it has seen which instance the stream is for.
    pub async fn open(conn: &Conn, registered: &Registered) -> Result<Self, String> {
        match (conn, registered) {
            (Conn::Registry(ch), Registered::Registry(id)) => {
                let (tx, rx) = mpsc::channel(4);
                let first = HeartbeatRequest {
                    instance_id: id.clone(),
                    sequence: 1,
                    status: 0,
                };
                tx.send(first)
                    .await
                    .map_err(|_| "heartbeat stream closed")?;
                let mut rx = RegistryServiceClient::new(ch.clone())
                    .heartbeat(ReceiverStream::new(rx))
                    .await
                    .map_err(|s| format!("heartbeat: {:?} {}", s.code(), s.message()))?
                    .into_inner();
                check(rx.message().await)?;
                Ok(Session::Registry {
                    tx,
                    rx,
                    id: id.clone(),
                    sequence: 1,
                })
            }
            (Conn::Etcd(c), Registered::Etcd(lease)) => {
                let (keeper, stream) = c
                    .clone()
                    .lease_keep_alive(*lease)
                    .await
                    .map_err(|e| format!("keep alive: {e}"))?;
                Ok(Session::Etcd { keeper, stream })
            }
            _ => Err("connection and registration are for different protocols".into()),
        }
    }

    /// Sends one beat and waits for its acknowledgement.
    pub async fn beat(&mut self) -> Result<(), String> {
        match self {
            Session::Registry {
                tx,
                rx,
                id,
                sequence,
            } => {
                *sequence += 1;
                let beat = HeartbeatRequest {
                    instance_id: id.clone(),
                    sequence: *sequence,
                    status: 0,
                };
                tx.send(beat).await.map_err(|_| "heartbeat stream closed")?;
                check(rx.message().await)
            }
            Session::Etcd { keeper, stream } => {
                keeper
                    .keep_alive()
                    .await
                    .map_err(|e| format!("keep alive: {e}"))?;
                match stream.message().await {
                    Ok(Some(r)) if r.ttl() > 0 => Ok(()),
                    Ok(Some(_)) => Err("lease expired".into()),
                    Ok(None) => Err("keep-alive stream ended".into()),
                    Err(e) => Err(format!("keep alive: {e}")),
                }
            }
        }
    }
}

fn check(ack: Result<Option<HeartbeatResponse>, tonic::Status>) -> Result<(), String> {
    match ack {
        Ok(Some(a)) if a.directive == Directive::Reregister as i32 => {
            Err(format!("told to re-register: {}", a.reason))
        }
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err("heartbeat stream ended".into()),
        Err(s) => Err(format!("heartbeat: {:?} {}", s.code(), s.message())),
    }
}
