//! Global services: the nodes that should run one of the service's tasks
//! and do not yet.
//!
//! The state, the service and its constraints enter; node ids leave, in id
//! order, for the global orchestrator to create a task on each.

use std::collections::BTreeSet;

use super::constraint::Constraint;
use super::filter;
use crate::ids::NodeId;
use crate::state::{ClusterState, Service};

/// The nodes that pass the filters (Ready, Active, constraints) and run no
/// live task of `service`. Paused nodes are left out: they keep what they
/// run but get nothing new.
pub fn global_targets(
    state: &ClusterState,
    service: &Service,
    constraints: &[Constraint],
) -> Vec<NodeId> {
    let served: BTreeSet<&NodeId> = state
        .tasks()
        .values()
        .filter(|t| t.service == service.id && t.is_live())
        .filter_map(|t| t.node.as_ref())
        .collect();
    state
        .nodes()
        .values()
        .filter(|n| !served.contains(&n.id))
        .filter(|n| filter::node_rejection(n, constraints).is_none())
        .map(|n| n.id.clone())
        .collect()
}
