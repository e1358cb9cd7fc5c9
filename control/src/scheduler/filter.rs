//! The filters a node must pass to receive a new task, in order: status
//! Ready, availability Active, the service's constraints, and the
//! service's limit of tasks per node.
//!
//! A node enters with the constraints (and, for the limit, its count of
//! the service's tasks); it leaves accepted, or with the [`Rejection`] of
//! the first filter it fails.

use std::fmt;

use super::constraint::Constraint;
use crate::state::{Availability, Node, NodeStatus};

/// Why a node cannot take a new task of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Failure detection declared it dead, or it left.
    Down,
    /// Not seen alive yet.
    UnknownStatus,
    /// Drained by an operator.
    Drained,
    /// Paused by an operator: it keeps its tasks but gets no new ones.
    Paused,
    /// It fails this constraint (the first of the list it fails).
    Constraint(Constraint),
    /// It already runs this many tasks of the service, the most allowed.
    MaxReplicas(u64),
}

impl Rejection {
    /// True when the node's own state rejects it (status or
    /// availability), false when the service's rules do.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Rejection::Down | Rejection::UnknownStatus | Rejection::Drained | Rejection::Paused
        )
    }

    /// Filter order, then list order among constraints: the order in
    /// which explanations list their reasons.
    pub(super) fn rank(&self, constraints: &[Constraint]) -> (u8, usize) {
        match self {
            Rejection::Down => (0, 0),
            Rejection::UnknownStatus => (1, 0),
            Rejection::Drained => (2, 0),
            Rejection::Paused => (3, 0),
            Rejection::Constraint(c) => (4, constraints.iter().position(|x| x == c).unwrap_or(0)),
            Rejection::MaxReplicas(_) => (5, 0),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Down => f.write_str("down"),
            Rejection::UnknownStatus => f.write_str("unknown status"),
            Rejection::Drained => f.write_str("drained"),
            Rejection::Paused => f.write_str("paused"),
            Rejection::Constraint(c) => write!(f, "constraint {c}"),
            Rejection::MaxReplicas(max) => write!(f, "max replicas per node ({max})"),
        }
    }
}

/// The first filter `node` fails that does not depend on how many tasks
/// it runs: status, availability, constraints.
pub(super) fn node_rejection(node: &Node, constraints: &[Constraint]) -> Option<Rejection> {
    match node.status {
        NodeStatus::Ready => {}
        NodeStatus::Down => return Some(Rejection::Down),
        NodeStatus::Unknown => return Some(Rejection::UnknownStatus),
    }
    match node.availability {
        Availability::Active => {}
        Availability::Drain => return Some(Rejection::Drained),
        Availability::Pause => return Some(Rejection::Paused),
    }
    constraints
        .iter()
        .find(|c| !c.matches(node))
        .map(|c| Rejection::Constraint(c.clone()))
}

/// The max-replicas filter: a node already running `running` tasks of the
/// service is full when a limit is set and reached.
pub(super) fn replicas_rejection(limit: Option<u64>, running: u64) -> Option<Rejection> {
    limit
        .filter(|&max| running >= max)
        .map(Rejection::MaxReplicas)
}
