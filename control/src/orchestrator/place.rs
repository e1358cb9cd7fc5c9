//! Places: what a task holds for its service, a replica slot of a
//! replicated service or a node of a global one, and the tasks each place
//! has had, which the restart policy, rolling updates and garbage
//! collection read.
//!
//! The state and a service enter; its places that still exist leave, each
//! with its tasks oldest first: by creation time, then by id.

use std::collections::BTreeMap;

use crate::ids::NodeId;
use crate::state::{ClusterState, Service, ServiceMode, Task};

/// A place a task holds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Place {
    /// A replica slot, `1..=replicas`.
    Slot(u64),
    /// A node that is a member, for a global service (tasks with no slot).
    Node(NodeId),
}

/// The place `task` holds in `service` as it is now, if any: none for a
/// slot above the replica count, a node that was removed, or a task left
/// from the other mode.
pub(super) fn place_of(state: &ClusterState, service: &Service, task: &Task) -> Option<Place> {
    match service.spec.mode {
        ServiceMode::Replicated { replicas } => task
            .slot
            .filter(|slot| (1..=replicas).contains(slot))
            .map(Place::Slot),
        ServiceMode::Global => task
            .node
            .clone()
            .filter(|node| task.slot.is_none() && state.node(node).is_some())
            .map(Place::Node),
    }
}

/// The tasks of `service` in each place that has had any, oldest first.
pub(super) fn by_place<'s>(
    state: &'s ClusterState,
    service: &Service,
) -> BTreeMap<Place, Vec<&'s Task>> {
    let mut places: BTreeMap<Place, Vec<&Task>> = BTreeMap::new();
    for task in state.tasks().values().filter(|t| t.service == service.id) {
        if let Some(place) = place_of(state, service, task) {
            places.entry(place).or_default().push(task);
        }
    }
    for tasks in places.values_mut() {
        tasks.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
    }
    places
}

/// True if `task` was made for an older (or, after a rollback, a newer)
/// spec than the one `service` has now.
pub(super) fn is_outdated(service: &Service, task: &Task) -> bool {
    task.spec_version != service.spec_version
}
