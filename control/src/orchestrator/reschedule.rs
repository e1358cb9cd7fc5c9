//! Rescheduling: the tasks the scheduler evicts from their node are told
//! to shut down, so that their slot (or, for a global service, nothing)
//! takes a new task.
//!
//! The round's state and a service enter; `UpdateTask` commands leave.
//! A task whose node is down or gone is also marked orphaned, since no
//! agent will report it stopped; one on a drained node, or a node that no
//! longer matches, is left for its agent to stop.

use super::is_lost;
use super::round::Round;
use crate::scheduler::{Constraint, evictions};
use crate::state::{DesiredState, Service, TaskState, TaskUpdate};

/// Shuts down the tasks of `service` that must leave their node.
pub(super) fn evict(round: &mut Round, service: &Service, constraints: &[Constraint]) {
    for id in evictions(round.state(), service, constraints) {
        let orphaned = round
            .state()
            .task(&id)
            .and_then(|t| t.node.as_ref())
            .is_some_and(|node| is_lost(round.state(), node));
        round.update(
            &id,
            TaskUpdate {
                desired: Some(DesiredState::Shutdown),
                state: orphaned.then_some(TaskState::Orphaned),
                ..TaskUpdate::default()
            },
        );
    }
}
