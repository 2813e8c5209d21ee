//! The one place where a `tonic::Status` is built: registry, session and access errors, and the
//! few statuses a stream ends with. Internal details go to the log only.

use tonic::Status;

use crate::domain::RuleError;
use crate::registry::{RegistryError, SessionError, StreamStop};
use crate::security::{AccessError, Denied};

impl From<RegistryError> for Status {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Invalid(v) => Status::invalid_argument(v.to_string()),
            RegistryError::NotFound(what) => Status::not_found(format!("{what} not found")),
            RegistryError::FailedPrecondition(rule @ RuleError::NotOwner { .. }) => {
                Status::permission_denied(rule.to_string())
            }
            RegistryError::FailedPrecondition(rule) => {
                Status::failed_precondition(rule.to_string())
            }
            RegistryError::OutOfRange(why) => Status::out_of_range(why),
            RegistryError::ResourceExhausted(why) => Status::resource_exhausted(why),
            RegistryError::Unavailable(detail) => {
                tracing::warn!(%detail, "store unavailable");
                Status::unavailable("the registry's store is unreachable; safe to retry")
            }
            RegistryError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                Status::internal("internal error; see the server log")
            }
        }
    }
}

impl From<Denied> for Status {
    fn from(d: Denied) -> Self {
        Status::permission_denied(d.to_string())
    }
}

impl From<AccessError> for Status {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::Unauthenticated(why) => Status::unauthenticated(why),
            AccessError::Limited(why) => Status::resource_exhausted(why),
        }
    }
}

/// Retryable: this replica cannot serve the call now (another may).
pub fn unavailable(why: &str) -> Status {
    Status::unavailable(why)
}

/// A request field that failed to decode before it reached the domain.
pub fn invalid(field: &str, message: &str) -> Status {
    Status::invalid_argument(format!("{field}: {message}"))
}

/// How a heartbeat stream that cannot go on ends: `Ok(reason)` when the agent must register
/// again (a REREGISTER directive, not an error), else the status.
pub fn session(e: SessionError) -> Result<String, Status> {
    match e {
        SessionError::Reregister(reason) => Ok(reason),
        SessionError::Unavailable(why) => Err(unavailable(&why)),
        SessionError::Invalid(v) => Err(RegistryError::from(v).into()),
        SessionError::Registry(r) => Err(r.into()),
    }
}

/// Every heartbeat stream of this replica must end now.
pub fn streams_stopped(stop: StreamStop) -> Status {
    unavailable(match stop {
        StreamStop::ShuttingDown => "server shutting down; reconnect to resume this instance",
        StreamStop::CannotPersist => {
            "this replica cannot persist heartbeats to its store now; reconnect to resume this \
             instance (another replica can)"
        }
    })
}

/// The token a stream was opened with no longer holds.
pub fn revoked() -> Status {
    Status::unauthenticated("the token this stream was opened with was revoked or changed")
}

/// A newer Heartbeat stream for the same instance took over.
pub fn superseded() -> Status {
    Status::aborted("superseded by a newer Heartbeat stream for this instance")
}

/// The access layer did not run: a wiring bug, refused rather than run open.
pub fn no_caller() -> Status {
    Status::internal("no caller: the access layer is not installed")
}

/// A part of a protocol this server does not serve.
pub fn unimplemented(what: &str) -> Status {
    Status::unimplemented(what)
}

/// A per-stream bound was passed.
pub fn exhausted(why: String) -> Status {
    Status::resource_exhausted(why)
}
