//! The replicated orchestrator: one live task in each of a service's
//! slots `1..=replicas`.
//!
//! The round's state and a service enter; commands leave: `CreateTask`
//! (unplaced, for `placement` to place) for each slot without a live
//! task, and desired Shutdown for live tasks above the replica count,
//! without a slot (left from global mode), or sharing a slot with a
//! better one. Scaling down therefore removes the highest slots, as the
//! slot numbers users see in `service ps` suggest.

use std::collections::BTreeMap;

use super::round::Round;
use crate::ids::RandomError;
use crate::state::{Service, Task};

/// Gives every slot of `service` exactly one live task.
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
    let filled: Vec<u64> = slots.keys().copied().collect();
    for tasks in slots.into_values() {
        round.keep_one(&tasks);
    }
    for slot in (1..=replicas).filter(|s| filled.binary_search(s).is_err()) {
        round.create(&service.id, Some(slot), None)?;
    }
    Ok(())
}
