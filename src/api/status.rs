//! Where the gRPC and HTTP front ends build their `tonic::Status`es: the registry's and the
//! session's errors, the few statuses a stream ends with, and the HTTP API's own refusals (the
//! HTTP front end sends each as JSON with the HTTP status of its code). Access control's own
//! refusals are `security::status`'s; the xDS front end's are `xds::status`'s. Internal details
//! go to the log only.

use tonic::Status;

use agent_registry_core::domain::RuleError;
use agent_registry_core::registry::{RegistryError, SessionError, StreamStop};

/// A registry error as the status its front ends answer with. (The orphan rule keeps this a
/// function: neither type is this crate's.)
pub fn registry(e: RegistryError) -> Status {
    {
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
        SessionError::Invalid(v) => Err(registry(RegistryError::from(v))),
        SessionError::Registry(r) => Err(registry(r)),
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

/// A newer Heartbeat stream for the same instance took over.
pub fn superseded() -> Status {
    Status::aborted("superseded by a newer Heartbeat stream for this instance")
}

/// No instance of an agent is live: its card is not served (the client retries later).
pub fn no_live_instance(namespace: &str, logical_id: &str) -> Status {
    Status::unavailable(format!(
        "no live instance serves {namespace}/{logical_id} now; its card is served only while one does"
    ))
}

/// An HTTP path, or a custom method on it, that the API does not have.
pub fn no_route(what: impl Into<String>) -> Status {
    Status::not_found(what)
}

/// A write a browser marked as sent from another site's page.
pub fn cross_site() -> Status {
    Status::permission_denied("sec-fetch-site: writes are not taken from another site's page")
}
