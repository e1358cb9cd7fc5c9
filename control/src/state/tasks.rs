//! Task commands: creation (with an address on each of the service's
//! networks), progress updates, removal (which frees the addresses).
//!
//! A task's state only moves forward, in Swarm's order, and a task told to
//! shut down is never told to run again: a late or duplicated report from
//! an agent cannot undo what an orchestrator already decided. Times come
//! with the commands: a task is made for its service's current
//! `spec_version` at its creation time, and each change of state records
//! its time, when it started running, and whether it ended on its own.

use std::collections::BTreeMap;

use super::command::{Outcome, TaskUpdate};
use super::model::{DesiredState, Task, TaskState};
use super::{ClusterState, StateError};
use crate::ids::{NodeId, ServiceId, TaskId};

impl ClusterState {
    pub(super) fn create_task(
        &mut self,
        id: TaskId,
        service: ServiceId,
        slot: Option<u64>,
        node: Option<NodeId>,
        at_ms: u64,
    ) -> Result<Outcome, StateError> {
        if self.tasks.contains_key(&id) {
            return Err(StateError::IdExists {
                kind: "task",
                id: id.to_string(),
            });
        }
        let svc = self
            .services
            .get(&service)
            .ok_or_else(|| StateError::ServiceNotFound(service.to_string()))?;
        if let Some(node) = &node
            && !self.nodes.contains_key(node)
        {
            return Err(StateError::NodeNotFound(node.to_string()));
        }
        let mut addresses = BTreeMap::new();
        for network in self.attached_networks(&svc.spec)? {
            let ipam = self
                .ipam
                .get(&network)
                .ok_or_else(|| StateError::NetworkNotFound(network.to_string()))?;
            let addr = ipam
                .next_task_address()
                .ok_or_else(|| StateError::NetworkFull {
                    network: self.network_name(&network),
                    subnet: ipam.subnet(),
                })?;
            addresses.insert(network, addr);
        }

        for (network, addr) in &addresses {
            if let Some(ipam) = self.ipam.get_mut(network) {
                ipam.claim(*addr);
            }
        }
        let spec_version = svc.spec_version;
        let image = svc.spec.image.clone();
        let state = if node.is_some() {
            TaskState::Assigned
        } else {
            TaskState::New
        };
        self.tasks.insert(
            id.clone(),
            Task {
                id,
                service,
                slot,
                node,
                desired: DesiredState::Running,
                state,
                addresses: addresses.clone(),
                error: None,
                spec_version,
                image,
                created_ms: at_ms,
                status_ms: at_ms,
                started_ms: None,
                ended_on_its_own: false,
                health: None,
            },
        );
        Ok(Outcome::TaskCreated { addresses })
    }

    pub(super) fn update_task(
        &mut self,
        id: &TaskId,
        update: TaskUpdate,
    ) -> Result<Outcome, StateError> {
        let task = self
            .tasks
            .get(id)
            .ok_or_else(|| StateError::TaskNotFound(id.to_string()))?;
        if let Some(node) = &update.node
            && !self.nodes.contains_key(node)
        {
            return Err(StateError::NodeNotFound(node.to_string()));
        }
        if let Some(to) = update.state
            && to < task.state
        {
            return Err(StateError::TaskStateBackwards {
                task: id.to_string(),
                from: task.state,
                to,
            });
        }
        if update.desired == Some(DesiredState::Running) && task.desired == DesiredState::Shutdown {
            return Err(StateError::TaskRevived(id.to_string()));
        }

        let task = self
            .tasks
            .get_mut(id)
            .ok_or_else(|| StateError::TaskNotFound(id.to_string()))?;
        if let Some(node) = update.node {
            task.node = Some(node);
        }
        if let Some(desired) = update.desired {
            task.desired = desired;
        }
        if let Some(health) = update.health {
            task.health = Some(health);
        }
        match update.state {
            Some(state) if state != task.state => {
                let ended = state.is_terminal() && !task.state.is_terminal();
                task.state = state;
                task.error = update.error;
                task.status_ms = update.at_ms.unwrap_or(task.status_ms);
                if state == TaskState::Running {
                    task.started_ms = Some(task.status_ms);
                }
                if ended {
                    task.ended_on_its_own =
                        state != TaskState::Orphaned && task.desired == DesiredState::Running;
                }
            }
            _ => {
                if update.error.is_some() {
                    task.error = update.error;
                }
            }
        }
        Ok(Outcome::Applied)
    }

    pub(super) fn remove_task(&mut self, id: &TaskId) -> Result<Outcome, StateError> {
        let task = self
            .tasks
            .remove(id)
            .ok_or_else(|| StateError::TaskNotFound(id.to_string()))?;
        for (network, addr) in &task.addresses {
            if let Some(ipam) = self.ipam.get_mut(network) {
                ipam.release(*addr);
            }
        }
        Ok(Outcome::Applied)
    }
}
