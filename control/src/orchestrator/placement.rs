//! Placement: the unplaced tasks of a replicated service go to the
//! scheduler, and its answers become task updates.
//!
//! The round's state, a service, its parsed constraints and its
//! max-replicas limit enter; `UpdateTask` commands leave: node and state
//! Assigned for each task placed, state Pending and the scheduler's
//! explanation for each task that fits nowhere. A task already pending
//! with the same explanation gets no command, so a service that cannot be
//! placed does not fill the Raft log. Constraints that do not parse are
//! the explanation of every task of the service.

use super::round::Round;
use crate::ids::{NodeId, TaskId};
use crate::scheduler::{Constraint, ConstraintErrors, schedule};
use crate::state::{DesiredState, Service, TaskState, TaskUpdate};

/// Places the tasks of `service` that are meant to run and have no node,
/// in slot order.
pub(super) fn place(
    round: &mut Round,
    service: &Service,
    constraints: &Result<Vec<Constraint>, ConstraintErrors>,
    max_replicas: Option<u64>,
) {
    let mut waiting: Vec<(Option<u64>, TaskId)> = round
        .state()
        .tasks()
        .values()
        .filter(|t| t.service == service.id && t.desired == DesiredState::Running)
        .filter(|t| t.node.is_none() && t.state < TaskState::Assigned)
        .map(|t| (t.slot, t.id.clone()))
        .collect();
    waiting.sort();
    let ids: Vec<TaskId> = waiting.into_iter().map(|(_, id)| id).collect();
    let results: Vec<(TaskId, Result<NodeId, String>)> = match constraints {
        Ok(constraints) => schedule(round.state(), service, constraints, max_replicas, &ids)
            .into_iter()
            .map(|p| (p.task, p.result.map_err(|e| e.to_string())))
            .collect(),
        Err(e) => ids.into_iter().map(|id| (id, Err(e.to_string()))).collect(),
    };
    for (id, result) in results {
        match result {
            Ok(node) => round.update(
                &id,
                TaskUpdate {
                    node: Some(node),
                    state: Some(TaskState::Assigned),
                    ..TaskUpdate::default()
                },
            ),
            Err(why) => {
                let told = round.state().task(&id).is_some_and(|t| {
                    t.state == TaskState::Pending && t.error.as_deref() == Some(why.as_str())
                });
                if !told {
                    round.update(
                        &id,
                        TaskUpdate {
                            state: Some(TaskState::Pending),
                            error: Some(why),
                            ..TaskUpdate::default()
                        },
                    );
                }
            }
        }
    }
}
