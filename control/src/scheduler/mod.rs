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
//! - `preference`: `--placement-pref` text ([`parse_preference`]), and
//!   the spreads the scheduler reads back from a spec;
//! - `tree`: the nodes grouped by the preferences' label values;
//! - `spread`: the choice among the nodes of a group that pass;
//! - `explain`: [`NoSuitableNode`], the reasons when none passes;
//! - `global` and `evict`: [`global_targets`] and [`evictions`].

pub mod constraint;
mod evict;
mod explain;
mod filter;
mod global;
mod preference;
mod spread;
mod tree;

pub use constraint::{Constraint, ConstraintError, ConstraintErrors};
pub use evict::evictions;
pub use explain::{NoSuitableNode, Rejected};
pub use filter::Rejection;
pub use global::global_targets;
pub use preference::{PreferenceError, PreferenceProblem, parse_preference};

use crate::ids::{NodeId, TaskId};
use crate::state::{ClusterState, Node, Service};
use spread::Load;
use tree::Tree;

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
/// `--max-replicas 0`. The service's placement preferences come from its
/// spec: tasks spread over their label values first (see `tree`). The
/// tasks are not looked up in `state`.
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
    let members: Vec<(&Node, bool)> = nodes
        .iter()
        .map(|(node, fixed)| (*node, fixed.is_none()))
        .collect();
    let spreads = preference::spreads(&service.spec.preferences);
    let mut tree = Tree::new(&members, &spreads, &load);
    tasks
        .iter()
        .map(|task| Placement {
            task: task.clone(),
            result: tree
                .take(&mut load, limit)
                .ok_or_else(|| refusal(&nodes, &load, limit, constraints)),
        })
        .collect()
}

/// Why no node can take a task: each node's first failed filter.
fn refusal(
    nodes: &[(&Node, Option<Rejection>)],
    load: &Load,
    limit: Option<u64>,
    constraints: &[Constraint],
) -> NoSuitableNode {
    NoSuitableNode::new(
        nodes.iter().filter_map(|(node, fixed)| {
            let reason = fixed
                .clone()
                .or_else(|| filter::replicas_rejection(limit, load.of_service(&node.id)))?;
            Some((node.id.clone(), reason))
        }),
        constraints,
    )
}

#[cfg(test)]
mod tests;
