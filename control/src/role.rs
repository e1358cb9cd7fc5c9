//! A node's role in the cluster: manager (a Raft voter that also runs
//! tasks) or worker. The role travels in the state and in the node's
//! certificate, where it is the organizational unit, as in Swarm.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A node's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Holds the Raft-replicated state and can accept changes.
    Manager,
    /// Runs tasks only.
    Worker,
}

impl Role {
    /// Both roles, managers first.
    pub const ALL: [Role; 2] = [Role::Manager, Role::Worker];

    /// The certificate organizational unit for this role (Swarm's names,
    /// so tools that read Swarm certificates read ours).
    pub fn org_unit(self) -> &'static str {
        match self {
            Role::Manager => "swarm-manager",
            Role::Worker => "swarm-worker",
        }
    }

    /// The role whose organizational unit is `ou`.
    pub fn from_org_unit(ou: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.org_unit() == ou)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Manager => "manager",
            Role::Worker => "worker",
        })
    }
}
