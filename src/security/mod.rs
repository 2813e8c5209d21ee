//! Transport security and access control: TLS (reloadable), bearer tokens with roles and
//! namespaces, and the limits that turn floods into RESOURCE_EXHAUSTED instead of outages.

pub mod conn;
pub mod layer;
pub mod limits;
pub mod policy;
pub mod reload;
pub mod status;
pub mod tls;
pub mod tokens;

pub use layer::{Access, AccessLayer};
pub use limits::AccessLimits;
pub use policy::{Action, Caller, Denied, Role, Scope};
pub use tokens::TokenTable;

/// Why the access layer refused a call before any handler ran; mapped to a status in
/// `security::status`, for every front end.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// No token, a malformed one, or one the tokens file does not list.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// A limit of SPEC §9.
    #[error("{0}")]
    Limited(String),
}
