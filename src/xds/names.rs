//! What an xDS resource name means: `<logical_id>.<namespace>` is every LIVE instance of that
//! logical id, `active.<logical_id>.<namespace>` only its ACTIVE one.

use crate::domain::normalize_namespace;
use crate::registry::View;

/// The prefix that selects the ACTIVE instance only (singleton roles).
pub const ACTIVE_PREFIX: &str = "active.";

/// A resource name read: which instances it stands for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    pub namespace: String,
    pub logical_id: String,
    /// `Active` for the `active.` form, else `Live`.
    pub active_only: bool,
}

impl Target {
    /// Reads a resource name (the path of an `xds:///…` target). The namespace is a DNS label,
    /// so it is everything after the last dot; `None` when the name cannot stand for instances
    /// (no dot, an empty logical id, a namespace that is not a DNS label) — such a resource
    /// does not exist.
    pub fn parse(name: &str) -> Option<Target> {
        let (rest, active_only) = match name.strip_prefix(ACTIVE_PREFIX) {
            Some(rest) => (rest, true),
            None => (name, false),
        };
        let (logical_id, namespace) = rest.rsplit_once('.')?;
        if logical_id.is_empty() || namespace.is_empty() {
            return None;
        }
        let namespace = normalize_namespace("namespace", namespace).ok()?;
        Some(Target {
            namespace,
            logical_id: logical_id.to_string(),
            active_only,
        })
    }

    pub fn view(&self) -> View {
        match self.active_only {
            true => View::Active,
            false => View::Live,
        }
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
        assert_eq!(Target::parse("planner.prod").unwrap().view(), View::Live);
        assert_eq!(
            Target::parse("active.planner.prod").unwrap().view(),
            View::Active
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
        ] {
            assert_eq!(Target::parse(name), None, "{name:?}");
        }
    }
}
