//! Finishing: tasks whose end no agent will report, and terminal tasks
//! still meant to run.
//!
//! The round's state enters; `UpdateTask` commands leave. A task told to
//! shut down that was never placed is marked Shutdown, and one on a node
//! that is down or gone is marked Orphaned, so that garbage collection
//! can remove it (Swarm's task reaper deletes such tasks outright). A
//! task that stopped by itself (complete, failed, rejected) while meant
//! to run is told to shut down: it will not run again; whether and when
//! its slot or node gets a replacement is its restart policy's business.

use super::is_lost;
use super::round::Round;
use crate::ids::TaskId;
use crate::state::{DesiredState, TaskState, TaskUpdate};

/// Marks stopped the tasks told to shut down that nobody runs.
pub(super) fn stop_abandoned(round: &mut Round) {
    let state = round.state();
    let abandoned: Vec<(TaskId, TaskState)> = state
        .tasks()
        .values()
        .filter(|t| t.desired == DesiredState::Shutdown && !t.state.is_terminal())
        .filter_map(|t| match &t.node {
            None => Some((t.id.clone(), TaskState::Shutdown)),
            Some(node) if is_lost(state, node) => Some((t.id.clone(), TaskState::Orphaned)),
            Some(_) => None,
        })
        .collect();
    for (id, to) in abandoned {
        round.update(
            &id,
            TaskUpdate {
                state: Some(to),
                ..TaskUpdate::default()
            },
        );
    }
}

/// Tells terminal tasks that are still meant to run to shut down.
pub(super) fn retire(round: &mut Round) {
    let stopped: Vec<TaskId> = round
        .state()
        .tasks()
        .values()
        .filter(|t| t.desired == DesiredState::Running && t.state.is_terminal())
        .map(|t| t.id.clone())
        .collect();
    for id in stopped {
        round.shut_down(&id);
    }
}
