//! One ADS stream: reads the client's requests, answers each subscription, and pushes a new
//! ClusterLoadAssignment whenever the index moves (from the same change feed as Watch) or an
//! instance's lease runs out. State-of-the-world: every response of a type carries all the
//! client's resources of that type that exist.

use std::collections::BTreeSet;
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::protobuf::Any;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::{Status, Streaming};

use super::names::Target;
use super::protocol::{MAX_NAMES, Protocol, Received, TYPES};
use super::resources::{self, CLUSTER, ENDPOINTS, LISTENER, ROUTE, pack};
use super::status;
use super::{Shared, peer_name};
use crate::security::status as access;
use crate::security::tokens::{Revocation, revoked};
use crate::security::{Action, Caller, Scope};
use agent_registry_core::registry::{Changed, Changes, Serving};

pub(super) struct AdsStream {
    pub shared: Arc<Shared>,
    pub caller: Caller,
    /// The client's node id, for the log.
    pub node: String,
    pub protocol: Protocol,
    /// The index moved since the load assignments were last built.
    pub endpoints_stale: bool,
    /// How soon the load assignments sent may change without a change in the feed (a lease
    /// runs out, or one that seemed to may be renewed).
    pub recheck: Option<std::time::Duration>,
    /// Names this caller may not see, already logged on this stream.
    pub denied: BTreeSet<String>,
}

type Out = mpsc::Sender<Result<DiscoveryResponse, Status>>;

impl AdsStream {
    pub async fn run(
        mut self,
        mut requests: Streaming<DiscoveryRequest>,
        out: Out,
        mut changes: Changes,
        mut revocation: Option<Revocation>,
    ) {
        let expiry = tokio::time::sleep_until(far());
        tokio::pin!(expiry);
        loop {
            let due = self.due();
            tokio::select! {
                biased;
                _ = revoked(&mut revocation) => return end(&out, access::revoked()).await,
                request = requests.message() => match request {
                    Ok(Some(request)) => {
                        if let Err(why) = self.receive(&request) {
                            return end(&out, why).await;
                        }
                    }
                    // The client went away.
                    Ok(None) | Err(_) => return,
                },
                changed = changes.changed() => {
                    let Some(changed) = changed else {
                        return end(&out, status::unavailable(
                            "server shutting down; reconnect to another replica",
                        )).await;
                    };
                    if self.touched(&changed) {
                        self.endpoints_stale = true;
                    }
                }
                () = &mut expiry => {
                    self.endpoints_stale = true;
                    expiry.as_mut().reset(far());
                }
                permit = out.reserve(), if due.is_some() => {
                    let Ok(permit) = permit else { return };
                    let type_url = due.expect("guarded");
                    let resources = self.resources(type_url);
                    if type_url == ENDPOINTS {
                        expiry.as_mut().reset(self.wake_at());
                    }
                    if let Some(response) = self.protocol.respond(type_url, resources) {
                        tracing::debug!(node = %self.node, type_url, version = %response.version_info,
                            resources = response.resources.len(), "xDS response");
                        permit.send(Ok(response));
                    }
                }
            }
        }
    }

    /// Whether `changed` moved any target whose load assignment this stream holds.
    fn touched(&self, changed: &Changed) -> bool {
        self.protocol
            .names(ENDPOINTS)
            .filter_map(Target::parse)
            .any(|t| changed.touches(&t.namespace, &t.logical_id))
    }

    /// The type to answer next: an owed response first (in the order a client learns names),
    /// then load assignments rebuilt after a change.
    fn due(&self) -> Option<&'static str> {
        TYPES
            .into_iter()
            .find(|t| self.protocol.owed(t))
            .or_else(|| {
                (self.endpoints_stale && self.protocol.subscribed(ENDPOINTS)).then_some(ENDPOINTS)
            })
    }

    fn receive(&mut self, request: &DiscoveryRequest) -> Result<(), Status> {
        if self.node.is_empty()
            && let Some(node) = &request.node
        {
            self.node = peer_name(node);
        }
        match self.protocol.receive(request) {
            Received::Nack {
                version, detail, ..
            } => {
                tracing::warn!(node = %self.node, type_url = %request.type_url, kept_version = %version,
                    %detail, "an xDS client rejected a response (NACK); it keeps its last version");
            }
            Received::UnknownType => {
                tracing::debug!(node = %self.node, type_url = %request.type_url,
                    "an xDS request for a type this server does not serve; ignored");
            }
            Received::TooManyNames(n) => {
                return Err(status::exhausted(format!(
                    "{n} resource names of {}; at most {MAX_NAMES} per stream",
                    request.type_url
                )));
            }
            Received::Ack { .. } | Received::Subscribed | Received::Stale => {}
        }
        Ok(())
    }

    /// The target `name` stands for, if it stands for one and the caller may read it.
    fn visible(&mut self, name: &str) -> Option<Target> {
        let target = Target::parse(name)?;
        match self
            .caller
            .authorize(Action::Discover, Scope::Namespace(&target.namespace))
        {
            Ok(()) => Some(target),
            Err(denied) => {
                if self.denied.len() < MAX_NAMES && self.denied.insert(name.to_string()) {
                    tracing::warn!(node = %self.node, resource = name, %denied,
                        "xDS resource refused: it is answered as absent");
                }
                None
            }
        }
    }

    /// Every subscribed resource of `type_url` that exists and the caller may see.
    fn resources(&mut self, type_url: &'static str) -> Vec<Any> {
        let names: Vec<String> = self.protocol.names(type_url).map(String::from).collect();
        if type_url == ENDPOINTS {
            self.endpoints_stale = false;
            self.recheck = None;
        }
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let Some(target) = self.visible(&name) else {
                continue;
            };
            out.push(match type_url {
                LISTENER => pack(&resources::listener(&name)),
                ROUTE => pack(&resources::route_configuration(&name)),
                CLUSTER => pack(&resources::cluster(&name)),
                _ => pack(&self.load_assignment(&name, &target)),
            });
        }
        out
    }

    fn load_assignment(
        &mut self,
        name: &str,
        target: &Target,
    ) -> envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment {
        let registry = &self.shared.registry;
        let serving = registry
            .serving(&target.namespace, &target.logical_id, target.active_only)
            .unwrap_or_else(|e| {
                tracing::warn!(resource = name, error = %e, "xDS endpoints could not be read");
                Serving {
                    instances: Vec::new(),
                    recheck: None,
                }
            });
        if let Some(r) = serving.recheck {
            self.recheck = Some(self.recheck.map_or(r, |s| s.min(r)));
        }
        let (assignment, left_out) =
            resources::load_assignment(name, &serving.instances, &self.shared.config.weight_label);
        for l in left_out {
            self.shared.report_once(&l);
        }
        assignment
    }

    /// When to look again although nothing changed: just after the soonest lease runs out,
    /// or soon while an answer is unsettled.
    fn wake_at(&self) -> Instant {
        match self.recheck {
            Some(wait) => Instant::now() + wait + std::time::Duration::from_millis(10),
            None => far(),
        }
    }
}

fn far() -> Instant {
    Instant::now() + std::time::Duration::from_secs(24 * 3600)
}

/// Ends the stream with `why`, if the client takes it within a second (else the stream just
/// ends).
async fn end(out: &Out, why: Status) {
    let _ = out
        .send_timeout(Err(why), std::time::Duration::from_secs(1))
        .await;
}
