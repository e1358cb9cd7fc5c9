//! Evictions: the running tasks of a service that must move off their
//! node.
//!
//! The state, the service and its constraints enter; task ids leave, in id
//! order, for the orchestrator to shut down and replace.

use super::constraint::Constraint;
use crate::ids::TaskId;
use crate::state::{Availability, ClusterState, Node, NodeStatus, Service};

/// The live tasks of `service` on nodes that are down, drained, gone from
/// the state, or no longer satisfy `constraints`. Tasks on paused nodes,
/// and on nodes whose status is not known yet, stay.
pub fn evictions(
    state: &ClusterState,
    service: &Service,
    constraints: &[Constraint],
) -> Vec<TaskId> {
    state
        .tasks()
        .values()
        .filter(|t| t.service == service.id && t.is_live())
        .filter(|t| {
            t.node
                .as_ref()
                .is_some_and(|id| state.node(id).is_none_or(|n| must_leave(n, constraints)))
        })
        .map(|t| t.id.clone())
        .collect()
}

fn must_leave(node: &Node, constraints: &[Constraint]) -> bool {
    node.status == NodeStatus::Down
        || node.availability == Availability::Drain
        || !constraints.iter().all(|c| c.matches(node))
}
