//! The global orchestrator: one live task on every eligible node.
//!
//! The round's state, a service and its constraints (`None` when they do
//! not parse) enter; commands leave: desired Shutdown for live tasks that
//! are unplaced or have a slot (left from replicated mode), or share a
//! node with a better one; the next batch of a rolling update (`update`),
//! node by node; and `CreateTask`, already placed, for each node
//! [`global_targets`] names that the restart policy lets have a task now
//! (`restart`) and no stop-first update holds empty. Tasks on nodes that
//! are no longer eligible were evicted by `reschedule`. Constraints that
//! do not parse name no node, so nothing is created or replaced, and the
//! tasks already running stay where they are.

use std::collections::BTreeMap;

use super::place::{Place, by_place};
use super::round::Round;
use super::{restart, update};
use crate::ids::{NodeId, RandomError};
use crate::scheduler::{Constraint, global_targets};
use crate::state::{Availability, NodeStatus, Service, Task};

/// Gives every eligible node exactly one live task of `service`, when its
/// restart policy and update allow.
pub(super) fn cover_nodes(
    round: &mut Round,
    service: &Service,
    constraints: Option<&[Constraint]>,
) -> Result<(), RandomError> {
    let mut nodes: BTreeMap<NodeId, Vec<Task>> = BTreeMap::new();
    for task in round.live_tasks(&service.id) {
        match (&task.slot, &task.node) {
            (None, Some(node)) => nodes.entry(node.clone()).or_default().push(task),
            _ => round.shut_down(&task.id),
        }
    }
    for tasks in nodes.into_values() {
        round.keep(service.spec_version, &tasks);
    }
    let Some(constraints) = constraints else {
        return Ok(());
    };
    // As for slots: refill, let the update replace, refill what it emptied.
    refill(round, service, constraints, None)?;
    // Evictions left live tasks only on nodes that match; those that take
    // no new task (paused, not ready) keep their outdated one for now.
    let open = |place: &Place| match place {
        Place::Node(id) => round.state().node(id).is_some_and(|n| {
            n.status == NodeStatus::Ready && n.availability == Availability::Active
        }),
        Place::Slot(_) => false,
    };
    let open: Vec<Place> = by_place(round.state(), service)
        .into_keys()
        .filter(open)
        .collect();
    let emptied = update::replace_batch(round, service, |place| open.contains(place))?;
    refill(round, service, constraints, Some(&emptied))
}

/// Creates a task on each node that should have one, has none, and may
/// have one now; only on nodes among `only`, if given.
fn refill(
    round: &mut Round,
    service: &Service,
    constraints: &[Constraint],
    only: Option<&[Place]>,
) -> Result<(), RandomError> {
    let now = round.now();
    let state = round.state();
    let places = by_place(state, service);
    let targets: Vec<NodeId> = global_targets(state, service, constraints)
        .into_iter()
        .filter(|node| {
            let place = Place::Node(node.clone());
            let tasks = places.get(&place).map_or(&[][..], Vec::as_slice);
            only.is_none_or(|only| only.contains(&place))
                && restart::may_start(service, tasks, now)
                && !update::must_wait(state, service, tasks)
        })
        .collect();
    for node in targets {
        round.create(&service.id, None, Some(node))?;
    }
    Ok(())
}
