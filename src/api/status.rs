//! The one place where registry errors become gRPC statuses; internal details go to the log only.

use tonic::Status;

use crate::domain::RuleError;
use crate::registry::RegistryError;
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
