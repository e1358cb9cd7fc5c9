//! The restart policy: whether a place (slot or node) whose task ended
//! gets a new one now, as Swarm's restart supervisor decides.
//!
//! A service, the tasks of one of its places (oldest first) and the
//! round's time enter; a yes or no leaves. The newest task decides. Only a
//! task that ended on its own (completed, failed, rejected) with the
//! service's current spec is subject to the policy; a place that never
//! had a task, whose task was stopped on request or lost with its node, or
//! whose last task ran an older spec is filled at once. Otherwise the
//! condition must allow it (`on-failure` not after an exit 0, `none`
//! never), `delay_ms` must have passed since the task ended, and with
//! `max_attempts` set the place's tasks of this spec that ended on their
//! own within `window_ms` (the newest included) must be at most
//! `max_attempts + 1`: `max_attempts` replacements, then the place stays
//! empty and `service ps` shows why. Waiting is not remembered anywhere: a
//! later round at a later time decides again.
//!
//! Garbage collection keeps what these decisions read (see
//! [`must_keep`]), so a history limit below `max_attempts + 1` does not
//! let a crashing task restart forever: Swarm keeps the same count in its
//! restart supervisor, apart from the task history.

use crate::state::{RestartCondition, Service, Task, TaskState};

/// Whether the place whose tasks are `tasks` (oldest first) may get a new
/// task at `now`.
pub(super) fn may_start(service: &Service, tasks: &[&Task], now: u64) -> bool {
    let Some(last) = tasks.last() else {
        return true;
    };
    if !is_restart(service, last) {
        return true;
    }
    let policy = &service.spec.restart;
    let allowed = match policy.condition {
        RestartCondition::Any => true,
        RestartCondition::OnFailure => last.state != TaskState::Complete,
        RestartCondition::None => false,
    };
    let attempts = tasks.iter().filter(|t| counts(service, t, now)).count();
    allowed
        && now >= last.status_ms.saturating_add(policy.delay_ms)
        && (policy.max_attempts == 0 || (attempts as u64) <= policy.max_attempts)
}

/// Of the tasks of one place (oldest first), those that garbage
/// collection must keep for [`may_start`] to decide the same: the newest,
/// and the newest `max_attempts + 1` that count toward the limit.
pub(super) fn must_keep<'t>(service: &Service, tasks: &[&'t Task], now: u64) -> Vec<&'t Task> {
    let mut keep: Vec<&Task> = tasks.last().copied().into_iter().collect();
    let max = service.spec.restart.max_attempts;
    if max > 0 {
        let counted = tasks.iter().rev().filter(|t| counts(service, t, now));
        keep.extend(counted.take(usize::try_from(max).unwrap_or(usize::MAX).saturating_add(1)));
    }
    keep
}

/// Whether `task` ended on its own with the service's current spec, so
/// that replacing it is a restart.
fn is_restart(service: &Service, task: &Task) -> bool {
    task.ended_on_its_own && task.spec_version == service.spec_version
}

/// Whether `task` counts toward `max_attempts` at `now`.
fn counts(service: &Service, task: &Task, now: u64) -> bool {
    let window = service.spec.restart.window_ms;
    is_restart(service, task) && (window == 0 || now < task.status_ms.saturating_add(window))
}
