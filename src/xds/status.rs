//! The statuses the xDS front end ends its streams with (access control's refusals are
//! `security::status`'s).

use tonic::Status;

/// Retryable: this replica cannot serve the stream now (another may).
pub fn unavailable(why: &str) -> Status {
    Status::unavailable(why)
}

/// A part of the protocol this server does not serve.
pub fn unimplemented(what: &str) -> Status {
    Status::unimplemented(what)
}

/// A per-stream bound was passed.
pub fn exhausted(why: String) -> Status {
    Status::resource_exhausted(why)
}
