//! The orchestrators: what moves the tasks toward what the services ask
//! for. Swarm's semantics, as swarmkit's replicated and global
//! orchestrators, task reaper and scheduler glue implement them.
//!
//! A [`ClusterState`], the cluster-wide [`Options`], and
//! a source of fresh task ids enter [`reconcile`]; the [`Command`]s to
//! propose leave, in order, in a [`Reconciliation`]. Nothing else is read
//! or written. Each command is applied to a copy of the state as soon as
//! it is decided, so later decisions see earlier ones (a slot emptied by
//! an eviction is refilled in the same round), every command is known to
//! apply in order, and a round run on the state its own commands produce
//! decides nothing. Services, tasks and nodes are visited in id order, so
//! every manager decides the same.
//!
//! A round, in order:
//! - `reschedule`: the scheduler's evictions (down, drained, gone, no
//!   longer matching) are told to shut down, and marked orphaned when
//!   their node is down or gone;
//! - `replicated`: one live task in each slot `1..=replicas`, then
//!   `placement` of the unplaced ones through the scheduler;
//! - `global`: one live task on each eligible node, created placed;
//! - `finish`: tasks told to shut down that no agent will report on are
//!   marked stopped;
//! - `gc`: terminal tasks beyond the history limit, and those of removed
//!   services, slots and nodes, are removed;
//! - `finish` again: terminal tasks still meant to run are told to shut
//!   down, their place taken by a replacement. The restart policy will
//!   decide here whether and when to replace them; today it is Swarm's
//!   default (any condition, at once).

mod finish;
mod gc;
mod global;
mod placement;
mod replicated;
mod reschedule;
mod round;

use crate::ids::{NodeId, RandomError, TaskId};
use crate::scheduler::Constraint;
use crate::state::{ClusterState, Command, NodeStatus, ServiceMode, StateError};
use round::Round;

/// Swarm's default `--task-history-limit`.
pub const DEFAULT_TASK_HISTORY_LIMIT: usize = 5;

/// Cluster-wide settings of the orchestrators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Terminal tasks kept per slot (replicated) or node (global) for
    /// `service ps`, Swarm's `--task-history-limit`.
    pub task_history_limit: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            task_history_limit: DEFAULT_TASK_HISTORY_LIMIT,
        }
    }
}

/// What one round decided.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reconciliation {
    /// The commands to propose, in order: each applies to the state the
    /// ones before it leave.
    pub commands: Vec<Command>,
    /// Commands the state refused, left out of `commands`; the next round
    /// tries again. In practice a task creation on a network out of
    /// addresses.
    pub refused: Vec<Refused>,
}

/// A command the state refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The command.
    pub command: Command,
    /// The state's reason.
    pub error: StateError,
}

/// Decides the commands that move the tasks of `state` toward what its
/// services ask for. `new_id` names the tasks it creates (production
/// passes `TaskId::generate`); its failure ends the round.
///
/// Run again on the state its commands produce, it returns nothing
/// (except what the state refused, which it proposes again).
pub fn reconcile(
    state: &ClusterState,
    options: &Options,
    new_id: &mut impl FnMut() -> Result<TaskId, RandomError>,
) -> Result<Reconciliation, RandomError> {
    let mut round = Round::new(state, new_id);
    let services: Vec<_> = state
        .services()
        .values()
        .map(|s| (s, Constraint::parse_all(&s.spec.constraints)))
        .collect();
    // Evictions first, so that placements count the load as it will be.
    // Constraints that do not parse evict for the node's state alone.
    for (service, constraints) in &services {
        let valid = constraints.as_deref().unwrap_or_default();
        reschedule::evict(&mut round, service, valid);
    }
    for (service, constraints) in &services {
        match service.spec.mode {
            ServiceMode::Replicated { replicas } => {
                replicated::fill_slots(&mut round, service, replicas)?;
                let max = Some(service.spec.max_replicas);
                placement::place(&mut round, service, constraints, max);
            }
            ServiceMode::Global => {
                global::cover_nodes(&mut round, service, constraints.as_deref().ok())?;
            }
        }
    }
    finish::stop_abandoned(&mut round);
    gc::collect(&mut round, options.task_history_limit);
    finish::retire(&mut round);
    Ok(round.into_reconciliation())
}

/// Whether no agent on `node` can report on its tasks: it is down or gone.
fn is_lost(state: &ClusterState, node: &NodeId) -> bool {
    state
        .node(node)
        .is_none_or(|n| n.status == NodeStatus::Down)
}

#[cfg(test)]
mod tests;
