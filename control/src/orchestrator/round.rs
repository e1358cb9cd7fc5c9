//! [`Round`]: the state as this round's commands leave it, and the
//! commands themselves.
//!
//! Every decision goes through [`Round::emit`], which applies the command
//! to the working copy before recording it: later passes see it, and the
//! state's own checks vet it. A command the state refuses is set aside
//! with its reason and the round goes on. The round's time stamps the
//! tasks it creates and the states it sets.

use std::cmp::Ordering;

use super::{Reconciliation, Refused};
use crate::ids::{NodeId, RandomError, ServiceId, TaskId};
use crate::state::{
    ClusterState, Command, DesiredState, StateError, Task, TaskState, TaskUpdate, UpdateStatus,
};

/// One reconciliation in progress.
pub(super) struct Round<'a> {
    state: ClusterState,
    now: u64,
    done: Reconciliation,
    new_id: &'a mut dyn FnMut() -> Result<TaskId, RandomError>,
}

impl<'a> Round<'a> {
    /// Starts from a copy of `state`, at `now` (ms since the UNIX epoch).
    pub(super) fn new(
        state: &ClusterState,
        now: u64,
        new_id: &'a mut dyn FnMut() -> Result<TaskId, RandomError>,
    ) -> Round<'a> {
        Round {
            state: state.clone(),
            now,
            done: Reconciliation::default(),
            new_id,
        }
    }

    /// The state with every command so far applied.
    pub(super) fn state(&self) -> &ClusterState {
        &self.state
    }

    /// The round's time.
    pub(super) fn now(&self) -> u64 {
        self.now
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
            at_ms: self.now,
        });
        Ok(())
    }

    /// Changes a task; a change of state happens now.
    pub(super) fn update(&mut self, id: &TaskId, mut update: TaskUpdate) {
        if update.state.is_some() {
            update.at_ms = Some(self.now);
        }
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
    /// others, in the order given. A task made for the service's
    /// `current` spec version wins over outdated ones, but until it runs
    /// the best outdated one stays beside it: a start-first update in
    /// progress.
    pub(super) fn keep(&mut self, current: u64, tasks: &[Task]) {
        let best = |new: bool| {
            tasks
                .iter()
                .filter(|t| (t.spec_version == current) == new)
                .min_by(|a, b| keep_first(a, b))
        };
        let kept: Vec<&TaskId> = match (best(true), best(false)) {
            (Some(new), Some(old)) if new.state < TaskState::Running => vec![&new.id, &old.id],
            (Some(new), _) => vec![&new.id],
            (None, old) => old.map(|t| &t.id).into_iter().collect(),
        };
        let extra: Vec<TaskId> = tasks
            .iter()
            .filter(|t| !kept.contains(&&t.id))
            .map(|t| t.id.clone())
            .collect();
        for id in extra {
            self.shut_down(&id);
        }
    }

    /// Records the progress of a service's update, unless it is already
    /// recorded.
    pub(super) fn set_update_status(&mut self, service: &ServiceId, status: UpdateStatus) {
        let Some(s) = self.state.service(service) else {
            return;
        };
        if s.update_status.as_ref() != Some(&status) {
            self.emit(Command::SetUpdateStatus {
                id: service.clone(),
                version: s.version,
                status,
            });
        }
    }

    /// Rolls a service back to its previous spec, or says why the state
    /// would refuse to; a refusal proposes nothing.
    pub(super) fn roll_back(&mut self, service: &ServiceId) -> Result<(), StateError> {
        let s = self
            .state
            .service(service)
            .ok_or_else(|| StateError::ServiceNotFound(service.to_string()))?;
        let spec = s
            .previous_spec
            .clone()
            .ok_or_else(|| StateError::NoPreviousSpec(s.spec.name.clone()))?;
        let command = Command::UpdateService {
            id: service.clone(),
            version: s.version,
            spec,
            rollback: true,
            at_ms: self.now,
        };
        self.state.clone().apply(command.clone())?;
        self.emit(command);
        Ok(())
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
/// lowest id among equals.
fn keep_first(a: &Task, b: &Task) -> Ordering {
    b.state.cmp(&a.state).then_with(|| a.id.cmp(&b.id))
}
