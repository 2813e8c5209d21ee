//! The state machine: which registrations are admitted and which status transitions are legal.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::types::{DeathReason, Instance, InstanceStatus, Namespace, NewInstance};

/// A rule refused the change; always a FAILED_PRECONDITION for the caller.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleError {
    #[error(
        "expected_epoch {expected} is not the current epoch {current} of namespace {namespace}"
    )]
    StaleEpoch {
        namespace: String,
        expected: Uuid,
        current: Uuid,
    },
    #[error("instance_id {id} is DEAD ({reason}); register a new instance")]
    InstanceDead { id: Uuid, reason: &'static str },
    #[error("instance_id {id} belongs to a superseded epoch; register a new instance")]
    EpochSuperseded { id: Uuid },
    #[error("instance_id {id} is already registered under another namespace or logical_id")]
    IdInUse { id: Uuid },
    #[error("instance_id {id} was registered by another caller")]
    NotOwner { id: Uuid },
    /// A registration named a card (by digest) this agent has no stored version of.
    #[error("card_digest {digest} is not a card stored for {namespace}/{logical_id}")]
    UnknownCard {
        namespace: String,
        logical_id: String,
        digest: String,
    },
}

/// What Register does with a validated request.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Insert a new row.
    Create,
    /// The id is already registered and alive in the current epoch: return it, lease renewed.
    Retry(Box<Instance>),
}

/// Decides a registration against what is stored (SPEC §4.1).
pub fn admit_registration(
    existing: Option<&Instance>,
    namespace: &Namespace,
    new: &NewInstance,
) -> Result<Admission, RuleError> {
    if let Some(expected) = new.expected_epoch
        && expected != namespace.current_epoch
    {
        return Err(RuleError::StaleEpoch {
            namespace: namespace.name.clone(),
            expected,
            current: namespace.current_epoch,
        });
    }
    let Some(existing) = existing else {
        return Ok(Admission::Create);
    };
    if existing.namespace != new.template.namespace
        || existing.logical_id != new.template.logical_id
    {
        return Err(RuleError::IdInUse {
            id: existing.instance_id,
        });
    }
    // A retry is a caller re-asserting its own registration; another token may not renew (or
    // read back) it by guessing its id.
    if !new.any_owner && existing.registered_by != new.template.registered_by {
        return Err(RuleError::NotOwner {
            id: existing.instance_id,
        });
    }
    if let Some(reason) = existing.death_reason {
        return Err(RuleError::InstanceDead {
            id: existing.instance_id,
            reason: reason.as_str(),
        });
    }
    if existing.epoch != namespace.current_epoch {
        return Err(RuleError::EpochSuperseded {
            id: existing.instance_id,
        });
    }
    Ok(Admission::Retry(Box::new(existing.clone())))
}

/// A requested change of one instance's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The agent reports itself ready (`STARTING`/`DRAINING` → `ALIVE`).
    Ready,
    /// The agent or an operator drains it.
    Drain,
    /// The instance dies for this reason.
    Kill(DeathReason),
}

impl Transition {
    fn target(self) -> InstanceStatus {
        match self {
            Self::Ready => InstanceStatus::Alive,
            Self::Drain => InstanceStatus::Draining,
            Self::Kill(_) => InstanceStatus::Dead,
        }
    }
}

/// Applies a transition. `Ok(None)` means the instance is already there (an idempotent repeat:
/// no new revision). Killing a dead instance again for the same reason is such a repeat.
pub fn apply_transition(
    current: &Instance,
    transition: Transition,
    now: DateTime<Utc>,
) -> Result<Option<Instance>, RuleError> {
    if current.status == InstanceStatus::Dead {
        return match (transition, current.death_reason) {
            (Transition::Kill(want), Some(have)) if want == have => Ok(None),
            _ => Err(RuleError::InstanceDead {
                id: current.instance_id,
                reason: current.death_reason.map_or("unknown", DeathReason::as_str),
            }),
        };
    }
    let target = transition.target();
    if current.status == target {
        return Ok(None);
    }
    let mut next = current.clone();
    next.status = target;
    if let Transition::Kill(reason) = transition {
        next.stopped_at = Some(now);
        next.death_reason = Some(reason);
    }
    Ok(Some(next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::types::now;

    fn instance(status: InstanceStatus) -> Instance {
        Instance {
            logical_id: "planner".into(),
            epoch: Uuid::now_v7(),
            status,
            ..Instance::sample("planner")
        }
    }

    #[test]
    fn every_legal_transition_reaches_its_target() {
        use InstanceStatus::*;
        for (from, t, to) in [
            (Starting, Transition::Ready, Alive),
            (Starting, Transition::Drain, Draining),
            (Alive, Transition::Drain, Draining),
            (Draining, Transition::Ready, Alive),
            (Starting, Transition::Kill(DeathReason::Evicted), Dead),
            (Draining, Transition::Kill(DeathReason::Deregistered), Dead),
        ] {
            let next = apply_transition(&instance(from), t, now())
                .unwrap()
                .unwrap();
            assert_eq!(next.status, to, "{from:?} {t:?}");
            assert_eq!(next.stopped_at.is_some(), to == Dead);
        }
    }

    #[test]
    fn dead_is_final_except_for_an_identical_repeat() {
        let mut dead = instance(InstanceStatus::Dead);
        dead.death_reason = Some(DeathReason::Deregistered);
        let again = Transition::Kill(DeathReason::Deregistered);
        assert_eq!(apply_transition(&dead, again, now()), Ok(None));
        for t in [
            Transition::Ready,
            Transition::Drain,
            Transition::Kill(DeathReason::Evicted),
        ] {
            assert!(matches!(
                apply_transition(&dead, t, now()),
                Err(RuleError::InstanceDead { .. })
            ));
        }
    }
}
