//! The registry's error: why a use case failed, in terms a front end maps to its own codes (gRPC
//! in each front end's `status` module).

use crate::domain::{RuleError, ValidationError};
use crate::storage::StoreError;

/// Why a use case failed; mapped to a gRPC status in exactly one place (`api::status`).
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("{0} not found")]
    NotFound(String),
    #[error(transparent)]
    FailedPrecondition(RuleError),
    /// The store cannot be reached; safe to retry.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A watch cannot start (or go on) from the revision asked: re-list.
    #[error("{0}")]
    OutOfRange(String),
    /// A limit was hit (a watcher that fell too far behind).
    #[error("{0}")]
    ResourceExhausted(String),
    /// Details for the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<RuleError> for RegistryError {
    /// A rule refused the change: FAILED_PRECONDITION, but a card named by a digest this agent
    /// has no version of is NOT_FOUND (naming `card_digest`).
    fn from(rule: RuleError) -> Self {
        match rule {
            RuleError::UnknownCard {
                namespace,
                logical_id,
                digest,
            } => Self::NotFound(format!(
                "card_digest {digest} (a card of {namespace}/{logical_id})"
            )),
            other => Self::FailedPrecondition(other),
        }
    }
}

impl From<StoreError> for RegistryError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) | StoreError::Saturated(m) | StoreError::Conflict(m) => {
                Self::Unavailable(m)
            }
            StoreError::PoolTimedOut => Self::Unavailable(StoreError::PoolTimedOut.to_string()),
            StoreError::NotFound(m) => Self::NotFound(m),
            StoreError::Rule(r) => r.into(),
            StoreError::Internal(m) => Self::Internal(m),
            StoreError::Compacted { horizon } => Self::OutOfRange(format!(
                "revision compacted: changes at or below {horizon} are no longer kept; re-list"
            )),
        }
    }
}
