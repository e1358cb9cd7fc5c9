//! The replicated orchestrator: one live task in each of a service's
//! slots `1..=replicas`.
//!
//! The round's state and a service enter; commands leave: desired
//! Shutdown for live tasks above the replica count, without a slot (left
//! from global mode), or sharing a slot with a better one; the next batch
//! of a rolling update (`update`); and `CreateTask` (unplaced, for
//! `placement` to place) for each slot without a live task that the
//! restart policy lets have one now (`restart`) and no stop-first update
//! holds empty. Scaling down therefore removes the highest slots, as the
//! slot numbers users see in `service ps` suggest.

use std::collections::BTreeMap;

use super::place::{Place, by_place};
use super::round::Round;
use super::{restart, update};
use crate::ids::RandomError;
use crate::state::{Service, Task};

/// Gives every slot of `service` exactly one live task, when its restart
/// policy and update allow.
pub(super) fn fill_slots(
    round: &mut Round,
    service: &Service,
    replicas: u64,
) -> Result<(), RandomError> {
    let mut slots: BTreeMap<u64, Vec<Task>> = BTreeMap::new();
    for task in round.live_tasks(&service.id) {
        match task.slot {
            Some(slot) if (1..=replicas).contains(&slot) => {
                slots.entry(slot).or_default().push(task);
            }
            _ => round.shut_down(&task.id),
        }
    }
    for tasks in slots.into_values() {
        round.keep(service.spec_version, &tasks);
    }
    // Refill before the update looks, so that a slot it emptied and that
    // may be filled counts as filled; and after, for the slots it emptied
    // of tasks that need not be waited for.
    refill(round, service, 1..=replicas)?;
    let emptied = update::replace_batch(round, service, |_| true)?;
    let emptied = emptied.into_iter().filter_map(|place| match place {
        Place::Slot(slot) => Some(slot),
        Place::Node(_) => None,
    });
    refill(round, service, emptied.collect::<Vec<_>>())
}

/// Creates a task in each of `slots` without a live one that may have one
/// now.
fn refill(
    round: &mut Round,
    service: &Service,
    slots: impl IntoIterator<Item = u64>,
) -> Result<(), RandomError> {
    let now = round.now();
    let state = round.state();
    let places = by_place(state, service);
    let empty: Vec<u64> = slots
        .into_iter()
        .filter(|slot| {
            let tasks = places
                .get(&Place::Slot(*slot))
                .map_or(&[][..], Vec::as_slice);
            !tasks.iter().any(|t| t.is_live())
                && restart::may_start(service, tasks, now)
                && !update::must_wait(state, service, tasks)
        })
        .collect();
    for slot in empty {
        round.create(&service.id, Some(slot), None)?;
    }
    Ok(())
}
