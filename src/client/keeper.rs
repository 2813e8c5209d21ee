//! The keeper: one task per agent that registers, holds the heartbeat stream open, resumes the
//! same instance after a disconnect or a server restart (with full-jitter back-off), registers
//! anew when told `REREGISTER`, follows the advised interval and `DRAIN`, and deregisters when
//! shut down. Its state is published on a `watch` channel.

use std::time::Duration;

use rand::Rng;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::backoff::Backoff;
use super::{Client, duration};
use crate::proto::{self, Directive, InstanceStatus};

/// What the keeper knows, as it changes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentState {
    /// The current registration (`None` until registered, or while registering anew).
    pub instance: Option<proto::Instance>,
    /// The status as last acknowledged (or pushed by the server: DRAIN).
    pub status: Option<InstanceStatus>,
    /// Whether the heartbeat stream is up.
    pub connected: bool,
    /// Beats acknowledged so far.
    pub acks: u64,
    /// Registrations made (1 unless the server asked for a new one).
    pub registrations: u32,
    /// An operator drained this instance.
    pub drain_requested: bool,
}

pub struct Keeper {
    state: watch::Receiver<AgentState>,
    statuses: mpsc::Sender<InstanceStatus>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::Status>>,
}

impl Keeper {
    /// Starts keeping `request` registered through `client`.
    pub fn spawn(client: Client, request: proto::RegisterRequest, backoff: Backoff) -> Keeper {
        let (state_tx, state) = watch::channel(AgentState::default());
        let (statuses, status_rx) = mpsc::channel(8);
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(client, request, backoff, state_tx, status_rx, stopped));
        Keeper {
            state,
            statuses,
            stop: Some(stop),
            task,
        }
    }

    /// The state as it changes.
    pub fn state(&self) -> watch::Receiver<AgentState> {
        self.state.clone()
    }

    /// Reports a status change (ALIVE or DRAINING) on the next beat, sent at once.
    pub async fn set_status(&self, status: InstanceStatus) {
        let _ = self.statuses.send(status).await;
    }

    /// Deregisters and stops. Returns the error that ended the keeper early, if any.
    pub async fn shutdown(mut self) -> Result<(), tonic::Status> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task)
            .await
            .map_err(|e| tonic::Status::internal(format!("keeper task: {e}")))?
    }
}

/// Errors worth retrying: the server or the network, or a limit (RESOURCE_EXHAUSTED: a fleet
/// sharing one token may briefly exceed its rate), not the request itself.
fn retryable(s: &tonic::Status) -> bool {
    use tonic::Code::*;
    matches!(
        s.code(),
        Unavailable
            | Unknown
            | Internal
            | DeadlineExceeded
            | Aborted
            | Cancelled
            | ResourceExhausted
    )
}

/// How long to wait before resuming the current instance: the back-off, but never more than a
/// third of its lease, so an agent retrying through an outage is back before its lease (or the
/// grace that follows the outage) runs out.
fn resume_wait(backoff: &mut Backoff, state: &watch::Sender<AgentState>) -> Duration {
    let wait = backoff.next_wait();
    let lease = state
        .borrow()
        .instance
        .as_ref()
        .and_then(|i| i.lease_ttl)
        .map(duration);
    match lease {
        Some(lease) => wait.min((lease / 3).max(Duration::from_millis(100))),
        None => wait,
    }
}

/// The advised interval with ±10 % jitter (SPEC §4.2).
fn jittered(every: Duration) -> Duration {
    every.mul_f64(rand::thread_rng().gen_range(0.9..=1.1))
}

/// Whether an error ends this replica's usefulness for now: it cannot be reached, or it said
/// UNAVAILABLE (shutting down, cut off from its store): move to the next address.
fn move_on(s: &tonic::Status) -> bool {
    use tonic::Code::*;
    matches!(
        s.code(),
        Unavailable | Unknown | Cancelled | DeadlineExceeded
    )
}

async fn run(
    mut client: Client,
    request: proto::RegisterRequest,
    mut backoff: Backoff,
    state: watch::Sender<AgentState>,
    mut statuses: mpsc::Receiver<InstanceStatus>,
    mut stopped: oneshot::Receiver<()>,
) -> Result<(), tonic::Status> {
    let mut every = Duration::from_secs(5);
    let mut seq = 0u64;
    loop {
        // Register when there is no instance to resume.
        if state.borrow().instance.is_none() {
            let attempt = tokio::select! {
                r = client.register(request.clone()) => r,
                _ = &mut stopped => return Ok(()),
            };
            match attempt {
                Ok(r) => {
                    every = r.heartbeat_interval;
                    backoff.reset();
                    state.send_modify(|s| {
                        s.status = InstanceStatus::try_from(r.instance.status).ok();
                        s.instance = Some(r.instance);
                        s.registrations += 1;
                        s.drain_requested = false;
                    });
                }
                Err(e) if retryable(&e) => {
                    tracing::warn!(error = %e, "register failed; retrying");
                    if move_on(&e) {
                        client = client.failover().await;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.next_wait()) => continue,
                        _ = &mut stopped => return Ok(()),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        let id = state
            .borrow()
            .instance
            .as_ref()
            .map(|i| i.instance_id.clone());
        let id = id.expect("registered above");

        // One stream; it ends on a network error, a server restart or REREGISTER.
        let (tx, rx) = mpsc::channel(4);
        seq += 1;
        let first = proto::HeartbeatRequest {
            instance_id: id.clone(),
            sequence: seq,
            status: 0,
        };
        let _ = tx.send(first).await;
        let mut registry = client.registry.clone();
        let opened = tokio::select! {
            r = registry.heartbeat(tokio_stream::wrappers::ReceiverStream::new(rx)) => r,
            _ = &mut stopped => return deregister(&client, &id).await,
        };
        let mut replies = match opened {
            Ok(r) => r.into_inner(),
            Err(e) => {
                tracing::debug!(error = %e, "heartbeat stream did not open");
                state.send_modify(|s| s.connected = false);
                if move_on(&e) {
                    client = client.failover().await;
                }
                tokio::select! {
                    _ = tokio::time::sleep(resume_wait(&mut backoff, &state)) => continue,
                    _ = &mut stopped => return deregister(&client, &id).await,
                }
            }
        };
        let mut next_beat = Box::pin(tokio::time::sleep(jittered(every)));
        let mut ended_by = None;
        let reregister = loop {
            tokio::select! {
                _ = &mut stopped => return deregister(&client, &id).await,
                Some(status) = statuses.recv() => {
                    seq += 1;
                    let beat = proto::HeartbeatRequest {
                        instance_id: id.clone(), sequence: seq, status: status as i32,
                    };
                    if tx.send(beat).await.is_err() {
                        ended_by = final_status(&mut replies).await;
                        break false;
                    }
                    state.send_modify(|s| s.status = Some(status));
                }
                _ = &mut next_beat => {
                    seq += 1;
                    let beat = proto::HeartbeatRequest {
                        instance_id: id.clone(), sequence: seq, status: 0,
                    };
                    if tx.send(beat).await.is_err() {
                        ended_by = final_status(&mut replies).await;
                        break false;
                    }
                    next_beat.set(tokio::time::sleep(jittered(every)));
                }
                reply = replies.message() => match reply {
                    Ok(Some(ack)) => {
                        backoff.reset();
                        if let Some(d) = ack.heartbeat_interval { every = duration(d); }
                        let directive = Directive::try_from(ack.directive).unwrap_or(Directive::None);
                        state.send_modify(|s| {
                            s.connected = true;
                            if ack.sequence > 0 { s.acks += 1; }
                            if directive == Directive::Drain {
                                s.drain_requested = true;
                                s.status = Some(InstanceStatus::Draining);
                            }
                        });
                        if directive == Directive::Reregister {
                            tracing::warn!(instance_id = %id, reason = %ack.reason,
                                "the registry asked for a new registration");
                            break true;
                        }
                    }
                    // Not ours to beat for (registered under another token, e.g. before
                    // tokens were turned on): a registration of our own replaces it.
                    Err(e) if e.code() == tonic::Code::PermissionDenied => {
                        tracing::warn!(instance_id = %id, error = %e,
                            "not allowed to keep this instance; registering anew");
                        break true;
                    }
                    Ok(None) => break false,
                    Err(e) => {
                        ended_by = Some(e);
                        break false;
                    }
                },
            }
        };
        if let Some(e) = &ended_by {
            tracing::info!(instance_id = %id, error = %e, "heartbeat stream ended; resuming");
            if move_on(e) {
                client = client.failover().await;
            }
        }
        state.send_modify(|s| {
            s.connected = false;
            if reregister {
                s.instance = None;
            }
        });
        if !reregister {
            // Resume the same instance after a pause.
            tokio::select! {
                _ = tokio::time::sleep(resume_wait(&mut backoff, &state)) => {}
                _ = &mut stopped => return deregister(&client, &id).await,
            }
        }
    }
}

/// Why a stream the server already ended ended (its request side is closed when its status is
/// on the way), so the keeper can tell `UNAVAILABLE` (move on) from the rest.
async fn final_status(
    replies: &mut tonic::Streaming<proto::HeartbeatResponse>,
) -> Option<tonic::Status> {
    loop {
        match tokio::time::timeout(Duration::from_secs(1), replies.message()).await {
            // Replies still in flight come first.
            Ok(Ok(Some(_))) => continue,
            Ok(Err(status)) => return Some(status),
            _ => return None,
        }
    }
}

/// Best effort: an unreachable server leaves the instance to its lease.
async fn deregister(client: &Client, id: &str) -> Result<(), tonic::Status> {
    let req = proto::DeregisterRequest {
        instance_id: id.to_string(),
        reason: "agent shutting down".into(),
    };
    match tokio::time::timeout(
        Duration::from_secs(5),
        client.registry.clone().deregister(req),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.code() == tonic::Code::FailedPrecondition => Ok(()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(tonic::Status::deadline_exceeded("deregister timed out")),
    }
}
