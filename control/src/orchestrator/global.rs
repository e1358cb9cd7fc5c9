//! The global orchestrator: one live task on every eligible node.
//!
//! The round's state, a service and its constraints (`None` when they do
//! not parse) enter; commands leave: `CreateTask`, already placed, for
//! each node [`global_targets`] names, and desired Shutdown for live
//! tasks that are unplaced or have a slot (left from replicated mode), or
//! share a node with a better one. Tasks on nodes that are no longer
//! eligible were evicted by `reschedule`. Constraints that do not parse
//! name no node, so nothing is created, and the tasks already running
//! stay where they are.

use std::collections::BTreeMap;

use super::round::Round;
use crate::ids::{NodeId, RandomError};
use crate::scheduler::{Constraint, global_targets};
use crate::state::{Service, Task};

/// Gives every eligible node exactly one live task of `service`.
pub(super) fn cover_nodes(
    round: &mut Round,
    service: &Service,
    constraints: Option<&[Constraint]>,
) -> Result<(), RandomError> {
    let mut nodes: BTreeMap<NodeId, Vec<Task>> = BTreeMap::new();
    for task in round.live_tasks(&service.id) {
        match (&task.slot, &task.node) {
            (None, Some(node)) => nodes.entry(node.clone()).or_default().push(task),
            _ => round.shut_down(&task.id),
        }
    }
    for tasks in nodes.into_values() {
        round.keep_one(&tasks);
    }
    let Some(constraints) = constraints else {
        return Ok(());
    };
    for node in global_targets(round.state(), service, constraints) {
        round.create(&service.id, None, Some(node))?;
    }
    Ok(())
}
