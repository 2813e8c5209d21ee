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
        let run = Run {
            client,
            request,
            backoff,
            state: state_tx,
            statuses: status_rx,
            stopped,
            every: Duration::from_secs(5),
            seq: 0,
        };
        let task = tokio::spawn(run.run());
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

    /// Whether the keeper has ended by itself: the registry refused the request (a bad card, a
    /// denied token), which no retry mends. `shutdown` then returns why.
    pub fn has_ended(&self) -> bool {
        self.task.is_finished()
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

impl Run {
    /// The keeper's task: register when there is no instance to resume, hold its stream,
    /// resume or register anew as the stream ends, deregister when stopped.
    async fn run(mut self) -> Result<(), tonic::Status> {
        let run = &mut self;
        loop {
            // Register when there is no instance to resume.
            if run.state.borrow().instance.is_none() {
                match run.register().await? {
                    Registered::Yes => {}
                    Registered::Retry => continue,
                    Registered::Stopped => return Ok(()),
                }
            }
            let id = run
                .state
                .borrow()
                .instance
                .as_ref()
                .map(|i| i.instance_id.clone());
            let id = id.expect("registered above");
            match run.hold(&id).await {
                Held::Stopped => return deregister(&run.client, &id).await,
                Held::Reregister => run.state.send_modify(|s| {
                    s.connected = false;
                    s.instance = None;
                }),
                Held::Resume { ended_by, opened } => {
                    if let Some(e) = &ended_by {
                        match opened {
                            true => {
                                tracing::info!(instance_id = %id, error = %e, "heartbeat stream ended; resuming")
                            }
                            false => tracing::debug!(error = %e, "heartbeat stream did not open"),
                        }
                        if move_on(e) {
                            run.client = run.client.failover().await;
                        }
                    }
                    run.state.send_modify(|s| s.connected = false);
                    // Resume the same instance after a pause.
                    let wait = resume_wait(&mut run.backoff, &run.state);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = &mut run.stopped => return deregister(&run.client, &id).await,
                    }
                }
            }
        }
    }
}

/// One keeper's loop state: what it registers, how it backs off, what it reports.
struct Run {
    client: Client,
    request: proto::RegisterRequest,
    backoff: Backoff,
    state: watch::Sender<AgentState>,
    statuses: mpsc::Receiver<InstanceStatus>,
    stopped: oneshot::Receiver<()>,
    /// The interval the registry advised.
    every: Duration,
    seq: u64,
}

enum Registered {
    Yes,
    /// Failed for now; waited already.
    Retry,
    Stopped,
}

/// How holding one stream ended.
enum Held {
    Stopped,
    /// The registry asked for a new registration (a new id).
    Reregister,
    /// Resume the same instance: the stream ended (or never opened), with why if known.
    Resume {
        ended_by: Option<tonic::Status>,
        opened: bool,
    },
}

impl Run {
    /// The register step: a new instance, or a wait before the next try.
    async fn register(&mut self) -> Result<Registered, tonic::Status> {
        let attempt = tokio::select! {
            r = self.client.register(self.request.clone()) => r,
            _ = &mut self.stopped => return Ok(Registered::Stopped),
        };
        match attempt {
            Ok(r) => {
                self.every = r.heartbeat_interval;
                self.backoff.reset();
                self.state.send_modify(|s| {
                    s.status = InstanceStatus::try_from(r.instance.status).ok();
                    s.instance = Some(r.instance);
                    s.registrations += 1;
                    s.drain_requested = false;
                });
                Ok(Registered::Yes)
            }
            Err(e) if retryable(&e) => {
                tracing::warn!(error = %e, "register failed; retrying");
                if move_on(&e) {
                    self.client = self.client.failover().await;
                }
                tokio::select! {
                    _ = tokio::time::sleep(self.backoff.next_wait()) => Ok(Registered::Retry),
                    _ = &mut self.stopped => Ok(Registered::Stopped),
                }
            }
            Err(e) => Err(e),
        }
    }

    fn beat(&mut self, id: &str, status: i32) -> proto::HeartbeatRequest {
        self.seq += 1;
        proto::HeartbeatRequest {
            instance_id: id.to_string(),
            sequence: self.seq,
            status,
        }
    }

    /// The hold-the-stream step: one stream for `id`, until it ends (a network error, a server
    /// restart, REREGISTER) or the keeper is stopped.
    async fn hold(&mut self, id: &str) -> Held {
        let (tx, rx) = mpsc::channel(4);
        let _ = tx.send(self.beat(id, 0)).await;
        let mut registry = self.client.registry.clone();
        let opened = tokio::select! {
            r = registry.heartbeat(tokio_stream::wrappers::ReceiverStream::new(rx)) => r,
            _ = &mut self.stopped => return Held::Stopped,
        };
        let mut replies = match opened {
            Ok(r) => r.into_inner(),
            Err(e) => {
                return Held::Resume {
                    ended_by: Some(e),
                    opened: false,
                };
            }
        };
        let mut next_beat = Box::pin(tokio::time::sleep(jittered(self.every)));
        loop {
            tokio::select! {
                _ = &mut self.stopped => return Held::Stopped,
                Some(status) = self.statuses.recv() => {
                    if tx.send(self.beat(id, status as i32)).await.is_err() {
                        return Held::Resume { ended_by: final_status(&mut replies).await, opened: true };
                    }
                    self.state.send_modify(|s| s.status = Some(status));
                }
                _ = &mut next_beat => {
                    if tx.send(self.beat(id, 0)).await.is_err() {
                        return Held::Resume { ended_by: final_status(&mut replies).await, opened: true };
                    }
                    next_beat.set(tokio::time::sleep(jittered(self.every)));
                }
                reply = replies.message() => match reply {
                    Ok(Some(ack)) => {
                        if self.acknowledged(id, &ack) {
                            return Held::Reregister;
                        }
                    }
                    // Not ours to beat for (registered under another token, e.g. before
                    // tokens were turned on): a registration of our own replaces it.
                    Err(e) if e.code() == tonic::Code::PermissionDenied => {
                        tracing::warn!(instance_id = %id, error = %e,
                            "not allowed to keep this instance; registering anew");
                        return Held::Reregister;
                    }
                    Ok(None) => return Held::Resume { ended_by: None, opened: true },
                    Err(e) => return Held::Resume { ended_by: Some(e), opened: true },
                },
            }
        }
    }

    /// Follows one reply: the interval, DRAIN; true when it asks for a new registration.
    fn acknowledged(&mut self, id: &str, ack: &proto::HeartbeatResponse) -> bool {
        self.backoff.reset();
        if let Some(d) = ack.heartbeat_interval {
            self.every = duration(d);
        }
        let directive = Directive::try_from(ack.directive).unwrap_or(Directive::None);
        self.state.send_modify(|s| {
            s.connected = true;
            if ack.sequence > 0 {
                s.acks += 1;
            }
            if directive == Directive::Drain {
                s.drain_requested = true;
                s.status = Some(InstanceStatus::Draining);
            }
        });
        if directive == Directive::Reregister {
            tracing::warn!(instance_id = %id, reason = %ack.reason,
                "the registry asked for a new registration");
            return true;
        }
        false
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

/// How long a stopping keeper tries to deregister before it leaves the instance to its lease.
const DEREGISTER_BUDGET: Duration = Duration::from_secs(5);

/// Best effort within [`DEREGISTER_BUDGET`]: a refusal that is worth retrying (the replica's
/// store timed out, the replica is going away) is retried after a short pause — on the next
/// address when the replica cannot serve — and an unreachable registry leaves the instance to
/// its lease.
async fn deregister(client: &Client, id: &str) -> Result<(), tonic::Status> {
    let req = proto::DeregisterRequest {
        instance_id: id.to_string(),
        reason: "agent shutting down".into(),
    };
    let deadline = tokio::time::Instant::now() + DEREGISTER_BUDGET;
    let mut client = client.clone();
    let mut pause = Backoff::new(Duration::from_millis(50), Duration::from_millis(500));
    loop {
        let mut registry = client.registry.clone();
        let e = match tokio::time::timeout_at(deadline, registry.deregister(req.clone())).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) if e.code() == tonic::Code::FailedPrecondition => return Ok(()),
            Ok(Err(e)) if retryable(&e) => e,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(tonic::Status::deadline_exceeded("deregister timed out")),
        };
        tracing::debug!(error = %e, "deregister refused for now; retrying");
        if move_on(&e) {
            client = client.failover().await;
        }
        if tokio::time::timeout_at(deadline, tokio::time::sleep(pause.next_wait()))
            .await
            .is_err()
        {
            return Err(e);
        }
    }
}
