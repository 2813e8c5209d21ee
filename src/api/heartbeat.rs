//! The `Heartbeat` bidirectional stream: a gRPC adapter over the registry's `Session`.
//!
//! No task per stream: the response stream itself polls the inbound messages and the
//! directive channel, and tonic's connection task drives it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::stream::{self, Stream};
use tonic::{Status, Streaming};

use super::{convert, status};
use crate::proto;
use crate::security::status as security_status;
use crate::security::tokens::{Revocation, revoked};
use crate::security::{Action, Caller, Scope};
use agent_registry_core::common::WhenWoken;
use agent_registry_core::domain::InstanceStatus;
use agent_registry_core::registry::{
    Ack, Directive, Directives, Registry, Session, SessionError, StreamStop,
};

pub type HeartbeatStream =
    Pin<Box<dyn Stream<Item = Result<proto::HeartbeatResponse, Status>> + Send>>;

/// How long a new stream may take to name its instance.
const FIRST_MESSAGE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

type Waiting<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// One open Heartbeat stream: who carries it, its session once named, what may end it. What
/// may end it is waited on by futures kept for the stream's life rather than re-armed at each
/// beat (a new wait registers anew with its channel), and polled only once their channel woke
/// them (polling one takes its channel's lock).
struct Carrier {
    registry: Arc<Registry>,
    caller: Caller,
    /// Resolves if the token the stream was opened with is revoked.
    revoked: WhenWoken<Waiting<()>>,
    /// Resolves when every stream must end: shutdown, or this replica cannot persist beats.
    must_end: WhenWoken<Waiting<StreamStop>>,
    /// When the first message, naming the instance, must have arrived.
    first_deadline: Pin<Box<tokio::time::Sleep>>,
    /// The next directive and the channel to wait on for the one after; pending until the
    /// session exists.
    directive: WhenWoken<Waiting<(Directive, Directives)>>,
    /// Opened by the first message, which names the instance.
    session: Option<Session>,
    inbound: Streaming<proto::HeartbeatRequest>,
    done: bool,
}

fn next_directive(mut directives: Directives) -> WhenWoken<Waiting<(Directive, Directives)>> {
    WhenWoken::new(Box::pin(
        async move { (directives.next().await, directives) },
    ))
}

fn ack(a: Ack) -> proto::HeartbeatResponse {
    proto::HeartbeatResponse {
        sequence: a.sequence,
        lease_expires_at: Some(convert::timestamp(a.lease_expires_at)),
        heartbeat_interval: Some(convert::duration(a.heartbeat_interval)),
        directive: proto::Directive::None as i32,
        reason: String::new(),
    }
}

fn directive(
    d: proto::Directive,
    reason: &str,
    session: Option<&Session>,
) -> proto::HeartbeatResponse {
    proto::HeartbeatResponse {
        sequence: 0,
        lease_expires_at: session
            .and_then(Session::lease_expires_at)
            .map(convert::timestamp),
        heartbeat_interval: None,
        directive: d as i32,
        reason: reason.to_string(),
    }
}

pub(super) fn status_of(value: i32) -> Result<Option<InstanceStatus>, Status> {
    match proto::InstanceStatus::try_from(value) {
        Ok(proto::InstanceStatus::Unspecified) => Ok(None),
        Ok(proto::InstanceStatus::Alive) => Ok(Some(InstanceStatus::Alive)),
        Ok(proto::InstanceStatus::Draining) => Ok(Some(InstanceStatus::Draining)),
        _ => Err(status::invalid(
            "status",
            "a heartbeat may only set ALIVE or DRAINING",
        )),
    }
}

/// A session that cannot go on: REREGISTER, or the status it ends with.
fn session_error(
    e: SessionError,
    session: Option<&Session>,
) -> Result<proto::HeartbeatResponse, Status> {
    status::session(e).map(|reason| directive(proto::Directive::Reregister, &reason, session))
}

impl Carrier {
    /// Whether this caller may carry the instance the first message names. `Ok(false)`: no
    /// replica knows it (register again). A dead instance passes, so the session tells the
    /// agent to register again rather than refusing it for an owner it no longer has.
    async fn admit(
        registry: &Registry,
        caller: &Caller,
        instance_id: &str,
    ) -> Result<bool, Status> {
        if let Caller::Open = caller {
            return Ok(true);
        }
        caller.authorize(Action::Heartbeat, Scope::Listing)?;
        let Some(instance) = registry
            .locate(instance_id)
            .await
            .map_err(status::registry)?
        else {
            return Ok(false);
        };
        if instance.status != InstanceStatus::Dead {
            caller.authorize(
                Action::Heartbeat,
                Scope::Instance {
                    namespace: &instance.namespace,
                    owner: &instance.registered_by,
                },
            )?;
        }
        Ok(true)
    }

    async fn handle(
        &mut self,
        req: proto::HeartbeatRequest,
    ) -> Result<proto::HeartbeatResponse, Status> {
        let Some(session) = self.session.as_mut() else {
            // The first message: it names the instance this stream carries.
            match Self::admit(&self.registry, &self.caller, &req.instance_id).await {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    return Ok(directive(
                        proto::Directive::Reregister,
                        "instance is unknown or DEAD; register again",
                        None,
                    ));
                }
                Err(denied) => {
                    self.done = true;
                    return Err(denied);
                }
            }
            match self.registry.open_session(&req.instance_id).await {
                Ok(s) => {
                    self.directive = next_directive(s.directives());
                    self.session = Some(s);
                }
                Err(e) => {
                    self.done = true;
                    return session_error(e, None);
                }
            }
            return Box::pin(self.handle(req)).await;
        };
        if !req.instance_id.is_empty()
            && agent_registry_core::domain::parse_uuid("instance_id", &req.instance_id).ok()
                != Some(session.instance_id())
        {
            return Err(status::invalid(
                "instance_id",
                "a Heartbeat stream carries exactly one instance",
            ));
        }
        let status = status_of(req.status)?;
        match session.beat(req.sequence, status).await {
            Ok(a) => Ok(ack(a)),
            Err(e) => {
                // Whatever ends a beat ends the stream.
                self.done = true;
                session_error(e, Some(session))
            }
        }
    }

    async fn next(&mut self) -> Option<Result<proto::HeartbeatResponse, Status>> {
        if self.done {
            return None;
        }
        let awaiting_first = self.session.is_none();
        let item = tokio::select! {
            biased;
            stop = &mut self.must_end => Err(status::streams_stopped(stop)),
            _ = &mut self.revoked => Err(security_status::revoked()),
            _ = &mut self.first_deadline, if awaiting_first => Err(
                status::invalid("instance_id", "the first heartbeat must name the instance"),
            ),
            (d, directives) = &mut self.directive => match d {
                Directive::Drain => {
                    self.directive = next_directive(directives);
                    Ok(directive(proto::Directive::Drain, "drained by an operator", self.session.as_ref()))
                }
                Directive::Reregister(reason) => {
                    self.done = true;
                    Ok(directive(proto::Directive::Reregister, &reason, None))
                }
                Directive::End => return None,
                Directive::Superseded => Err(status::superseded()),
            },
            msg = self.inbound.message() => match msg {
                Ok(Some(req)) => self.handle(req).await,
                // A limit refused the agent's message: say so before the stream ends.
                Err(e) if e.code() == tonic::Code::ResourceExhausted => Err(e),
                // The agent closed its side or went away: the lease runs its course.
                Ok(None) | Err(_) => return None,
            },
        };
        self.done |= item.is_err();
        Some(item)
    }
}

/// Opens a heartbeat stream. Headers go out at once; the first message, read by the stream
/// itself, names the instance.
pub fn open(
    registry: Arc<Registry>,
    caller: Caller,
    revocation: Option<Revocation>,
    inbound: Streaming<proto::HeartbeatRequest>,
) -> HeartbeatStream {
    let carrier = Carrier {
        must_end: WhenWoken::new(Box::pin(registry.streams_must_end())),
        revoked: WhenWoken::new(Box::pin(async move {
            let mut revocation = revocation;
            revoked(&mut revocation).await
        })),
        first_deadline: Box::pin(tokio::time::sleep(FIRST_MESSAGE_TIMEOUT)),
        directive: WhenWoken::new(Box::pin(std::future::pending())),
        registry,
        caller,
        session: None,
        inbound,
        done: false,
    };
    // Boxed: the state moves in and out of the stream's future at every item.
    Box::pin(stream::unfold(Box::new(carrier), |mut st| async move {
        st.next().await.map(|item| (item, st))
    }))
}

/// One beat without a stream (the HTTP API's unary renewal), with the stream's rules: the
/// same authorization, lease and status semantics; REREGISTER comes back as the reply's
/// directive, and DRAIN once after an operator drained the instance (never for a drain the
/// agent asked for itself).
pub async fn beat_once(
    registry: &Registry,
    caller: &Caller,
    r: proto::HeartbeatRequest,
) -> Result<proto::HeartbeatResponse, Status> {
    if !Carrier::admit(registry, caller, &r.instance_id).await? {
        return Ok(directive(
            proto::Directive::Reregister,
            "instance is unknown or DEAD; register again",
            None,
        ));
    }
    let status = status_of(r.status)?;
    match registry.beat_once(&r.instance_id, r.sequence, status).await {
        Ok((a, drained)) => {
            let mut reply = ack(a);
            if drained {
                reply.directive = proto::Directive::Drain as i32;
                reply.reason = "drained by an operator".into();
            }
            Ok(reply)
        }
        Err(e) => session_error(e, None),
    }
}
