//! Who may do what: the three roles, the namespaces a token is granted, and the one decision
//! every RPC handler asks before it touches the registry.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

/// What a token may call (SPEC §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Register and publish cards, and heartbeat, drain and deregister the instances it
    /// registered itself.
    Agent,
    /// Discover, GetInstance, Watch, the namespace listings, and the catalog's reads.
    Reader,
    /// Everything, in its namespaces.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Reader => "reader",
            Role::Admin => "admin",
        }
    }

    /// The role half of the decision table.
    pub fn may(self, action: Action) -> bool {
        use Action::*;
        match self {
            Role::Admin => true,
            Role::Agent => matches!(
                action,
                Register | Heartbeat | Deregister | Drain | PublishCard
            ),
            Role::Reader => matches!(
                action,
                Discover
                    | GetInstance
                    | Watch
                    | ListNamespaces
                    | GetNamespace
                    | SearchAgents
                    | GetAgent
                    | GetCard
                    | ListCardVersions
            ),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One RPC of the contract, as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Register,
    Heartbeat,
    Deregister,
    Drain,
    Evict,
    AdvanceEpoch,
    Discover,
    GetInstance,
    Watch,
    ListNamespaces,
    GetNamespace,
    PublishCard,
    SearchAgents,
    GetAgent,
    GetCard,
    ListCardVersions,
}

impl Action {
    pub const ALL: [Action; 16] = [
        Action::Register,
        Action::Heartbeat,
        Action::Deregister,
        Action::Drain,
        Action::Evict,
        Action::AdvanceEpoch,
        Action::Discover,
        Action::GetInstance,
        Action::Watch,
        Action::ListNamespaces,
        Action::GetNamespace,
        Action::PublishCard,
        Action::SearchAgents,
        Action::GetAgent,
        Action::GetCard,
        Action::ListCardVersions,
    ];

    /// Actions on an existing instance that an `agent` token may take only on its own.
    pub fn needs_ownership(self) -> bool {
        matches!(self, Action::Heartbeat | Action::Deregister | Action::Drain)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The namespaces a token may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Namespaces {
    All,
    Only(BTreeSet<String>),
}

impl Namespaces {
    pub fn contains(&self, namespace: &str) -> bool {
        match self {
            Namespaces::All => true,
            Namespaces::Only(set) => set.contains(namespace),
        }
    }
}

/// One entry of the tokens file, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub name: String,
    pub role: Role,
    pub namespaces: Namespaces,
}

/// Who is calling, as the access layer established it.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The server runs without a tokens file: everyone may do everything.
    Open,
    Token(Arc<Grant>),
}

/// What a request touches.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// A listing across namespaces; the handler shows only the granted ones.
    Listing,
    Namespace(&'a str),
    /// An existing instance: its namespace and the token name that registered it.
    Instance {
        namespace: &'a str,
        owner: &'a str,
    },
}

/// Why a caller was refused (PERMISSION_DENIED).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("token {token:?} has role {role}, which may not call {action}")]
    Role {
        token: String,
        role: Role,
        action: Action,
    },
    #[error("token {token:?} is not granted namespace {namespace:?}")]
    Namespace { token: String, namespace: String },
    #[error(
        "token {token:?} may {action} only instances it registered; this one was registered by another caller"
    )]
    NotOwner { token: String, action: Action },
}

impl Caller {
    /// The name recorded as an instance's owner when this caller registers it.
    pub fn name(&self) -> &str {
        match self {
            Caller::Open => "",
            Caller::Token(g) => &g.name,
        }
    }

    /// The whole decision: role, then namespace, then (for an agent) ownership.
    pub fn authorize(&self, action: Action, scope: Scope<'_>) -> Result<(), Denied> {
        let Caller::Token(grant) = self else {
            return Ok(());
        };
        if !grant.role.may(action) {
            return Err(Denied::Role {
                token: grant.name.clone(),
                role: grant.role,
                action,
            });
        }
        let (namespace, owner) = match scope {
            Scope::Listing => return Ok(()),
            Scope::Namespace(ns) => (ns, None),
            Scope::Instance { namespace, owner } => (namespace, Some(owner)),
        };
        if !grant.namespaces.contains(namespace) {
            return Err(Denied::Namespace {
                token: grant.name.clone(),
                namespace: namespace.to_string(),
            });
        }
        if grant.role == Role::Agent
            && action.needs_ownership()
            && owner.is_some_and(|o| o != grant.name)
        {
            return Err(Denied::NotOwner {
                token: grant.name.clone(),
                action,
            });
        }
        Ok(())
    }

    /// Whether ownership never stands in this caller's way (an open server, an admin).
    pub fn may_act_for_others(&self) -> bool {
        match self {
            Caller::Open => true,
            Caller::Token(g) => g.role == Role::Admin,
        }
    }

    /// Whether a listing shows `namespace` to this caller.
    pub fn sees(&self, namespace: &str) -> bool {
        match self {
            Caller::Open => true,
            Caller::Token(g) => g.namespaces.contains(namespace),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(role: Role, namespaces: &[&str]) -> Caller {
        let namespaces = match namespaces {
            ["*"] => Namespaces::All,
            list => Namespaces::Only(list.iter().map(|s| s.to_string()).collect()),
        };
        Caller::Token(Arc::new(Grant {
            name: "t".into(),
            role,
            namespaces,
        }))
    }

    /// The role column of the decision table, spelled out once more by hand.
    #[test]
    fn every_role_against_every_action() {
        use Action::*;
        let expected = |role: Role, a: Action| match role {
            Role::Admin => true,
            Role::Agent => [Register, Heartbeat, Deregister, Drain, PublishCard].contains(&a),
            Role::Reader => [
                Discover,
                GetInstance,
                Watch,
                ListNamespaces,
                GetNamespace,
                SearchAgents,
                GetAgent,
                GetCard,
                ListCardVersions,
            ]
            .contains(&a),
        };
        for role in [Role::Agent, Role::Reader, Role::Admin] {
            for action in Action::ALL {
                let caller = token(role, &["a"]);
                let got = caller.authorize(action, Scope::Namespace("a")).is_ok();
                assert_eq!(got, expected(role, action), "{role} {action}");
                // Outside its namespaces nothing is allowed, whatever the role.
                let other = caller.authorize(action, Scope::Namespace("b"));
                assert!(other.is_err(), "{role} {action} in b");
                // With `*` the namespace never matters.
                let all = token(role, &["*"]).authorize(action, Scope::Namespace("zz"));
                assert_eq!(all.is_ok(), expected(role, action), "{role} {action} *");
            }
        }
    }

    #[test]
    fn agents_act_only_on_their_own_instances_and_admins_on_any() {
        let agent = token(Role::Agent, &["a"]);
        let admin = token(Role::Admin, &["a"]);
        for action in [Action::Heartbeat, Action::Deregister, Action::Drain] {
            let own = Scope::Instance {
                namespace: "a",
                owner: "t",
            };
            let theirs = Scope::Instance {
                namespace: "a",
                owner: "other",
            };
            assert!(agent.authorize(action, own).is_ok());
            assert_eq!(
                agent.authorize(action, theirs),
                Err(Denied::NotOwner {
                    token: "t".into(),
                    action
                })
            );
            assert!(admin.authorize(action, theirs).is_ok());
        }
    }

    #[test]
    fn an_open_server_allows_everything() {
        for action in Action::ALL {
            let scope = Scope::Instance {
                namespace: "x",
                owner: "someone",
            };
            assert!(Caller::Open.authorize(action, scope).is_ok());
        }
        assert!(Caller::Open.sees("anything"));
    }
}
