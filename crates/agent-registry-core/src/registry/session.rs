//! The heartbeat use case: one agent's stream, independent of any front end — acknowledge beats,
//! persist status changes before their acknowledgement, and surface server-pushed directives.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use uuid::Uuid;

use super::{Registry, RegistryError};
use crate::domain::{InstanceStatus, Transition, ValidationError, parse_uuid};
use crate::liveness::{Directive, Refusal, StreamStop};

/// The acknowledgement of one beat.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    pub sequence: u64,
    pub lease_expires_at: DateTime<Utc>,
    pub heartbeat_interval: Duration,
}

/// Why a stream cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Unknown, dead or fenced: the agent must Register again.
    #[error("{0}")]
    Reregister(String),
    /// This replica cannot carry the stream now (its beats are not reaching the store, or the
    /// instance could not be looked up): the agent retries, here or on another replica.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

pub struct Session {
    registry: Arc<Registry>,
    id: Uuid,
    generation: u64,
    directives: watch::Receiver<Option<Directive>>,
}

impl Session {
    /// Opens the stream for the instance the first message names (see [`admit`]); supersedes
    /// an older stream.
    pub(super) async fn open(
        registry: Arc<Registry>,
        instance_id: &str,
    ) -> Result<Session, SessionError> {
        let id = admit(&registry, instance_id).await?;
        let attached = registry.liveness.attach(id);
        Ok(Session {
            registry,
            id,
            generation: attached.generation,
            directives: attached.directives,
        })
    }

    pub fn instance_id(&self) -> Uuid {
        self.id
    }

    /// Handles one beat: a status change is persisted first, then the lease is renewed.
    pub async fn beat(
        &mut self,
        sequence: u64,
        status: Option<InstanceStatus>,
    ) -> Result<Ack, SessionError> {
        beat(&self.registry, self.id, sequence, status).await
    }

    /// The directives the server pushes to this stream, to wait on apart from the session:
    /// a front end keeps one wait alive across beats instead of re-arming it per beat.
    pub fn directives(&self) -> Directives {
        Directives(self.directives.clone())
    }

    /// When the lease now runs out (on the store's clock), for directive messages that
    /// acknowledge no beat.
    pub fn lease_expires_at(&self) -> Option<DateTime<Utc>> {
        self.registry.liveness.lease_expires_at(self.id)
    }
}

/// What the server pushes to one stream (DRAIN, REREGISTER, the end, or a newer stream).
pub struct Directives(watch::Receiver<Option<Directive>>);

impl Directives {
    /// Waits for the next directive.
    pub async fn next(&mut self) -> Directive {
        loop {
            if self.0.changed().await.is_err() {
                // The slot was replaced without a word: treat it as superseded.
                return Directive::Superseded;
            }
            if let Some(d) = self.0.borrow_and_update().clone() {
                return d;
            }
        }
    }
}

/// Whether a beat for the instance `instance_id` names may be taken here (liveness's rules:
/// this replica vouches for its beats and holds a renewable lease for it). Any replica accepts
/// any live instance of the shared store: one this replica has not heard of yet (registered a
/// moment ago elsewhere, or its replica just died) is looked up in the store's change log
/// before the agent is told to register again.
async fn admit(registry: &Registry, instance_id: &str) -> Result<Uuid, SessionError> {
    let id = parse_uuid("instance_id", instance_id)?;
    match registry.liveness.admit(id) {
        Ok(()) => return Ok(id),
        Err(Refusal::NoLease) => {}
        Err(other) => return Err(refused(other, "")),
    }
    if let Err(e) = registry.catch_up().await {
        // Not knowing is not "unknown": the agent keeps its id and retries.
        tracing::warn!(error = %e, instance_id = %id, "could not look the instance up in the store");
        return Err(SessionError::Unavailable(
            "the registry could not look this instance up in its store; retry".into(),
        ));
    }
    registry
        .liveness
        .admit(id)
        .map_err(|r| refused(r, "instance is unknown or DEAD; register again"))?;
    Ok(id)
}

/// One beat of the instance `id`: a status change is persisted first, then the lease renewed.
async fn beat(
    registry: &Registry,
    id: Uuid,
    sequence: u64,
    status: Option<InstanceStatus>,
) -> Result<Ack, SessionError> {
    if let Some(status) = status {
        let t = match status {
            InstanceStatus::Alive => Transition::Ready,
            InstanceStatus::Draining => Transition::Drain,
            _ => {
                return Err(ValidationError {
                    field: "status".into(),
                    message: "a heartbeat may only set ALIVE or DRAINING".into(),
                }
                .into());
            }
        };
        // The agent asked for this itself: record it first so no DRAIN is echoed back.
        let liveness = &registry.liveness;
        let previous = liveness.record_own_status(id, status);
        if let Err(e) = registry.report_status(id, t).await {
            if let Some(previous) = previous {
                liveness.restore_status(id, previous);
            }
            return Err(match e {
                RegistryError::FailedPrecondition(rule) => {
                    SessionError::Reregister(rule.to_string())
                }
                RegistryError::NotFound(what) => {
                    SessionError::Reregister(format!("{what} not found"))
                }
                other => other.into(),
            });
        }
    }
    let renewed = registry
        .liveness
        .beat(id)
        .map_err(|r| refused(r, "instance is DEAD; register again"))?;
    Ok(Ack {
        sequence,
        lease_expires_at: renewed.expires_at,
        heartbeat_interval: renewed.heartbeat_interval,
    })
}

/// What the agent is told when liveness refuses it; `gone` when it holds no lease here.
fn refused(refusal: Refusal, gone: &str) -> SessionError {
    SessionError::Unavailable(match refusal {
        Refusal::NoLease => return SessionError::Reregister(gone.into()),
        // The store may find the lease renewed (the agent beat elsewhere, e.g. just before
        // failing over here): the agent retries with the same id instead of registering anew.
        Refusal::Claimed => {
            "the registry is deciding whether this instance's lease ran out; retry".into()
        }
        Refusal::NotVouching(StreamStop::CannotPersist) => {
            "this replica cannot persist heartbeats to its store now; reconnect (another replica can)"
                .into()
        }
        Refusal::NotVouching(StreamStop::ShuttingDown) => {
            "server shutting down; reconnect to resume this instance".into()
        }
    })
}

impl Drop for Session {
    /// A stream that ends leaves the instance to its lease: only the stream is forgotten.
    fn drop(&mut self) {
        self.registry.liveness.detach(self.id, self.generation);
    }
}

impl Registry {
    /// Opens the heartbeat stream of the instance `instance_id` names (see [`Session`]).
    pub async fn open_session(
        self: &Arc<Self>,
        instance_id: &str,
    ) -> Result<Session, SessionError> {
        Session::open(self.clone(), instance_id).await
    }

    /// One beat without a stream, for front ends whose agents cannot hold one (the HTTP API's
    /// unary renewal): the same checks, lease and status semantics as a stream's beat, and no
    /// stream is attached or superseded. With the ack: whether an operator drained the instance
    /// and no stream was told (then it counts as told), the DRAIN a stream would have had.
    pub async fn beat_once(
        &self,
        instance_id: &str,
        sequence: u64,
        status: Option<InstanceStatus>,
    ) -> Result<(Ack, bool), SessionError> {
        let id = admit(self, instance_id).await?;
        let ack = beat(self, id, sequence, status).await?;
        Ok((ack, self.liveness.take_untold_drain(id)))
    }

    /// Resolves when every heartbeat stream must end: shutdown, or this replica cannot persist
    /// beats any more.
    pub fn streams_must_end(
        &self,
    ) -> impl std::future::Future<Output = StreamStop> + Send + 'static {
        self.liveness.streams_must_end()
    }

    /// What an agent should use: a third of its lease (SPEC §4.2), raised under load.
    pub fn heartbeat_interval(&self, lease_ttl: Duration) -> Duration {
        self.liveness.heartbeat_interval(lease_ttl)
    }
}
