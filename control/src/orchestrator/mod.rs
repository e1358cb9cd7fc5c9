//! The orchestrators: what moves the tasks toward what the services ask
//! for. Swarm's semantics, as swarmkit's replicated and global
//! orchestrators, restart supervisor, updater, task reaper and scheduler
//! glue implement them.
//!
//! A [`ClusterState`], the cluster-wide [`Options`], the time, and a
//! source of fresh task ids enter [`reconcile`]; the [`Command`]s to
//! propose leave, in order, in a [`Reconciliation`]. Nothing else is read
//! or written, and nothing is remembered between rounds: restart delays,
//! update batches and monitoring are decided from the times the tasks
//! carry. Each command is applied to a copy of the state as soon as it is
//! decided, so later decisions see earlier ones (a slot emptied by an
//! eviction is refilled in the same round), every command is known to
//! apply in order, and a round run at the same time on the state its own
//! commands produce decides nothing. Services, tasks and nodes are
//! visited in id order, so every manager decides the same.
//!
//! A round, in order:
//! - `update`: updates whose new tasks fail too often are paused or
//!   rolled back;
//! - `reschedule`: the scheduler's evictions (down, drained, gone, no
//!   longer matching) are told to shut down, and marked orphaned when
//!   their node is down or gone;
//! - `replicated`: one live task in each slot `1..=replicas`, the next
//!   batch of a rolling update, then `placement` of the unplaced ones
//!   through the scheduler;
//! - `global`: one live task on each eligible node, created placed, and
//!   the next batch of a rolling update;
//! - `finish`: tasks told to shut down that no agent will report on are
//!   marked stopped;
//! - `gc`: terminal tasks beyond the history limit, and those of removed
//!   services, slots and nodes, are removed;
//! - `finish` again: terminal tasks still meant to run are told to shut
//!   down;
//! - `update`: updates with nothing left to replace are marked complete.
//!
//! A slot or node left empty is filled at once, unless its last task
//! ended on its own, when its `restart` policy decides whether and when,
//! or a stop-first update waits for its old task to stop.

mod finish;
mod gc;
mod global;
mod place;
mod placement;
mod replicated;
mod reschedule;
mod restart;
mod round;
mod update;

use crate::ids::{NodeId, RandomError, ServiceId, TaskId};
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
/// services ask for, at `now_ms` (ms since the UNIX epoch). `new_id` names
/// the tasks it creates (production passes `TaskId::generate`); its
/// failure ends the round.
///
/// Run again at the same time on the state its commands produce, it
/// returns nothing (except what the state refused, which it proposes
/// again).
pub fn reconcile(
    state: &ClusterState,
    options: &Options,
    now_ms: u64,
    new_id: &mut impl FnMut() -> Result<TaskId, RandomError>,
) -> Result<Reconciliation, RandomError> {
    let mut round = Round::new(state, now_ms, new_id);
    let ids: Vec<ServiceId> = state.services().keys().cloned().collect();
    // First, as a rollback changes the spec everything after works from.
    for id in &ids {
        update::check_failures(&mut round, id);
    }
    let services: Vec<_> = round
        .state()
        .services()
        .values()
        .map(|s| (s.clone(), Constraint::parse_all(&s.spec.constraints)))
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
    for id in &ids {
        update::finish(&mut round, id);
    }
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
