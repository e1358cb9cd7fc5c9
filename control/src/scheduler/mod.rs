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
    tasks
        .iter()
        .map(|task| Placement {
            task: task.clone(),
            result: place(&nodes, &mut load, limit, constraints),
        })
        .collect()
}

/// Places one task on the least loaded node that passes every filter.
fn place(
    nodes: &[(&Node, Option<Rejection>)],
    load: &mut Load,
    limit: Option<u64>,
    constraints: &[Constraint],
) -> Result<NodeId, NoSuitableNode> {
    let full = |node: &Node| filter::replicas_rejection(limit, load.of_service(&node.id));
    let best = nodes
        .iter()
        .filter(|(node, fixed)| fixed.is_none() && full(node).is_none())
        .map(|(node, _)| &node.id)
        .min_by(|a, b| load.rank(a).cmp(&load.rank(b)));
    match best {
        Some(id) => {
            load.add(id);
            Ok(id.clone())
        }
        None => Err(NoSuitableNode::new(
            nodes.iter().filter_map(|(node, fixed)| {
                let reason = fixed.clone().or_else(|| full(node))?;
                Some((node.id.clone(), reason))
            }),
            constraints,
        )),
    }
}

#[cfg(test)]
mod tests;
