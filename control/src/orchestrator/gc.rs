//! Garbage collection: the terminal tasks `service ps` no longer shows.
//!
//! The round's state, the history limit and the round's time enter;
//! `RemoveTask` commands leave, which also free the tasks' addresses. A
//! terminal task is the history of its place (slot or node), and each
//! place keeps its newest `limit` of them, oldest removed first (by
//! creation time, then id). A place also keeps what its restart policy
//! reads ([`restart::must_keep`]): its newest task, and the failures that
//! count toward `max_attempts`, so a place can hold up to
//! `max_attempts + 2` terminal tasks whatever the limit. Terminal tasks
//! that belong to no place any more (their service was removed, scaled
//! below their slot or changed mode, or their node was removed) are all
//! removed. Tasks that have not stopped are never removed: their agent
//! still has to see them.

use std::collections::BTreeSet;

use super::place::{by_place, place_of};
use super::restart;
use super::round::Round;
use crate::ids::TaskId;

/// Removes the terminal tasks beyond `limit` per place that the restart
/// policy does not need, and those that belong nowhere.
pub(super) fn collect(round: &mut Round, limit: usize) {
    let state = round.state();
    let now = round.now();
    let mut remove: BTreeSet<TaskId> = BTreeSet::new();
    for task in state.tasks().values().filter(|t| t.state.is_terminal()) {
        let placed = state
            .service(&task.service)
            .and_then(|s| place_of(state, s, task));
        if placed.is_none() {
            remove.insert(task.id.clone());
        }
    }
    for service in state.services().values() {
        for tasks in by_place(state, service).values() {
            let kept: Vec<&TaskId> = restart::must_keep(service, tasks, now)
                .into_iter()
                .map(|t| &t.id)
                .collect();
            let terminal: Vec<&TaskId> = tasks
                .iter()
                .filter(|t| t.state.is_terminal())
                .map(|t| &t.id)
                .collect();
            let excess = terminal.len().saturating_sub(limit);
            let old = terminal.into_iter().filter(|id| !kept.contains(id));
            remove.extend(old.take(excess).cloned());
        }
    }
    for id in remove {
        round.remove(&id);
    }
}
