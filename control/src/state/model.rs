//! The objects of the cluster state: nodes, networks, services, tasks.
//!
//! Plain data with serde, so Raft can replicate and snapshot them and the
//! admin API can show them. Maps are `BTreeMap`s so iteration and
//! serialization are the same on every manager.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use shoal_dataplane::tables::WgKey;

use super::command::SecretBytes;

use super::policy::{HealthCheck, RestartPolicy, TaskHealth, UpdateConfig, UpdateStatus};
use crate::ids::{NetworkId, NodeId, ServiceId, TaskId};
use crate::image::RegistryCredentials;
use crate::role::Role;

/// Whether the scheduler may place tasks on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Availability {
    /// New tasks may be placed.
    #[default]
    Active,
    /// No new tasks; running ones stay.
    Pause,
    /// No tasks; running ones are moved elsewhere.
    Drain,
}

/// Whether a node is alive, as membership last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    /// Not seen yet.
    #[default]
    Unknown,
    /// Alive.
    Ready,
    /// Declared dead by failure detection, or left.
    Down,
}

/// A member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Its id, also its certificate's common name.
    pub id: NodeId,
    /// `HOSTNAME` in listings.
    pub hostname: String,
    /// Manager or worker.
    pub role: Role,
    /// Whether tasks may be placed on it.
    pub availability: Availability,
    /// Alive or not.
    pub status: NodeStatus,
    /// Operator labels, matched by placement constraints.
    pub labels: BTreeMap<String, String>,
    /// Where other nodes reach its cluster API (managers) and its VXLAN
    /// endpoint (the address's IP).
    pub addr: SocketAddr,
    /// Where it receives gossip.
    pub gossip_addr: SocketAddr,
    /// What runs its tasks, e.g. "shoal-process".
    pub engine: String,
    /// The certificate it was last issued: the only one its calls are
    /// accepted with, so issuing a new one revokes the old. `None` in
    /// records from before certificates were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<CertRecord>,
    /// The public half of its WireGuard key, which encrypted networks'
    /// tunnels to it use. `None` in records from before encrypted
    /// networks, until the node reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_key: Option<WgKey>,
}

/// What the state records of a node's current certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertRecord {
    /// Its serial number, lowercase hex.
    pub serial: String,
    /// When it expires, in milliseconds since the Unix epoch.
    pub not_after_ms: u64,
    /// SHA-256 (hex) of the CA certificate that issued it; `None` in
    /// records from before CA rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

/// The CA certificates the cluster's nodes trust. Public: every node,
/// workers included, follows it to know whom to trust.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Trust {
    /// The CA that issues node certificates now, PEM; empty in states
    /// from before CA rotation (nodes then keep the CA they joined with).
    pub root: String,
    /// While `swarm ca --rotate` runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation: Option<Rotation>,
}

/// One key of the keyring that seals gossip datagrams. Every member gets
/// the keyring with the state (over mTLS); managers rotate it through Raft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipKey {
    /// Its number, one more than the key before it; datagrams name it.
    pub id: u32,
    /// 32 random bytes.
    pub key: SecretBytes,
    /// When the leader made it, in ms since the UNIX epoch.
    pub created_ms: u64,
}

/// A CA rotation in progress: until every node holds a certificate of
/// the new CA, the old one stays trusted, and nodes with new certificates
/// present the cross-signed one so that nodes trusting only the old CA
/// accept them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    /// The CA being replaced, PEM.
    pub previous: String,
    /// The new CA's key certified by the old CA, PEM.
    pub cross_signed: String,
}

impl Trust {
    /// The CAs to trust, PEM: the current one, and the previous while a
    /// rotation runs.
    pub fn roots(&self) -> Vec<&str> {
        let mut roots = vec![self.root.as_str()];
        roots.extend(self.rotation.as_ref().map(|r| r.previous.as_str()));
        roots.retain(|r| !r.is_empty());
        roots
    }
}

/// A VXLAN overlay network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// Its id.
    pub id: NetworkId,
    /// Its unique name.
    pub name: String,
    /// Always "overlay" for now; kept so listings read like Swarm's.
    pub driver: String,
    /// The VXLAN network identifier.
    pub vni: u32,
    /// The IPv4 subnet tasks and VIPs get addresses from.
    pub subnet: Ipv4Net,
    /// The first host address of the subnet.
    pub gateway: Ipv4Addr,
    /// Whether standalone tasks may attach.
    pub attachable: bool,
    /// Whether this is the routing-mesh network (at most one).
    pub ingress: bool,
    /// Whether VXLAN traffic is encrypted.
    pub encrypted: bool,
    /// Its labels, e.g. the stack it belongs to.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// How many tasks a service wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceMode {
    /// A fixed number of tasks spread over the nodes.
    Replicated {
        /// How many.
        replicas: u64,
    },
    /// One task on every eligible node.
    Global,
}

impl Default for ServiceMode {
    fn default() -> ServiceMode {
        ServiceMode::Replicated { replicas: 1 }
    }
}

/// A transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// Where a published port answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishMode {
    /// On every node, through the routing mesh.
    #[default]
    Ingress,
    /// Only on nodes that run a task, straight to it.
    Host,
}

/// A port a service publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortConfig {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The port the task listens on.
    pub target: u16,
    /// The port clients connect to; for ingress ports left empty the state
    /// picks one from 30000-32767, as Swarm does.
    pub published: Option<u16>,
    /// Routing mesh or host.
    pub mode: PublishMode,
}

/// How clients of a service find its tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointMode {
    /// One virtual IP per network, load-balanced to the tasks.
    #[default]
    Vip,
    /// DNS round robin over the task addresses; no VIP.
    Dnsrr,
}

/// How the scheduler should prefer nodes, beyond the constraints.
/// Docker's only strategy, `spread`, is the only one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlacementPreference {
    /// Spread tasks evenly over the values of a node label, written
    /// `node.labels.KEY` (as the user wrote it); nodes without the label
    /// are one more group.
    Spread(String),
}

impl fmt::Display for PlacementPreference {
    /// `spread=node.labels.zone`, as `--placement-pref` takes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlacementPreference::Spread(over) => write!(f, "spread={over}"),
        }
    }
}

/// What an operator asks for when creating or updating a service.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// Unique name.
    pub name: String,
    /// Replicated or global.
    pub mode: ServiceMode,
    /// The image its tasks run, pinned to a digest by the manager that
    /// created or updated it (`nginx:1.27@sha256:...`) when the registry
    /// answered; `None` runs [`command`](Self::command) on the node itself
    /// (the host-command executor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// What the image is pulled with (`--with-registry-auth`); `None`
    /// pulls anonymously. Kept here because every node that runs a task
    /// pulls; listings show only the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_auth: Option<RegistryCredentials>,
    /// For an image: the program that replaces its ENTRYPOINT
    /// (`--entrypoint`, compose `entrypoint:`), which also drops its CMD
    /// as docker does; `None` keeps both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// The task's command and arguments; for an image, the arguments that
    /// replace the image's CMD (empty keeps it).
    pub command: Vec<String>,
    /// Environment variables, `K=V`.
    pub env: Vec<String>,
    /// Overlay networks the tasks attach to.
    pub networks: Vec<NetworkId>,
    /// Published ports.
    pub ports: Vec<PortConfig>,
    /// VIP or DNS round robin.
    pub endpoint_mode: EndpointMode,
    /// Placement constraints, e.g. `node.labels.zone==a`.
    pub constraints: Vec<String>,
    /// The most live tasks one node may run (`--max-replicas`); 0 means
    /// no limit.
    #[serde(default)]
    pub max_replicas: u64,
    /// Placement preferences (`--placement-pref spread=node.labels.zone`),
    /// highest first: new tasks spread evenly over the values of the
    /// first, then over those of the next within each value, and so on.
    /// As in docker, changing them alone leaves running tasks where they
    /// are (`--force` spreads them again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferences: Vec<PlacementPreference>,
    /// Whether and when tasks that ended by themselves are replaced.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// How tasks are replaced when the spec changes.
    #[serde(default)]
    pub update: UpdateConfig,
    /// How tasks are replaced when rolling back.
    #[serde(default)]
    pub rollback: UpdateConfig,
    /// Its tasks' health check, if any.
    #[serde(default)]
    pub healthcheck: Option<HealthCheck>,
    /// Its labels, e.g. the stack it belongs to.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Other names it answers to in DNS on its networks (a stack's
    /// services find each other by their short names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// The signal that asks a task to stop (`--stop-signal`), as
    /// [`Signal::name`](crate::signal::Signal::name) writes it; `None`: the
    /// image's STOPSIGNAL, else SIGTERM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// How long a task has to stop before SIGKILL
    /// (`--stop-grace-period`); `None`: the node's default, docker's 10 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_ms: Option<u64>,
    /// Bumped by `service update --force`: replaces the tasks even when
    /// nothing else changed (Docker's `ForceUpdate`).
    #[serde(default)]
    pub force_update: u64,
}

impl ServiceSpec {
    /// Whether tasks made from `self` differ from tasks made from `other`,
    /// so that changing one into the other replaces the tasks. Replicas,
    /// mode, name, max replicas and the update configurations only change
    /// how many tasks there are and how they are replaced; registry
    /// credentials only how the image is pulled next (as docker).
    pub fn changes_tasks(&self, other: &ServiceSpec) -> bool {
        self.image != other.image
            || self.entrypoint != other.entrypoint
            || self.command != other.command
            || self.env != other.env
            || self.networks != other.networks
            || self.ports != other.ports
            || self.endpoint_mode != other.endpoint_mode
            || self.constraints != other.constraints
            || self.restart != other.restart
            || self.healthcheck != other.healthcheck
            || self.stop_signal != other.stop_signal
            || self.stop_grace_ms != other.stop_grace_ms
            || self.force_update != other.force_update
    }
}

/// A service as the state holds it: the spec plus what the state
/// allocated for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// Its id.
    pub id: ServiceId,
    /// What was asked for; ingress ports have `published` filled in.
    pub spec: ServiceSpec,
    /// Its virtual IP on each network (and on the ingress network when it
    /// publishes ingress ports); empty in DNS round-robin mode.
    pub vips: BTreeMap<NetworkId, Ipv4Addr>,
    /// Bumped by every update; updates name the version they were based on.
    pub version: u64,
    /// The version of the last change that replaces tasks (see
    /// [`ServiceSpec::changes_tasks`]); tasks made for another one are
    /// outdated. A rollback puts back the previous one.
    #[serde(default)]
    pub spec_version: u64,
    /// The spec before the last update, which a rollback restores; a
    /// rollback clears it.
    #[serde(default)]
    pub previous_spec: Option<ServiceSpec>,
    /// The `spec_version` that goes with `previous_spec`.
    #[serde(default)]
    pub previous_spec_version: u64,
    /// The progress of the last update that replaced tasks, if any.
    #[serde(default)]
    pub update_status: Option<UpdateStatus>,
}

/// What a task should be doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DesiredState {
    /// Keep it running.
    #[default]
    Running,
    /// Stop it.
    Shutdown,
}

impl fmt::Display for DesiredState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DesiredState::Running => "running",
            DesiredState::Shutdown => "shutdown",
        })
    }
}

/// What a task is doing. The order is Swarm's: a task only moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Created by an orchestrator.
    #[default]
    New,
    /// Waiting for the scheduler.
    Pending,
    /// Placed on a node.
    Assigned,
    /// Being started by the node's agent.
    Starting,
    /// Running.
    Running,
    /// Exited with status 0.
    Complete,
    /// Stopped on request.
    Shutdown,
    /// Exited with an error or could not start.
    Failed,
    /// The node refused it.
    Rejected,
    /// Its node went away.
    Orphaned,
}

impl TaskState {
    /// True once the task has stopped for good.
    pub fn is_terminal(self) -> bool {
        self >= TaskState::Complete
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TaskState::New => "new",
            TaskState::Pending => "pending",
            TaskState::Assigned => "assigned",
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Complete => "complete",
            TaskState::Shutdown => "shutdown",
            TaskState::Failed => "failed",
            TaskState::Rejected => "rejected",
            TaskState::Orphaned => "orphaned",
        })
    }
}

/// One instance of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Its id.
    pub id: TaskId,
    /// The service it belongs to.
    pub service: ServiceId,
    /// Its replica number, for replicated services.
    pub slot: Option<u64>,
    /// The node it is placed on, once scheduled.
    pub node: Option<NodeId>,
    /// What it should be doing.
    pub desired: DesiredState,
    /// What it is doing.
    pub state: TaskState,
    /// Its address on each of the service's networks.
    pub addresses: BTreeMap<NetworkId, Ipv4Addr>,
    /// Why it is in its state: why it failed, was rejected or waits.
    pub error: Option<String>,
    /// The service's `spec_version` it was made for.
    #[serde(default)]
    pub spec_version: u64,
    /// The image it runs, pinned as its service's spec had it when the
    /// task was made (`None` for a host command).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// When it was created, in ms since the UNIX epoch.
    #[serde(default)]
    pub created_ms: u64,
    /// When its state last changed (as reported), in ms since the UNIX
    /// epoch.
    #[serde(default)]
    pub status_ms: u64,
    /// When it was reported running, if it was.
    #[serde(default)]
    pub started_ms: Option<u64>,
    /// True if it ended while still meant to run (it completed, failed or
    /// was rejected), rather than being stopped on request or lost with
    /// its node: what restart policies and rolling updates count.
    #[serde(default)]
    pub ended_on_its_own: bool,
    /// What its health check last said; `None` before the first verdict
    /// or without a check.
    #[serde(default)]
    pub health: Option<TaskHealth>,
}

impl Task {
    /// True while the task holds its place (its slot, its node's share):
    /// meant to run and not finished. The scheduler, the orchestrators and
    /// node removal all count tasks by this rule.
    pub fn is_live(&self) -> bool {
        self.desired == DesiredState::Running && !self.state.is_terminal()
    }
}
