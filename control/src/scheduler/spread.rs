//! Spreading: which of the nodes that passed the filters gets the task.
//!
//! [`Load`] counts, per node, the live tasks of the service being
//! scheduled and of all services, read once from the state and bumped as
//! each placement of a call is made. The node with the fewest of the
//! service's tasks wins; ties go to the fewest tasks overall, then to the
//! lowest node id, so the choice is the same on every manager.

use std::collections::BTreeMap;

use crate::ids::{NodeId, ServiceId};
use crate::state::ClusterState;

/// Live tasks per node: of one service, and of all services.
pub(super) struct Load {
    service: BTreeMap<NodeId, u64>,
    all: BTreeMap<NodeId, u64>,
}

impl Load {
    /// Counts the live tasks in `state`, singling out `service`'s.
    pub(super) fn new(state: &ClusterState, service: &ServiceId) -> Load {
        let mut load = Load {
            service: BTreeMap::new(),
            all: BTreeMap::new(),
        };
        for task in state.tasks().values().filter(|t| t.is_live()) {
            if let Some(node) = &task.node {
                *load.all.entry(node.clone()).or_default() += 1;
                if task.service == *service {
                    *load.service.entry(node.clone()).or_default() += 1;
                }
            }
        }
        load
    }

    /// The service's live tasks on `node`.
    pub(super) fn of_service(&self, node: &NodeId) -> u64 {
        self.service.get(node).copied().unwrap_or(0)
    }

    /// Records a task of the service placed on `node`.
    pub(super) fn add(&mut self, node: &NodeId) {
        *self.service.entry(node.clone()).or_default() += 1;
        *self.all.entry(node.clone()).or_default() += 1;
    }

    /// The spread order: the least loaded node first, by id among equals.
    pub(super) fn rank<'a>(&self, node: &'a NodeId) -> (u64, u64, &'a NodeId) {
        let all = self.all.get(node).copied().unwrap_or(0);
        (self.of_service(node), all, node)
    }
}
