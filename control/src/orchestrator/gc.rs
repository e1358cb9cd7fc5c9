//! Garbage collection: the terminal tasks `service ps` no longer shows.
//!
//! The round's state and the history limit enter; `RemoveTask` commands
//! leave, which also free the tasks' addresses. A terminal task is the
//! history of its slot (replicated) or its node (global), and each slot
//! or node keeps `limit` of them. Terminal tasks that belong to no slot or
//! node any more (their service was removed, scaled below their slot or
//! changed mode, or their node was removed) are all removed. Tasks that
//! have not stopped are never removed: their agent still has to see them.
//!
//! The state records no times, so which tasks of a slot count as the
//! oldest is decided by id order, lowest first, until tasks carry one.

use std::collections::BTreeMap;

use super::round::Round;
use crate::ids::{NodeId, ServiceId, TaskId};
use crate::state::{ClusterState, ServiceMode, Task};

/// Whose history a terminal task is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Owner {
    Slot(u64),
    Node(NodeId),
}

/// Removes the terminal tasks beyond `limit` per slot or node, and those
/// that belong nowhere.
pub(super) fn collect(round: &mut Round, limit: usize) {
    let state = round.state();
    let mut history: BTreeMap<(&ServiceId, Owner), Vec<&TaskId>> = BTreeMap::new();
    let mut remove: Vec<TaskId> = Vec::new();
    for task in state.tasks().values().filter(|t| t.state.is_terminal()) {
        match owner(state, task) {
            Some(owner) => history
                .entry((&task.service, owner))
                .or_default()
                .push(&task.id),
            None => remove.push(task.id.clone()),
        }
    }
    for ids in history.into_values() {
        let excess = ids.len().saturating_sub(limit);
        remove.extend(ids.into_iter().take(excess).cloned());
    }
    remove.sort();
    for id in remove {
        round.remove(&id);
    }
}

/// The slot or node whose history `task` is, if its service still has it.
fn owner(state: &ClusterState, task: &Task) -> Option<Owner> {
    let service = state.service(&task.service)?;
    match service.spec.mode {
        ServiceMode::Replicated { replicas } => task
            .slot
            .filter(|slot| (1..=replicas).contains(slot))
            .map(Owner::Slot),
        ServiceMode::Global => task
            .node
            .clone()
            .filter(|node| task.slot.is_none() && state.node(node).is_some())
            .map(Owner::Node),
    }
}
