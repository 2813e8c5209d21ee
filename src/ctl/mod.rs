//! `agent-registry ctl`: the operator's command line, a gRPC client of a running registry.
//! Like any client it speaks the generated types directly; it shares no code path with the
//! server beyond the contract.

mod agents;
mod bootstrap;
mod epoch;
mod render;

use std::collections::HashMap;
use std::io::{BufRead, Write};

use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;

use crate::proto::{
    self, admin_service_client::AdminServiceClient, catalog_service_client::CatalogServiceClient,
    discovery_service_client::DiscoveryServiceClient,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ViewArg {
    Active,
    Live,
    All,
}

#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The registry to talk to.
    #[arg(
        long,
        env = "AGENT_REGISTRY_SERVER",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    pub server: String,
    #[command(flatten)]
    pub connect: agent_registry_client::ConnectOptions,
    /// `table` for people, `json` for scripts (`watch`: one object per line).
    #[arg(long, short, value_enum, default_value = "table", global = true)]
    pub output: Output,
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// The Discover/Watch filters.
#[derive(Debug, Clone, Args)]
pub struct Filters {
    #[arg(long, short, default_value = "default")]
    pub namespace: String,
    /// Any of these logical ids (repeatable).
    #[arg(long = "logical-id")]
    pub logical_ids: Vec<String>,
    #[arg(long)]
    pub agent_type: Option<String>,
    /// Every one required (repeatable).
    #[arg(long = "capability")]
    pub capabilities: Vec<String>,
    /// `key=value`, every one required (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?}: expected key=value"))
}

#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Every namespace with its epoch and counts.
    Namespaces,
    /// Instances matching the filters in a view (Discover).
    List {
        #[command(flatten)]
        filters: Filters,
        #[arg(long, value_enum, default_value = "active")]
        view: ViewArg,
    },
    /// One instance, every field.
    Get { instance_id: String },
    /// Live changes, one line per event (the current set first, unless --start-revision).
    Watch {
        #[command(flatten)]
        filters: Filters,
        /// Every change after this revision instead of the current set.
        #[arg(long, default_value_t = 0)]
        start_revision: i64,
    },
    /// Set an instance DRAINING (it leaves ACTIVE and LIVE, its agent is told).
    Drain {
        instance_id: String,
        #[arg(long, default_value = "drained with agent-registry ctl")]
        reason: String,
    },
    /// Mark an instance DEAD (EVICTED); its agent is told to register again.
    Evict {
        instance_id: String,
        #[arg(long, default_value = "evicted with agent-registry ctl")]
        reason: String,
    },
    /// A namespace's epoch.
    #[command(subcommand)]
    Epoch(EpochCommand),
    /// Agents with a card, live ones unless --include-offline: a text search and filters.
    Agents {
        #[command(flatten)]
        filters: agents::AgentFilters,
    },
    /// One agent: its current card, state and live instances.
    Agent {
        logical_id: String,
        #[arg(long, short, default_value = "default")]
        namespace: String,
    },
    /// Print the JSON a gRPC client puts in GRPC_XDS_BOOTSTRAP to resolve
    /// `xds:///<logical_id>.<namespace>` through the registry at --server (no call is made).
    XdsBootstrap {
        /// The client's node id, shown in the registry's log.
        #[arg(long, default_value = "agent-registry-xds-client")]
        node_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum EpochCommand {
    /// The namespace's current epoch and counts.
    Show { namespace: String },
    /// Make a new epoch current, fencing (killing) every instance of older ones.
    Advance {
        namespace: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

/// Why a command failed; printed as one line, exit status 1.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("cannot connect to {0}: {1}")]
    Connect(String, agent_registry_client::ConnectError),
    #[error("{}: {}", .0.code(), .0.message())]
    Rpc(#[from] tonic::Status),
    #[error("{0}")]
    Refused(String),
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
}

fn print(out: &mut impl Write, output: Output, table: String, json: Value) -> std::io::Result<()> {
    match output {
        Output::Table => write!(out, "{table}"),
        Output::Json => writeln!(out, "{json:#}"),
    }
}

/// One instance as a one-row table, or its JSON.
fn print_instance_row(out: &mut impl Write, o: Output, i: proto::Instance) -> std::io::Result<()> {
    let table = render::instances_table(std::slice::from_ref(&i));
    print(out, o, table, render::instance_json(&i))
}

fn discover_request(f: &Filters, view: ViewArg) -> proto::DiscoverRequest {
    proto::DiscoverRequest {
        namespace: f.namespace.clone(),
        logical_ids: f.logical_ids.clone(),
        agent_type: f.agent_type.clone().unwrap_or_default(),
        capabilities: f.capabilities.clone(),
        label_selector: f.labels.iter().cloned().collect::<HashMap<_, _>>(),
        view: match view {
            ViewArg::Active => proto::DiscoverView::Active,
            ViewArg::Live => proto::DiscoverView::Live,
            ViewArg::All => proto::DiscoverView::All,
        } as i32,
        page_size: 1000,
        page_token: String::new(),
    }
}

/// Runs one command, writing to `out` and reading confirmations from `input`.
pub async fn run(
    args: CtlArgs,
    out: &mut impl Write,
    input: &mut impl BufRead,
) -> Result<(), CtlError> {
    if let CtlCommand::XdsBootstrap { node_id } = &args.command {
        let json = bootstrap::xds_bootstrap(&args.server, &args.connect, node_id);
        return Ok(writeln!(out, "{json:#}")?);
    }
    let channel = args
        .connect
        .connect(&args.server)
        .await
        .map_err(|e| CtlError::Connect(args.server.clone(), e))?;
    let mut ctl = Ctl {
        discovery: DiscoveryServiceClient::new(channel.clone()),
        admin: AdminServiceClient::new(channel.clone()),
        catalog: CatalogServiceClient::new(channel),
        output: args.output,
    };
    match args.command {
        CtlCommand::Namespaces => ctl.namespaces(out).await,
        CtlCommand::List { filters, view } => ctl.list(out, &filters, view).await,
        CtlCommand::Get { instance_id } => ctl.get(out, instance_id).await,
        CtlCommand::Watch {
            filters,
            start_revision,
        } => ctl.watch(out, &filters, start_revision).await,
        CtlCommand::Drain {
            instance_id,
            reason,
        } => {
            let req = proto::DrainInstanceRequest {
                instance_id,
                reason,
            };
            let i = ctl.admin.drain_instance(req).await?.into_inner().instance;
            Ok(print_instance_row(out, ctl.output, i.unwrap_or_default())?)
        }
        CtlCommand::Evict {
            instance_id,
            reason,
        } => {
            let req = proto::EvictInstanceRequest {
                instance_id,
                reason,
            };
            let i = ctl.admin.evict_instance(req).await?.into_inner().instance;
            Ok(print_instance_row(out, ctl.output, i.unwrap_or_default())?)
        }
        CtlCommand::Epoch(EpochCommand::Show { namespace }) => ctl.epoch_show(out, namespace).await,
        CtlCommand::Epoch(EpochCommand::Advance { namespace, yes }) => {
            ctl.epoch_advance(out, input, namespace, yes).await
        }
        CtlCommand::Agents { filters } => ctl.agents(out, filters).await,
        CtlCommand::Agent {
            logical_id,
            namespace,
        } => ctl.agent(out, namespace, logical_id).await,
        CtlCommand::XdsBootstrap { .. } => unreachable!("answered before connecting"),
    }
}

/// One connection's clients and how to print: a method per subcommand.
struct Ctl {
    discovery: DiscoveryServiceClient<agent_registry_client::options::Transport>,
    admin: AdminServiceClient<agent_registry_client::options::Transport>,
    catalog: CatalogServiceClient<agent_registry_client::options::Transport>,
    output: Output,
}

impl Ctl {
    async fn namespaces(&mut self, out: &mut impl Write) -> Result<(), CtlError> {
        let mut all = Vec::new();
        let mut token = String::new();
        loop {
            let req = proto::ListNamespacesRequest {
                page_size: 1000,
                page_token: token,
            };
            let page = self.admin.list_namespaces(req).await?.into_inner();
            all.extend(page.namespaces);
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        let json = Value::Array(all.iter().map(render::namespace_json).collect());
        Ok(print(
            out,
            self.output,
            render::namespaces_table(&all),
            json,
        )?)
    }

    async fn list(
        &mut self,
        out: &mut impl Write,
        filters: &Filters,
        view: ViewArg,
    ) -> Result<(), CtlError> {
        let mut req = discover_request(filters, view);
        let mut all = Vec::new();
        loop {
            let page = self.discovery.discover(req.clone()).await?.into_inner();
            all.extend(page.instances);
            if page.next_page_token.is_empty() {
                break;
            }
            req.page_token = page.next_page_token;
        }
        let json = Value::Array(all.iter().map(render::instance_json).collect());
        Ok(print(
            out,
            self.output,
            render::instances_table(&all),
            json,
        )?)
    }

    async fn get(&mut self, out: &mut impl Write, instance_id: String) -> Result<(), CtlError> {
        let req = proto::GetInstanceRequest { instance_id };
        let i = self
            .discovery
            .get_instance(req)
            .await?
            .into_inner()
            .instance;
        let i = i.unwrap_or_default();
        let (table, json) = (render::instance_detail(&i), render::instance_json(&i));
        Ok(print(out, self.output, table, json)?)
    }

    async fn watch(
        &mut self,
        out: &mut impl Write,
        filters: &Filters,
        start_revision: i64,
    ) -> Result<(), CtlError> {
        let d = discover_request(filters, ViewArg::All);
        let req = proto::WatchRequest {
            namespace: d.namespace,
            logical_ids: d.logical_ids,
            agent_type: d.agent_type,
            capabilities: d.capabilities,
            label_selector: d.label_selector,
            start_revision,
        };
        let mut stream = self.discovery.watch(req).await?.into_inner();
        while let Some(m) = stream.message().await? {
            self.print_watch_message(out, &m)?;
        }
        Ok(())
    }

    /// One line per event, or one for a bookmark.
    fn print_watch_message(
        &self,
        out: &mut impl Write,
        m: &proto::WatchResponse,
    ) -> std::io::Result<()> {
        for e in &m.events {
            match self.output {
                Output::Table => writeln!(out, "{}", render::event_line(e))?,
                Output::Json => writeln!(out, "{}", render::event_json(e))?,
            }
        }
        if m.events.is_empty() {
            match self.output {
                Output::Table => writeln!(out, "{}  BOOKMARK", m.bookmark_revision)?,
                Output::Json => writeln!(
                    out,
                    "{}",
                    serde_json::json!({"bookmark_revision": m.bookmark_revision})
                )?,
            }
        }
        out.flush()
    }
}
