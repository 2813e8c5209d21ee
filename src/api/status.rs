//! The one place where registry errors become gRPC statuses; internal details go to the log only.

use tonic::Status;

use crate::registry::RegistryError;

impl From<RegistryError> for Status {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Invalid(v) => Status::invalid_argument(v.to_string()),
            RegistryError::NotFound(what) => Status::not_found(format!("{what} not found")),
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

/// A request field that failed to decode before it reached the domain.
pub fn invalid(field: &str, message: &str) -> Status {
    Status::invalid_argument(format!("{field}: {message}"))
}
