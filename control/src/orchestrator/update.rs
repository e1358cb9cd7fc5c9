//! Rolling updates and rollbacks: the live tasks made for another spec
//! version than the service's are replaced a batch at a time, as Swarm's
//! updater does, with the service's update config (its rollback config
//! while rolling back).
//!
//! The round's state and a service enter; task commands and
//! `SetUpdateStatus` (and, on failure, a rollback `UpdateService`) leave.
//! Nothing is remembered between rounds but what the state holds: a place
//! is being updated while it holds an outdated task beside a current one
//! (start-first), while its outdated task is stopping and nothing else
//! runs there (stop-first), or while its current task has not yet run for
//! `monitor_ms` (so a new task that cannot be placed holds the update). A
//! new batch of at most `parallelism` places starts when no place is
//! being updated and `delay_ms` has passed since the last one settled.
//! Stop-first shuts the old task down and fills the place once it has
//! stopped; start-first creates the new task at once and stops the old
//! one when the new one runs ([`Round::keep`]).
//!
//! A task of the new spec created since the update started that ends on
//! its own before it has run for `monitor_ms` is a failure. Once the
//! failures exceed `max_failure_ratio_permille` of the service's tasks,
//! `pause` stops the update (naming the task and why), `continue` goes
//! on, and `rollback` rolls the service back; a rollback that fails
//! pauses, it is never rolled back. Failures are read from the task
//! history, so with `continue` and a ratio only those still in history
//! count. When no outdated task is live and no place is being updated,
//! the update is complete. A global service's task on a node that takes
//! no new tasks (paused, not ready) is replaced once the node does.

use super::is_lost;
use super::place::{Place, by_place, is_outdated};
use super::restart;
use super::round::Round;
use crate::ids::{RandomError, ServiceId, TaskId};
use crate::scheduler::Constraint;
use crate::state::{
    Availability, ClusterState, DesiredState, FailureAction, NodeStatus, Service, ServiceMode,
    Task, TaskState, UpdateConfig, UpdateOrder, UpdateState, UpdateStatus,
};

/// The update in progress and its config, while tasks are being replaced.
fn active(service: &Service) -> Option<(&UpdateStatus, &UpdateConfig)> {
    let status = service.update_status.as_ref()?;
    match status.state {
        UpdateState::Updating => Some((status, &service.spec.update)),
        UpdateState::RollbackStarted => Some((status, &service.spec.rollback)),
        _ => None,
    }
}

/// Applies the failure action if the failures of the update of service
/// `id` exceed what its config tolerates.
pub(super) fn check_failures(round: &mut Round, id: &ServiceId) {
    // A rollback started here is checked once more, against its own tasks.
    for _ in 0..2 {
        let Some(service) = round.state().service(id).cloned() else {
            return;
        };
        let Some((status, config)) = active(&service) else {
            return;
        };
        let Some(failed) = tipping_failure(round.state(), &service, status, config) else {
            return;
        };
        let why = format!(
            "failure or early termination of task {}: {}",
            failed.id,
            reason(failed)
        );
        let started_ms = status.started_ms;
        let paused = |state, message| UpdateStatus {
            state,
            message,
            started_ms,
        };
        let rolling_back = status.state == UpdateState::RollbackStarted;
        match config.failure_action {
            FailureAction::Continue => return,
            _ if rolling_back => {
                let message = format!("rollback paused due to {why}");
                round.set_update_status(id, paused(UpdateState::RollbackPaused, message));
                return;
            }
            FailureAction::Pause => {
                let message = format!("update paused due to {why}");
                round.set_update_status(id, paused(UpdateState::Paused, message));
                return;
            }
            FailureAction::Rollback => match round.roll_back(id) {
                Ok(()) => {
                    let rolled = UpdateStatus {
                        state: UpdateState::RollbackStarted,
                        message: format!("update rolled back due to {why}"),
                        started_ms: round.now(),
                    };
                    round.set_update_status(id, rolled);
                }
                Err(e) => {
                    let message = format!("update paused due to {why}; cannot roll back: {e}");
                    round.set_update_status(id, paused(UpdateState::Paused, message));
                    return;
                }
            },
        }
    }
}

/// The failure that takes the update past its tolerated ratio, if there
/// is one: failures in the order they happened, the first one beyond
/// `max_failure_ratio_permille` of the service's tasks (its replicas, or
/// the nodes a global service asks for).
fn tipping_failure<'s>(
    state: &'s ClusterState,
    service: &Service,
    status: &UpdateStatus,
    config: &UpdateConfig,
) -> Option<&'s Task> {
    let mut failures: Vec<&Task> = state
        .tasks()
        .values()
        .filter(|t| t.service == service.id && is_failure(service, status, config, t))
        .collect();
    failures.sort_by(|a, b| (a.status_ms, &a.id).cmp(&(b.status_ms, &b.id)));
    // What the service asks for, which no command of the round changes.
    let total = match service.spec.mode {
        ServiceMode::Replicated { replicas } => replicas,
        ServiceMode::Global => {
            let constraints = Constraint::parse_all(&service.spec.constraints).unwrap_or_default();
            let eligible = state.nodes().values().filter(|n| {
                n.status == NodeStatus::Ready
                    && n.availability == Availability::Active
                    && constraints.iter().all(|c| c.matches(n))
            });
            eligible.count() as u64
        }
    };
    let tolerated = config
        .max_failure_ratio_permille
        .saturating_mul(total.max(1))
        / 1000;
    failures
        .get(usize::try_from(tolerated).unwrap_or(usize::MAX))
        .copied()
}

/// Whether `task` is a failure of the update: made for the new spec
/// since the update started, and ended on its own before it had run for
/// `monitor_ms`.
fn is_failure(service: &Service, status: &UpdateStatus, config: &UpdateConfig, t: &Task) -> bool {
    t.ended_on_its_own
        && !is_outdated(service, t)
        && t.created_ms >= status.started_ms
        && t.started_ms
            .is_none_or(|s| t.status_ms < s.saturating_add(config.monitor_ms))
}

/// A failed task's state and error, for messages.
fn reason(task: &Task) -> String {
    match &task.error {
        Some(error) => format!("{}: {error}", task.state),
        None => task.state.to_string(),
    }
}

/// Starts the next batch of `service`'s update if it is due: the places
/// holding one outdated task, in place order, that `eligible` accepts and
/// whose restart policy allows a new task now. Returns the places whose
/// task it stopped (stop-first), for the caller to refill.
pub(super) fn replace_batch(
    round: &mut Round,
    service: &Service,
    eligible: impl Fn(&Place) -> bool,
) -> Result<Vec<Place>, RandomError> {
    let Some((_, config)) = active(service) else {
        return Ok(Vec::new());
    };
    let now = round.now();
    let state = round.state();
    let places = by_place(state, service);
    let busy = places
        .values()
        .any(|tasks| is_updating(state, service, config, tasks, now));
    if busy || now < next_batch(service, config, &places) {
        return Ok(Vec::new());
    }
    let mut batch: Vec<(Place, TaskId)> = places
        .iter()
        .filter(|(place, _)| eligible(place))
        .filter_map(|(place, tasks)| {
            let live: Vec<&&Task> = tasks.iter().filter(|t| t.is_live()).collect();
            match live[..] {
                [old] if is_outdated(service, old) && restart::may_start(service, tasks, now) => {
                    Some((place.clone(), old.id.clone()))
                }
                _ => None,
            }
        })
        .collect();
    if config.parallelism > 0 {
        batch.truncate(usize::try_from(config.parallelism).unwrap_or(usize::MAX));
    }
    let mut emptied = Vec::new();
    for (place, old) in batch {
        match (config.order, place) {
            (UpdateOrder::StopFirst, place) => {
                round.shut_down(&old);
                emptied.push(place);
            }
            (UpdateOrder::StartFirst, Place::Slot(slot)) => {
                round.create(&service.id, Some(slot), None)?;
            }
            (UpdateOrder::StartFirst, Place::Node(node)) => {
                round.create(&service.id, None, Some(node))?;
            }
        }
    }
    Ok(emptied)
}

/// Whether the place whose tasks are `tasks` must stay empty for now: a
/// stop-first update stopped its outdated task, which has not stopped yet.
pub(super) fn must_wait(state: &ClusterState, service: &Service, tasks: &[&Task]) -> bool {
    active(service).is_some_and(|(_, config)| config.order == UpdateOrder::StopFirst)
        && !tasks.iter().any(|t| t.is_live())
        && is_stopping_outdated(state, service, tasks)
}

/// Marks the update of service `id` complete once no outdated task is
/// live and no place is being updated.
pub(super) fn finish(round: &mut Round, id: &ServiceId) {
    let Some(service) = round.state().service(id).cloned() else {
        return;
    };
    let Some((status, config)) = active(&service) else {
        return;
    };
    let state = round.state();
    let outdated = state
        .tasks()
        .values()
        .any(|t| t.service == service.id && t.is_live() && is_outdated(&service, t));
    let busy = by_place(state, &service)
        .values()
        .any(|tasks| is_updating(state, &service, config, tasks, round.now()));
    if outdated || busy {
        return;
    }
    let (done, message) = match status.state {
        UpdateState::RollbackStarted => (UpdateState::RollbackCompleted, "rollback completed"),
        _ => (UpdateState::Completed, "update completed"),
    };
    let done = UpdateStatus {
        state: done,
        message: message.into(),
        started_ms: status.started_ms,
    };
    round.set_update_status(id, done);
}

/// Whether the place whose tasks are `tasks` is being updated.
fn is_updating(
    state: &ClusterState,
    service: &Service,
    config: &UpdateConfig,
    tasks: &[&Task],
    now: u64,
) -> bool {
    let live = || tasks.iter().filter(|t| t.is_live());
    let (old, new): (Vec<&&Task>, Vec<&&Task>) = live().partition(|t| is_outdated(service, t));
    let unsettled = |t: &&&Task| {
        t.state != TaskState::Running || now < t.status_ms.saturating_add(config.monitor_ms)
    };
    (!old.is_empty() && !new.is_empty())
        || new.iter().any(unsettled)
        || (live().next().is_none() && is_stopping_outdated(state, service, tasks))
}

/// Whether an outdated task of these is stopping on a node that will
/// report it stopped.
fn is_stopping_outdated(state: &ClusterState, service: &Service, tasks: &[&Task]) -> bool {
    tasks.iter().any(|t| {
        t.desired == DesiredState::Shutdown
            && !t.state.is_terminal()
            && is_outdated(service, t)
            && t.node.as_ref().is_some_and(|n| !is_lost(state, n))
    })
}

/// When the next batch may start: `delay_ms` after the current tasks have
/// run for `monitor_ms`.
fn next_batch(
    service: &Service,
    config: &UpdateConfig,
    places: &std::collections::BTreeMap<Place, Vec<&Task>>,
) -> u64 {
    places
        .values()
        .flatten()
        .filter(|t| t.is_live() && !is_outdated(service, t) && t.state == TaskState::Running)
        .map(|t| {
            t.status_ms
                .saturating_add(config.monitor_ms)
                .saturating_add(config.delay_ms)
        })
        .max()
        .unwrap_or(0)
}
