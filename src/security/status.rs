//! How access control's refusals reach a gRPC client: the only statuses `security` builds, for
//! every front end that admits calls through it.

use tonic::Status;

use super::{AccessError, Denied};

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

/// The token a stream was opened with no longer holds.
pub fn revoked() -> Status {
    Status::unauthenticated("the token this stream was opened with was revoked or changed")
}

/// The access layer did not run: a wiring bug, refused rather than run open.
pub fn no_caller() -> Status {
    Status::internal("no caller: the access layer is not installed")
}
