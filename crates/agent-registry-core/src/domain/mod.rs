//! Plain registry types and rules (no I/O): instances, namespaces, statuses, validation,
//! transitions, and agent cards.

pub mod card;
mod clock;
mod rules;
mod types;
mod validate;

pub use clock::StoreClock;
pub use rules::{Admission, RuleError, Transition, admit_registration, apply_transition};
pub use types::{
    ChangeSet, DEFAULT_NAMESPACE, DeathReason, Instance, InstanceStatus, Namespace,
    NamespaceSummary, NewInstance, StoredCard, now,
};
pub use validate::{
    InstanceFilter, LeaseBounds, MAX_CAPABILITIES, MAX_LABELS, RegisterInput, ValidationError,
    normalize_namespace, parse_uuid, validate_filter, validate_logical_id, validate_page_size,
    validate_register,
};
