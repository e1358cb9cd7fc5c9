//! The scheduler: which node each new task of a service goes to, which
//! nodes a global service still needs a task on, and which running tasks
//! must move. Swarm's semantics, as swarmkit implements them.
//!
//! Everything here is a pure function of a [`ClusterState`], a service and
//! its parsed [`Constraint`]s: decisions come out as [`Placement`]s, node
//! ids and task ids, and an orchestrator turns them into commands. Nodes
//! are visited in id order and ties broken by id, so every manager decides
//! the same.
//!
//! - [`constraint`]: `--constraint` expressions, parsed and matched;
//! - `filter`: the filters a node must pass, each with its [`Rejection`];
//! - `spread`: the choice among the nodes that pass;
//! - `explain`: [`NoSuitableNode`], the reasons when none passes;
//! - `global` and `evict`: [`global_targets`] and [`evictions`].

pub mod constraint;
mod evict;
mod explain;
mod filter;
mod global;
mod spread;

pub use constraint::{Constraint, ConstraintError, ConstraintErrors};
pub use evict::evictions;
pub use explain::{NoSuitableNode, Rejected};
pub use filter::Rejection;
pub use global::global_targets;

use std::collections::BTreeSet;

use crate::ids::{NodeId, TaskId};
use crate::state::{ClusterState, Node, Service};
use spread::Load;

/// Where one task goes, or why it cannot go anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The task.
    pub task: TaskId,
    /// Its node, or the reasons every node was rejected.
    pub result: Result<NodeId, NoSuitableNode>,
}

/// Places the pending `tasks` of `service`, one after another.
///
/// Each placement counts the ones before it, so five tasks on three empty
/// nodes go 2/2/1. `max_replicas` is the most live tasks of the service a
/// node may run; `None` or `Some(0)` means no limit, as Swarm's
/// `--max-replicas 0`. The tasks are not looked up in `state`.
pub fn schedule(
    state: &ClusterState,
    service: &Service,
    constraints: &[Constraint],
    max_replicas: Option<u64>,
    tasks: &[TaskId],
) -> Vec<Placement> {
    let limit = max_replicas.filter(|&max| max > 0);
    let nodes: Vec<(&Node, Option<Rejection>)> = state
        .nodes()
        .values()
        .map(|node| (node, filter::node_rejection(node, constraints)))
        .collect();
    let mut load = Load::new(state, &service.id);
    // The nodes that pass the fixed filters, in spread order: each
    // placement takes the first and puts it back with its new load, so a
    // call costs O(tasks x log nodes), not O(tasks x nodes).
    let mut open: BTreeSet<(u64, u64, NodeId)> = nodes
        .iter()
        .filter(|(_, fixed)| fixed.is_none())
        .map(|(node, _)| {
            let (service, all, id) = load.rank(&node.id);
            (service, all, id.clone())
        })
        .collect();
    tasks
        .iter()
        .map(|task| Placement {
            task: task.clone(),
            result: place(&nodes, &mut open, &mut load, limit, constraints),
        })
        .collect()
}

/// Places one task on the least loaded open node.
fn place(
    nodes: &[(&Node, Option<Rejection>)],
    open: &mut BTreeSet<(u64, u64, NodeId)>,
    load: &mut Load,
    limit: Option<u64>,
    constraints: &[Constraint],
) -> Result<NodeId, NoSuitableNode> {
    while let Some((_, _, id)) = open.pop_first() {
        // Loads only grow during a call: a full node stays full.
        if filter::replicas_rejection(limit, load.of_service(&id)).is_some() {
            continue;
        }
        load.add(&id);
        let (service, all, _) = load.rank(&id);
        open.insert((service, all, id.clone()));
        return Ok(id);
    }
    Err(NoSuitableNode::new(
        nodes.iter().filter_map(|(node, fixed)| {
            let reason = fixed
                .clone()
                .or_else(|| filter::replicas_rejection(limit, load.of_service(&node.id)))?;
            Some((node.id.clone(), reason))
        }),
        constraints,
    ))
}

#[cfg(test)]
mod tests;
