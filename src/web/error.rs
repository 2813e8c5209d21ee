//! How an HTTP API call fails: the gRPC status the contract's operations give (built in
//! `api::status`, the one mapping from the layers' errors), sent as JSON
//! `{"code": "INVALID_ARGUMENT", "message": "…"}` with the HTTP status of its code.

use axum::response::{IntoResponse, Response};

use http::StatusCode;
use tonic::{Code, Status};

/// A failed call; every handler's error.
pub struct ApiError(pub Status);

impl From<Status> for ApiError {
    fn from(s: Status) -> Self {
        ApiError(s)
    }
}

/// A request field or parameter that could not be read, named.
pub fn invalid(field: &str, message: &str) -> ApiError {
    ApiError(crate::api::status::invalid(field, message))
}

/// The HTTP status for a gRPC code (the mapping of google.rpc.Code, with FAILED_PRECONDITION as
/// 412 and ABORTED as 409 so a client can tell a stale epoch from a conflict).
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Cancelled => StatusCode::from_u16(499).expect("valid status"),
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The JSON body of an error: the code's name as gRPC spells it, and the message.
pub fn body(status: &Status) -> serde_json::Value {
    serde_json::json!({
        "code": code_name(status.code()),
        "message": status.message(),
    })
}

/// `INVALID_ARGUMENT`, `NOT_FOUND`, …
pub fn code_name(code: Code) -> String {
    // `Code`'s Debug is its CamelCase name; the wire spells it in upper snake case.
    let camel = format!("{code:?}");
    let mut out = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = super::json(http_status(self.0.code()), &body(&self.0));
        if self.0.code() == Code::Unauthenticated {
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_named_as_grpc_names_them() {
        assert_eq!(code_name(Code::InvalidArgument), "INVALID_ARGUMENT");
        assert_eq!(code_name(Code::NotFound), "NOT_FOUND");
        assert_eq!(code_name(Code::Ok), "OK");
        assert_eq!(code_name(Code::ResourceExhausted), "RESOURCE_EXHAUSTED");
        assert_eq!(http_status(Code::FailedPrecondition), 412);
    }
}
