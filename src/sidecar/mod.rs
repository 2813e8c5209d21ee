//! `agent-registry sidecar`: registers the pod's main container without a line of its code.
//! It reads the pod from the Downward API, probes the application's health and maps it to
//! ALIVE / DRAINING, and on SIGTERM drains, waits, deregisters and exits 0.

pub mod probe;

use std::future::Future;
use std::time::Duration;

use clap::Args;

use crate::proto::{self, InstanceStatus};
use agent_registry_client::Client;
use agent_registry_client::backoff::Backoff;
use agent_registry_client::keeper::Keeper;
use probe::Probe;

#[derive(Debug, Clone, Args)]
pub struct SidecarArgs {
    /// The registry, e.g. `http://agent-registry.registry.svc:50051`; several addresses
    /// (repeat the flag, or a comma-separated list in the env var) and names that resolve to
    /// several addresses (a headless Service) are tried in turn when a replica cannot serve.
    #[arg(
        long,
        env = "AGENT_REGISTRY_SERVER",
        default_value = "http://127.0.0.1:50051",
        value_delimiter = ','
    )]
    pub registry: Vec<String>,
    #[command(flatten)]
    pub connect: agent_registry_client::ConnectOptions,
    /// The pod's name (Downward API `metadata.name`): the actor name, and the logical id unless
    /// --logical-id is given.
    #[arg(long, env = "POD_NAME", default_value = "")]
    pub pod_name: String,
    /// The pod's namespace (`metadata.namespace`): the registry namespace unless --namespace.
    #[arg(long, env = "POD_NAMESPACE", default_value = "")]
    pub pod_namespace: String,
    /// The pod's IP (`status.podIP`).
    #[arg(long, env = "POD_IP", default_value = "")]
    pub pod_ip: String,
    /// The node (`spec.nodeName`).
    #[arg(long, env = "NODE_NAME", default_value = "")]
    pub node_name: String,
    /// Registry namespace (default: the pod's namespace, else `default`).
    #[arg(long, env = "AGENT_NAMESPACE")]
    pub namespace: Option<String>,
    /// Logical id (default: the pod's name).
    #[arg(long, env = "AGENT_LOGICAL_ID")]
    pub logical_id: Option<String>,
    #[arg(long, env = "AGENT_TYPE", default_value = "")]
    pub agent_type: String,
    #[arg(long, env = "AGENT_VERSION", default_value = "")]
    pub version: String,
    /// Where the application serves (default: POD_IP).
    #[arg(long, env = "AGENT_ENDPOINT")]
    pub endpoint: Option<String>,
    /// `key=value` (repeatable; the env var takes a comma-separated list).
    #[arg(long = "label", env = "AGENT_LABELS", value_delimiter = ',')]
    pub labels: Vec<String>,
    /// Repeatable; the env var takes a comma-separated list.
    #[arg(long = "capability", env = "AGENT_CAPABILITIES", value_delimiter = ',')]
    pub capabilities: Vec<String>,
    /// The application's HTTP health URL (2xx = healthy).
    #[arg(long, env = "PROBE_HTTP", conflicts_with = "probe_grpc")]
    pub probe_http: Option<String>,
    /// The application's grpc.health.v1 target, `host:port[/service]`.
    #[arg(long, env = "PROBE_GRPC")]
    pub probe_grpc: Option<String>,
    #[arg(long, env = "PROBE_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub probe_interval: Duration,
    /// Consecutive failed probes before the instance is set DRAINING.
    #[arg(long, env = "PROBE_FAILURE_THRESHOLD", default_value_t = 3)]
    pub probe_failure_threshold: u32,
    /// The agent's card (an A2A AgentCard, or an MCP server.json with --card-kind mcp), e.g. a
    /// mounted ConfigMap: registered with the pod, sent once per card and then by digest.
    #[arg(long, env = "AGENT_CARD_FILE")]
    pub card_file: Option<std::path::PathBuf>,
    #[arg(long, env = "AGENT_CARD_KIND", value_enum, default_value = "a2a")]
    pub card_kind: CardKindArg,
    /// How long to stay DRAINING after SIGTERM before deregistering.
    #[arg(long, env = "DRAIN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain_grace: Duration,
}

/// What a card file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CardKindArg {
    A2a,
    Mcp,
}

impl SidecarArgs {
    /// The card to register with, read from --card-file.
    fn card(&self) -> Result<Option<proto::Card>, String> {
        let Some(path) = &self.card_file else {
            return Ok(None);
        };
        let json = std::fs::read_to_string(path)
            .map_err(|e| format!("--card-file {}: {e}", path.display()))?;
        let kind = match self.card_kind {
            CardKindArg::A2a => proto::CardKind::A2a,
            CardKindArg::Mcp => proto::CardKind::Mcp,
        };
        Ok(Some(proto::Card {
            kind: kind as i32,
            json,
        }))
    }

    fn request(&self) -> Result<proto::RegisterRequest, String> {
        let namespace = match (&self.namespace, self.pod_namespace.is_empty()) {
            (Some(ns), _) => ns.clone(),
            (None, false) => self.pod_namespace.clone(),
            (None, true) => String::new(),
        };
        let logical_id = self
            .logical_id
            .clone()
            .unwrap_or_else(|| self.pod_name.clone());
        if logical_id.is_empty() {
            return Err("a logical id is required: --logical-id, or POD_NAME".into());
        }
        let mut labels = std::collections::HashMap::new();
        for l in self.labels.iter().filter(|l| !l.is_empty()) {
            let (k, v) = l
                .split_once('=')
                .ok_or_else(|| format!("label {l:?}: expected key=value"))?;
            labels.insert(k.to_string(), v.to_string());
        }
        Ok(proto::RegisterRequest {
            namespace,
            logical_id,
            agent_type: self.agent_type.clone(),
            version: self.version.clone(),
            endpoint: self.endpoint.clone().unwrap_or_else(|| self.pod_ip.clone()),
            capabilities: self
                .capabilities
                .iter()
                .filter(|c| !c.is_empty())
                .cloned()
                .collect(),
            labels,
            actor_name: self.pod_name.clone(),
            node_id: self.node_name.clone(),
            ip_address: self.pod_ip.clone(),
            // The application is not known healthy until its first probe passes.
            ready: false,
            card: self.card()?,
            ..Default::default()
        })
    }

    fn probe(&self) -> Result<Probe, String> {
        match (&self.probe_http, &self.probe_grpc) {
            (Some(url), _) => Probe::http(url),
            (None, Some(target)) => Ok(Probe::grpc(target)),
            (None, None) => Ok(Probe::None),
        }
    }
}

/// Runs until `shutdown` (SIGTERM) resolves; then drains, waits, deregisters.
pub async fn run(args: SidecarArgs, shutdown: impl Future<Output = ()>) -> Result<(), String> {
    let request = args.request()?;
    let probe = args.probe()?;
    let client = Client::connect_any(&args.registry, &args.connect)
        .map_err(|e| format!("--registry: {e}"))?;
    let keeper = Keeper::spawn(client, request, Backoff::default());
    let mut state = keeper.state();
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(args.probe_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0u32;
    let mut reported: Option<InstanceStatus> = None;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        if keeper.has_ended() {
            // Refused for good (a bad card, a denied token): fail loudly, so the pod restarts
            // and its events say why, rather than run unregistered.
            return match keeper.shutdown().await {
                Err(e) => Err(format!("registering: {}", e.message())),
                Ok(()) => Err("registering: the keeper stopped".into()),
            };
        }
        let healthy = probe
            .healthy(args.probe_interval.max(Duration::from_secs(1)))
            .await;
        failures = if healthy { 0 } else { failures + 1 };
        let current = state.borrow_and_update().status;
        let want = if healthy {
            Some(InstanceStatus::Alive)
        } else if failures >= args.probe_failure_threshold.max(1)
            && current == Some(InstanceStatus::Alive)
        {
            // Only a serving instance drains; one still STARTING simply stays out of ACTIVE.
            Some(InstanceStatus::Draining)
        } else {
            None
        };
        // A new registration starts over (STARTING): report again.
        if let Some(want) = want
            && (reported != Some(want) || current != Some(want))
            && state.borrow().instance.is_some()
        {
            tracing::info!(status = ?want, "application health changed");
            keeper.set_status(want).await;
            reported = Some(want);
        }
    }
    tracing::info!(grace = ?args.drain_grace, "SIGTERM: draining, then deregistering");
    keeper.set_status(InstanceStatus::Draining).await;
    tokio::time::sleep(args.drain_grace).await;
    keeper
        .shutdown()
        .await
        .map_err(|e| format!("deregistering: {e}"))
}
