//! What an xDS resource name means: `<logical_id>.<namespace>` is every LIVE instance of that
//! logical id, `active.<logical_id>.<namespace>` only its ACTIVE one.

use agent_registry_core::domain::{normalize_namespace, validate_logical_id};

/// The prefix that selects the ACTIVE instance only (singleton roles).
pub const ACTIVE_PREFIX: &str = "active.";

/// A resource name read: which instances it stands for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    pub namespace: String,
    pub logical_id: String,
    /// The `active.` form: the ACTIVE instance only, not every LIVE one.
    pub active_only: bool,
}

impl Target {
    /// Reads a resource name (the path of an `xds:///…` target). The namespace is a DNS label,
    /// so it is everything after the last dot; `None` when the name cannot stand for instances
    /// (no dot, an empty logical id, a namespace that is not a DNS label) — such a resource
    /// does not exist.
    pub fn parse(name: &str) -> Option<Target> {
        // `xds:///planner.prod:50051` names a port too; it plays no part here.
        let name = match name.rsplit_once(':') {
            Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
                host
            }
            _ => name,
        };
        let (rest, active_only) = match name.strip_prefix(ACTIVE_PREFIX) {
            Some(rest) => (rest, true),
            None => (name, false),
        };
        let (logical_id, namespace) = rest.rsplit_once('.')?;
        if logical_id.is_empty() || namespace.is_empty() {
            return None;
        }
        // What Register would accept as a logical id, or no instance can have it.
        validate_logical_id(logical_id).ok()?;
        let namespace = normalize_namespace("namespace", namespace).ok()?;
        Some(Target {
            namespace,
            logical_id: logical_id.to_string(),
            active_only,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(ns: &str, id: &str, active_only: bool) -> Option<Target> {
        Some(Target {
            namespace: ns.into(),
            logical_id: id.into(),
            active_only,
        })
    }

    #[test]
    fn the_namespace_is_after_the_last_dot_and_active_is_a_prefix() {
        assert_eq!(
            Target::parse("planner.prod"),
            target("prod", "planner", false)
        );
        assert_eq!(
            Target::parse("eu.planner.prod"),
            target("prod", "eu.planner", false)
        );
        assert_eq!(
            Target::parse("active.planner.prod"),
            target("prod", "planner", true)
        );
        assert_eq!(
            Target::parse("planner.prod:50051"),
            target("prod", "planner", false)
        );
    }

    #[test]
    fn names_that_cannot_stand_for_instances_are_none() {
        for name in [
            "",
            "planner",
            ".prod",
            "planner.",
            "active.prod",
            "planner.Prod",
            "planner.not_a_label",
            "planner.-x",
            "planner.prod:",
            "planner.prod:http",
            &format!("{}.prod", "x".repeat(254)),
        ] {
            assert_eq!(Target::parse(name), None, "{name:?}");
        }
    }
}
