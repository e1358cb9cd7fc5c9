//! [`Round`]: the state as this round's commands leave it, and the
//! commands themselves.
//!
//! Every decision goes through [`Round::emit`], which applies the command
//! to the working copy before recording it: later passes see it, and the
//! state's own checks vet it. A command the state refuses is set aside
//! with its reason and the round goes on.

use std::cmp::Ordering;

use super::{Reconciliation, Refused};
use crate::ids::{NodeId, RandomError, ServiceId, TaskId};
use crate::state::{ClusterState, Command, DesiredState, Task, TaskUpdate};

/// One reconciliation in progress.
pub(super) struct Round<'a> {
    state: ClusterState,
    done: Reconciliation,
    new_id: &'a mut dyn FnMut() -> Result<TaskId, RandomError>,
}

impl<'a> Round<'a> {
    /// Starts from a copy of `state`.
    pub(super) fn new(
        state: &ClusterState,
        new_id: &'a mut dyn FnMut() -> Result<TaskId, RandomError>,
    ) -> Round<'a> {
        Round {
            state: state.clone(),
            done: Reconciliation::default(),
            new_id,
        }
    }

    /// The state with every command so far applied.
    pub(super) fn state(&self) -> &ClusterState {
        &self.state
    }

    /// What was decided.
    pub(super) fn into_reconciliation(self) -> Reconciliation {
        self.done
    }

    /// The live tasks of `service`, in id order.
    pub(super) fn live_tasks(&self, service: &ServiceId) -> Vec<Task> {
        self.state
            .tasks()
            .values()
            .filter(|t| &t.service == service && t.is_live())
            .cloned()
            .collect()
    }

    /// Creates a task of `service` under a fresh id.
    pub(super) fn create(
        &mut self,
        service: &ServiceId,
        slot: Option<u64>,
        node: Option<NodeId>,
    ) -> Result<(), RandomError> {
        let id = (self.new_id)()?;
        self.emit(Command::CreateTask {
            id,
            service: service.clone(),
            slot,
            node,
        });
        Ok(())
    }

    /// Changes a task.
    pub(super) fn update(&mut self, id: &TaskId, update: TaskUpdate) {
        self.emit(Command::UpdateTask {
            id: id.clone(),
            update,
        });
    }

    /// Tells a task to shut down.
    pub(super) fn shut_down(&mut self, id: &TaskId) {
        self.update(
            id,
            TaskUpdate {
                desired: Some(DesiredState::Shutdown),
                ..TaskUpdate::default()
            },
        );
    }

    /// Of live tasks holding one place, keeps the best and shuts down the
    /// others, in the order given.
    pub(super) fn keep_one(&mut self, tasks: &[Task]) {
        let Some(kept) = tasks.iter().min_by(|a, b| keep_first(a, b)) else {
            return;
        };
        let kept = kept.id.clone();
        for extra in tasks.iter().filter(|t| t.id != kept) {
            self.shut_down(&extra.id);
        }
    }

    /// Forgets a task.
    pub(super) fn remove(&mut self, id: &TaskId) {
        self.emit(Command::RemoveTask { id: id.clone() });
    }

    fn emit(&mut self, command: Command) {
        match self.state.apply(command.clone()) {
            Ok(_) => self.done.commands.push(command),
            Err(error) => self.done.refused.push(Refused { command, error }),
        }
    }
}

/// Which of several live tasks holding one place stays: the one furthest
/// along (running before starting, before assigned, before pending), the
/// lowest id among equals. The state records no times, so progress
/// stands in for age.
fn keep_first(a: &Task, b: &Task) -> Ordering {
    b.state.cmp(&a.state).then_with(|| a.id.cmp(&b.id))
}
