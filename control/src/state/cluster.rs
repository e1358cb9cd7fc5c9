//! [`ClusterState`]: the maps, read access, and command dispatch.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::command::{Command, Outcome, SecretBytes};
use super::ipam::Ipam;
use super::model::{GossipKey, Network, Node, Service, Task, Trust};
use super::operators::Operator;
use super::{StateError, names};
use crate::ids::{NetworkId, NodeId, ServiceId, TaskId};

/// The replicated cluster state. Fields are private so that only
/// [`ClusterState::apply`] changes them and its invariants hold: ids and
/// names are unique, every address in use is recorded once in its
/// network's [`Ipam`], VNIs and subnets do not collide.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClusterState {
    pub(super) nodes: BTreeMap<NodeId, Node>,
    pub(super) networks: BTreeMap<NetworkId, Network>,
    pub(super) services: BTreeMap<ServiceId, Service>,
    pub(super) tasks: BTreeMap<TaskId, Task>,
    pub(super) ipam: BTreeMap<NetworkId, Ipam>,
    pub(super) secrets: BTreeMap<String, SecretBytes>,
    #[serde(default)]
    pub(super) trust: Trust,
    /// The gossip keyring, newest first: at most [`GOSSIP_KEYS`] keys.
    #[serde(default)]
    pub(super) gossip_keys: Vec<GossipKey>,
    /// The operator certificates issued, by id, revoked ones included.
    #[serde(default)]
    pub(super) operators: BTreeMap<String, Operator>,
}

/// How many gossip keys the keyring keeps: the newest and the one before.
pub const GOSSIP_KEYS: usize = 2;

impl ClusterState {
    /// An empty state.
    pub fn new() -> ClusterState {
        ClusterState::default()
    }

    /// Applies `cmd` entirely, or refuses it and changes nothing.
    pub fn apply(&mut self, cmd: Command) -> Result<Outcome, StateError> {
        match cmd {
            Command::AddNode(node) => self.add_node(node),
            Command::UpdateNode { id, update } => self.update_node(&id, update),
            Command::RemoveNode { id, force } => self.remove_node(&id, force),
            Command::CreateNetwork(spec) => self.create_network(spec),
            Command::RemoveNetwork { id } => self.remove_network(&id),
            Command::CreateService { id, spec } => self.create_service(id, spec),
            Command::UpdateService {
                id,
                version,
                spec,
                rollback,
                at_ms,
            } => {
                if rollback {
                    self.roll_back_service(&id, version, &spec, at_ms)
                } else {
                    self.update_service(&id, version, spec, at_ms)
                }
            }
            Command::SetUpdateStatus {
                id,
                version,
                status,
            } => self.set_update_status(&id, version, status),
            Command::RemoveService { id } => self.remove_service(&id),
            Command::CreateTask {
                id,
                service,
                slot,
                node,
                at_ms,
            } => self.create_task(id, service, slot, node, at_ms),
            Command::UpdateTask { id, update } => self.update_task(&id, update),
            Command::RemoveTask { id } => self.remove_task(&id),
            Command::SetSecret { name, value } => {
                names::check_network_like("secret", &name)?;
                self.secrets.insert(name, value);
                Ok(Outcome::Applied)
            }
            Command::SetTrust(trust) => {
                if trust.root.is_empty() {
                    return Err(StateError::NoRoot);
                }
                self.trust = trust;
                Ok(Outcome::Applied)
            }
            Command::RotateGossipKey { key, at_ms } => self.rotate_gossip_key(key, at_ms),
            Command::RemoveSecret { name } => match self.secrets.remove(&name) {
                Some(_) => Ok(Outcome::Applied),
                None => Err(StateError::SecretNotFound(name)),
            },
            Command::AddOperator(op) => self.add_operator(op),
            Command::RevokeOperator { id, at_ms } => self.revoke_operator(&id, at_ms),
            Command::Batch(cmds) => self.apply_batch(cmds),
        }
    }

    fn rotate_gossip_key(&mut self, key: SecretBytes, at_ms: u64) -> Result<Outcome, StateError> {
        if key.0.len() != 32 {
            return Err(StateError::GossipKeyLength(key.0.len()));
        }
        let id = self.gossip_keys.first().map_or(1, |k| k.id.wrapping_add(1));
        self.gossip_keys.insert(
            0,
            GossipKey {
                id,
                key,
                created_ms: at_ms,
            },
        );
        self.gossip_keys.truncate(GOSSIP_KEYS);
        Ok(Outcome::Applied)
    }

    /// Applies every command of a batch to a copy and keeps the copy only
    /// if all of them applied.
    fn apply_batch(&mut self, cmds: Vec<Command>) -> Result<Outcome, StateError> {
        if cmds.iter().any(|c| matches!(c, Command::Batch(_))) {
            return Err(StateError::NestedBatch);
        }
        let mut next = self.clone();
        let mut outcomes = Vec::with_capacity(cmds.len());
        for (i, cmd) in cmds.into_iter().enumerate() {
            let outcome = next.apply(cmd).map_err(|e| StateError::InBatch {
                index: i,
                source: Box::new(e),
            })?;
            outcomes.push(outcome);
        }
        *self = next;
        Ok(Outcome::Batch(outcomes))
    }

    /// All nodes, by id.
    pub fn nodes(&self) -> &BTreeMap<NodeId, Node> {
        &self.nodes
    }

    /// One node.
    pub fn node(&self, id: &NodeId) -> Option<&Node> {
        self.nodes.get(id)
    }

    /// All networks, by id.
    pub fn networks(&self) -> &BTreeMap<NetworkId, Network> {
        &self.networks
    }

    /// One network.
    pub fn network(&self, id: &NetworkId) -> Option<&Network> {
        self.networks.get(id)
    }

    /// The network called `name`.
    pub fn network_by_name(&self, name: &str) -> Option<&Network> {
        self.networks.values().find(|n| n.name == name)
    }

    /// The routing-mesh network, if there is one.
    pub fn ingress_network(&self) -> Option<&Network> {
        self.networks.values().find(|n| n.ingress)
    }

    /// The address allocations of a network.
    pub fn ipam(&self, id: &NetworkId) -> Option<&Ipam> {
        self.ipam.get(id)
    }

    /// All services, by id.
    pub fn services(&self) -> &BTreeMap<ServiceId, Service> {
        &self.services
    }

    /// One service.
    pub fn service(&self, id: &ServiceId) -> Option<&Service> {
        self.services.get(id)
    }

    /// The service called `name`.
    pub fn service_by_name(&self, name: &str) -> Option<&Service> {
        self.services.values().find(|s| s.spec.name == name)
    }

    /// All tasks, by id.
    pub fn tasks(&self) -> &BTreeMap<TaskId, Task> {
        &self.tasks
    }

    /// One task.
    pub fn task(&self, id: &TaskId) -> Option<&Task> {
        self.tasks.get(id)
    }

    /// A secret's value.
    pub fn secret(&self, name: &str) -> Option<&[u8]> {
        self.secrets.get(name).map(|s| s.0.as_slice())
    }

    /// The CAs the nodes trust.
    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    /// The gossip keyring, newest first; empty until the leader made one.
    pub fn gossip_keys(&self) -> &[GossipKey] {
        &self.gossip_keys
    }

    /// The names of the secrets (never their values).
    pub fn secret_names(&self) -> impl Iterator<Item = &str> {
        self.secrets.keys().map(String::as_str)
    }

    /// The state as a node that is not a manager may see it: everything
    /// but the secrets (the CA key, the join tokens, any other key). What
    /// leaves the managers is this view, never the state itself. The gossip
    /// keyring stays: every member seals its gossip with it.
    pub fn redacted(&self) -> ClusterState {
        ClusterState {
            nodes: self.nodes.clone(),
            networks: self.networks.clone(),
            services: self.services.clone(),
            tasks: self.tasks.clone(),
            ipam: self.ipam.clone(),
            secrets: BTreeMap::new(),
            trust: self.trust.clone(),
            gossip_keys: self.gossip_keys.clone(),
            // Only managers let operators in.
            operators: BTreeMap::new(),
        }
    }

    /// A network's name for messages, or its id if it is gone.
    pub(super) fn network_name(&self, id: &NetworkId) -> String {
        self.networks
            .get(id)
            .map_or_else(|| id.to_string(), |n| n.name.clone())
    }
}
