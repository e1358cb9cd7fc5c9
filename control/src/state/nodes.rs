//! Node commands: join, update (availability, role, status, labels),
//! removal.
//!
//! Removal policy, as Swarm's `docker node rm`: a manager is never removed
//! (it must be demoted first, so Raft membership shrinks before the state
//! forgets it); a worker must be down and have no task that should still
//! run, unless forced, in which case its unfinished tasks are marked
//! orphaned and told to shut down so orchestrators replace them.

use shoal_dataplane::tables::WgKey;

use super::command::{NodeUpdate, Outcome};
use super::model::{DesiredState, Node, NodeStatus, TaskState};
use super::{ClusterState, StateError};
use crate::ids::NodeId;
use crate::role::Role;

/// A public key of all zeros is what a broken key file or a bug gives;
/// a tunnel to it would never come up.
fn check_tunnel_key(id: &NodeId, key: Option<&WgKey>) -> Result<(), StateError> {
    match key {
        Some(k) if k.0 == [0; 32] => Err(StateError::ZeroTunnelKey(id.to_string())),
        _ => Ok(()),
    }
}

impl ClusterState {
    pub(super) fn add_node(&mut self, node: Node) -> Result<Outcome, StateError> {
        if self.nodes.contains_key(&node.id) {
            return Err(StateError::NodeExists(node.id.to_string()));
        }
        if let Some(key) = node.labels.keys().find(|k| k.is_empty()) {
            return Err(StateError::Label(key.clone()));
        }
        check_tunnel_key(&node.id, node.tunnel_key.as_ref())?;
        self.nodes.insert(node.id.clone(), node);
        Ok(Outcome::Applied)
    }

    pub(super) fn update_node(
        &mut self,
        id: &NodeId,
        update: NodeUpdate,
    ) -> Result<Outcome, StateError> {
        let node = self
            .nodes
            .get(id)
            .ok_or_else(|| StateError::NodeNotFound(id.to_string()))?;
        if let Some(key) = update
            .labels_add
            .keys()
            .find(|k| k.is_empty() || update.labels_rm.contains(*k))
        {
            return Err(StateError::Label(key.clone()));
        }
        check_tunnel_key(id, update.tunnel_key.as_ref())?;
        if node.role == Role::Manager && update.role == Some(Role::Worker) {
            let managers = self
                .nodes
                .values()
                .filter(|n| n.role == Role::Manager)
                .count();
            if managers <= 1 {
                return Err(StateError::LastManager(id.to_string()));
            }
        }

        let node = self
            .nodes
            .get_mut(id)
            .ok_or_else(|| StateError::NodeNotFound(id.to_string()))?;
        if let Some(a) = update.availability {
            node.availability = a;
        }
        if let Some(r) = update.role {
            node.role = r;
        }
        if let Some(s) = update.status {
            node.status = s;
        }
        if let Some(addr) = update.addr {
            node.addr = addr;
        }
        if let Some(addr) = update.gossip_addr {
            node.gossip_addr = addr;
        }
        for key in &update.labels_rm {
            node.labels.remove(key);
        }
        node.labels.extend(update.labels_add);
        if let Some(cert) = update.cert {
            node.cert = Some(cert);
        }
        if let Some(key) = update.tunnel_key {
            node.tunnel_key = Some(key);
        }
        Ok(Outcome::Applied)
    }

    pub(super) fn remove_node(&mut self, id: &NodeId, force: bool) -> Result<Outcome, StateError> {
        let node = self
            .nodes
            .get(id)
            .ok_or_else(|| StateError::NodeNotFound(id.to_string()))?;
        if node.role == Role::Manager {
            return Err(StateError::RemoveManager(id.to_string()));
        }
        if !force {
            if node.status != NodeStatus::Down {
                return Err(StateError::NodeNotDown {
                    id: id.to_string(),
                    status: node.status,
                });
            }
            let count = self
                .tasks
                .values()
                .filter(|t| t.node.as_ref() == Some(id) && t.is_live())
                .count();
            if count > 0 {
                return Err(StateError::NodeHasTasks {
                    id: id.to_string(),
                    count,
                });
            }
        }

        for task in self.tasks.values_mut() {
            if task.node.as_ref() == Some(id) && !task.state.is_terminal() {
                task.state = TaskState::Orphaned;
                task.desired = DesiredState::Shutdown;
            }
        }
        self.nodes.remove(id);
        Ok(Outcome::Applied)
    }
}
