//! The changes Raft replicates: one [`Command`] per log entry, and the
//! [`Outcome`] applying it returns.
//!
//! Commands carry every id and every choice that needs randomness, so
//! applying one is deterministic; what the state allocates itself (VNIs,
//! subnets, addresses, published ports) it picks the same way everywhere
//! and reports in the outcome.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use shoal_dataplane::tables::WgKey;

use super::model::{
    Availability, CertRecord, DesiredState, Node, NodeStatus, PortConfig, ServiceSpec, TaskState,
    Trust,
};
use super::policy::TaskHealth;
use super::policy::UpdateStatus;
use crate::ids::{NetworkId, NodeId, ServiceId, TaskId};
use crate::role::Role;

/// A change to the cluster state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// A node joined.
    AddNode(Node),
    /// Change a node's availability, role, status, address or labels.
    UpdateNode {
        /// Which node.
        id: NodeId,
        /// What to change.
        update: NodeUpdate,
    },
    /// Forget a node. Refused for managers (demote first), and without
    /// `force` for nodes that are not down or still have tasks that should
    /// run; with `force` those tasks are orphaned for rescheduling.
    RemoveNode {
        /// Which node.
        id: NodeId,
        /// Remove even if it is up or has tasks (`shoal node rm --force`).
        force: bool,
    },
    /// Create an overlay network.
    CreateNetwork(NetworkSpec),
    /// Remove a network no service or task uses.
    RemoveNetwork {
        /// Which network.
        id: NetworkId,
    },
    /// Create a service.
    CreateService {
        /// Its new id.
        id: ServiceId,
        /// What it should be.
        spec: ServiceSpec,
    },
    /// Replace a service's spec. The spec it replaces becomes the
    /// service's previous spec. A change that replaces tasks (see
    /// [`ServiceSpec::changes_tasks`]) starts a rolling update; other
    /// changes leave the update status as it is.
    UpdateService {
        /// Which service.
        id: ServiceId,
        /// The version the new spec was based on; a stale one is refused
        /// so concurrent updates do not silently overwrite each other.
        version: u64,
        /// The new spec; for a rollback, the previous spec, unchanged.
        spec: ServiceSpec,
        /// Go back to the previous spec (`service rollback`): its tasks
        /// become current again, the previous spec is cleared, and a
        /// rollback starts. Refused without a previous spec, or when
        /// `spec` is not it.
        #[serde(default)]
        rollback: bool,
        /// When, in ms since the UNIX epoch: the start of the update.
        #[serde(default)]
        at_ms: u64,
    },
    /// Record the progress of a service's update (the orchestrator's).
    SetUpdateStatus {
        /// Which service.
        id: ServiceId,
        /// The version the progress is about; a stale one is refused, so
        /// it cannot overwrite a newer update's.
        version: u64,
        /// The progress.
        status: UpdateStatus,
    },
    /// Remove a service; its tasks are told to shut down.
    RemoveService {
        /// Which service.
        id: ServiceId,
    },
    /// Create a task of a service, with addresses on its networks.
    CreateTask {
        /// Its new id.
        id: TaskId,
        /// Its service.
        service: ServiceId,
        /// Its replica slot.
        slot: Option<u64>,
        /// Its node, if already placed.
        node: Option<NodeId>,
        /// When, in ms since the UNIX epoch.
        #[serde(default)]
        at_ms: u64,
    },
    /// Place a task or record its progress.
    UpdateTask {
        /// Which task.
        id: TaskId,
        /// What to change.
        update: TaskUpdate,
    },
    /// Forget a task and free its addresses.
    RemoveTask {
        /// Which task.
        id: TaskId,
    },
    /// Store a cluster secret (e.g. an overlay encryption key).
    SetSecret {
        /// Its name.
        name: String,
        /// Its value.
        value: SecretBytes,
    },
    /// Replace the CAs the nodes trust (`swarm init`, `swarm ca --rotate`
    /// and its end).
    SetTrust(Trust),
    /// Make a new gossip key the newest of the keyring; the one before it
    /// stays (nodes that have not switched yet still send with it), any
    /// older one goes.
    RotateGossipKey {
        /// 32 random bytes.
        key: SecretBytes,
        /// When, in ms since the UNIX epoch.
        at_ms: u64,
    },
    /// Remove a cluster secret.
    RemoveSecret {
        /// Its name.
        name: String,
    },
    /// Record an operator certificate just issued (`swarm ca client-cert`).
    AddOperator(super::Operator),
    /// Refuse an operator certificate from now on, on every manager
    /// (`swarm ca revoke-client`).
    RevokeOperator {
        /// Its id.
        id: String,
        /// When, in ms since the UNIX epoch.
        at_ms: u64,
    },
    /// Several commands applied in order, all or none (`stack deploy`);
    /// a batch may not hold a batch.
    Batch(Vec<Command>),
}

/// Changes to a node; `None` and empty fields leave things as they are.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeUpdate {
    /// New availability.
    pub availability: Option<Availability>,
    /// New role (promote or demote).
    pub role: Option<Role>,
    /// New status, from failure detection.
    pub status: Option<NodeStatus>,
    /// New advertise address.
    pub addr: Option<SocketAddr>,
    /// New gossip address.
    pub gossip_addr: Option<SocketAddr>,
    /// Labels to add or overwrite.
    pub labels_add: BTreeMap<String, String>,
    /// Labels to remove.
    pub labels_rm: BTreeSet<String>,
    /// The certificate just issued to it, which replaces the last one.
    pub cert: Option<CertRecord>,
    /// Its WireGuard public key, when it has a new one (or reports one
    /// for the first time).
    pub tunnel_key: Option<WgKey>,
}

/// A network to create; the state picks what is left empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    /// Its new id.
    pub id: NetworkId,
    /// Its unique name.
    pub name: String,
    /// Its subnet; by default the lowest free /24 of 10.0.0.0/8.
    pub subnet: Option<Ipv4Net>,
    /// Its VXLAN id; by default the lowest free one from 4096.
    pub vni: Option<u32>,
    /// Whether standalone tasks may attach.
    pub attachable: bool,
    /// Whether it is the routing-mesh network.
    pub ingress: bool,
    /// Whether its traffic is encrypted.
    pub encrypted: bool,
    /// Its labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Changes to a task; `None` leaves a field as it is, except that a new
/// state always replaces the error: the error explains the state, so a
/// task that moves on without one has none.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskUpdate {
    /// The node it is placed on.
    pub node: Option<NodeId>,
    /// What it should do; only Running to Shutdown.
    pub desired: Option<DesiredState>,
    /// What it does; only forward.
    pub state: Option<TaskState>,
    /// Why it is in its state.
    pub error: Option<String>,
    /// When the state changed, in ms since the UNIX epoch; without it a
    /// new state keeps the task's last time.
    pub at_ms: Option<u64>,
    /// What its health check says now.
    pub health: Option<TaskHealth>,
}

/// Secret bytes whose `Debug` does not show them.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretBytes(pub Vec<u8>);

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes(<{} bytes redacted>)", self.0.len())
    }
}

/// What applying a command did, with anything the state chose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done; nothing was allocated.
    Applied,
    /// A network was created with these parameters.
    NetworkCreated {
        /// Its VXLAN id.
        vni: u32,
        /// Its subnet.
        subnet: Ipv4Net,
        /// Its gateway.
        gateway: Ipv4Addr,
    },
    /// A service was created or updated.
    ServiceSaved {
        /// Its new version.
        version: u64,
        /// Its VIPs.
        vips: BTreeMap<NetworkId, Ipv4Addr>,
        /// Its ports, with published ports filled in.
        ports: Vec<PortConfig>,
    },
    /// Each command of a batch, in order.
    Batch(Vec<Outcome>),
    /// A task was created with these addresses.
    TaskCreated {
        /// Its address on each network.
        addresses: BTreeMap<NetworkId, Ipv4Addr>,
    },
}
