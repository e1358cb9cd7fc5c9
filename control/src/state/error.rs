//! Why a command was refused. A refused command changed nothing.

use ipnet::Ipv4Net;
use thiserror::Error;

use super::model::{NodeStatus, Protocol, TaskState};

/// Why a [`Command`](super::Command) was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StateError {
    /// A node with this id is already a member.
    #[error("node `{0}` is already a member; remove it first with `shoal node rm {0}`")]
    NodeExists(String),
    /// No such node.
    #[error("node `{0}` not found; `shoal node ls` lists nodes")]
    NodeNotFound(String),
    /// Managers are removed from Raft by demotion before they leave the state.
    #[error(
        "node `{0}` is a manager; demote it first with `shoal node demote {0}`, then remove it"
    )]
    RemoveManager(String),
    /// The node is still up.
    #[error(
        "node `{id}` is {status:?}, not down; run `shoal swarm leave` on it first, or remove it \
         with `shoal node rm --force {id}`"
    )]
    NodeNotDown {
        /// The node.
        id: String,
        /// Its status.
        status: NodeStatus,
    },
    /// The node still has tasks that should run.
    #[error(
        "node `{id}` still has {count} task(s) that should be running; drain it with `shoal node \
         update --availability drain {id}` and wait, or remove it with `shoal node rm --force {id}`"
    )]
    NodeHasTasks {
        /// The node.
        id: String,
        /// How many tasks.
        count: usize,
    },
    /// Demoting the only manager would leave nobody to hold the state.
    #[error(
        "cannot demote node `{0}`: it is the last manager; promote another node first with \
         `shoal node promote NODE`"
    )]
    LastManager(String),
    /// A label is both added and removed, or has an empty key.
    #[error("label `{0}` is invalid here: keys must be non-empty and not both added and removed")]
    Label(String),
    /// A name does not follow the rules for its kind.
    #[error("{kind} name `{name}` is invalid: {rule}")]
    Name {
        /// "network", "service" or "secret".
        kind: &'static str,
        /// The rejected name (cut to 80 characters).
        name: String,
        /// What a valid name looks like.
        rule: &'static str,
    },
    /// An object with this id already exists.
    #[error("a {kind} with id `{id}` already exists; generate a new id")]
    IdExists {
        /// "network", "service" or "task".
        kind: &'static str,
        /// The id.
        id: String,
    },
    /// A network with this name exists.
    #[error(
        "a network named `{0}` already exists; pick another name, or remove it with `shoal \
         network rm {0}`"
    )]
    NetworkExists(String),
    /// No such network.
    #[error("network `{0}` not found; `shoal network ls` lists networks")]
    NetworkNotFound(String),
    /// The subnet has bits set past its prefix.
    #[error("subnet `{given}` has host bits set; did you mean `{suggested}`?")]
    SubnetHostBits {
        /// What was given.
        given: Ipv4Net,
        /// The same prefix with host bits cleared.
        suggested: Ipv4Net,
    },
    /// The subnet cannot hold a gateway and a task.
    #[error("subnet `{0}` is too small; a network needs at least a /30")]
    SubnetTooSmall(Ipv4Net),
    /// The subnet overlaps another network's.
    #[error(
        "subnet `{subnet}` overlaps network `{other}` ({other_subnet}); pick a subnet outside it"
    )]
    SubnetOverlap {
        /// What was asked for.
        subnet: Ipv4Net,
        /// The other network's name.
        other: String,
        /// The other network's subnet.
        other_subnet: Ipv4Net,
    },
    /// No /24 of the default pool is free.
    #[error(
        "the default address pool 10.0.0.0/8 has no free /24 left; give the network a subnet \
         outside it with --subnet"
    )]
    PoolExhausted,
    /// The VNI is out of VXLAN's range.
    #[error("VNI {0} is out of range; VXLAN ids go from 1 to 16777215")]
    VniOutOfRange(u32),
    /// The VNI is taken.
    #[error("VNI {vni} is already used by network `{network}`; pick another or leave it empty")]
    VniInUse {
        /// The VNI.
        vni: u32,
        /// The network that has it.
        network: String,
    },
    /// All automatic VNIs are taken.
    #[error("no free VNI is left from 4096 up; remove unused networks")]
    VniExhausted,
    /// A second ingress network.
    #[error(
        "the cluster already has an ingress network `{0}`; remove it first with `shoal network \
         rm {0}`"
    )]
    IngressExists(String),
    /// The network is used by a service.
    #[error(
        "network `{network}` is used by service `{service}`; remove the service or update it off \
         the network first"
    )]
    NetworkInUse {
        /// The network.
        network: String,
        /// A service using it.
        service: String,
    },
    /// A task still holds an address on the network.
    #[error(
        "network `{network}` still has an address held by task `{task}`; wait until the task is \
         cleaned up, then retry"
    )]
    NetworkHasTasks {
        /// The network.
        network: String,
        /// A task holding an address.
        task: String,
    },
    /// No address is left on the network.
    #[error(
        "network `{network}` ({subnet}) has no free address; create a larger one with --subnet"
    )]
    NetworkFull {
        /// The network.
        network: String,
        /// Its subnet.
        subnet: Ipv4Net,
    },
    /// A service with this name exists.
    #[error(
        "a service named `{0}` already exists; pick another name, or change it with `shoal \
         service update {0}`"
    )]
    ServiceExists(String),
    /// No such service.
    #[error("service `{0}` not found; `shoal service ls` lists services")]
    ServiceNotFound(String),
    /// The spec names a network twice.
    #[error("network `{0}` is listed twice in the service's networks; list it once")]
    NetworkListedTwice(String),
    /// Services reach the ingress network through published ports only.
    #[error(
        "service cannot attach to the ingress network `{0}` explicitly; publish a port in \
         ingress mode instead (-p PUBLISHED:TARGET)"
    )]
    IngressAttach(String),
    /// A port number is zero.
    #[error("port 0 is not a port; use 1 to 65535")]
    PortZero,
    /// The published port is used by another service.
    #[error(
        "published port {port}/{protocol} is already used by service `{service}`; pick another \
         with -p OTHER:TARGET, or remove `{service}`"
    )]
    PortInUse {
        /// The port.
        port: u16,
        /// Its protocol.
        protocol: Protocol,
        /// The service that has it (maybe this one, when listed twice).
        service: String,
    },
    /// No dynamic published port is free.
    #[error(
        "no free published port is left in 30000-32767; give one explicitly with -p \
         PUBLISHED:TARGET"
    )]
    PortsExhausted,
    /// Ingress ports need the routing-mesh network.
    #[error(
        "the service publishes port {0} in ingress mode, but the cluster has no ingress network; \
         create one (`shoal network create --ingress`), or publish with mode=host"
    )]
    NoIngressNetwork(u16),
    /// Ingress ports need a VIP.
    #[error(
        "ports published in ingress mode need endpoint mode vip; use --endpoint-mode vip, or \
         publish with mode=host"
    )]
    DnsrrWithIngress,
    /// The update was based on an old version.
    #[error(
        "service `{service}` changed since you read it (version {current}, you had {given}); \
         inspect it again and retry"
    )]
    StaleVersion {
        /// The service.
        service: String,
        /// Its current version.
        current: u64,
        /// The version the update named.
        given: u64,
    },
    /// A rollback of a service that has no previous spec.
    #[error(
        "service `{0}` has no previous spec to roll back to; it was never updated, or was already \
         rolled back"
    )]
    NoPreviousSpec(String),
    /// A rollback that does not name the previous spec.
    #[error(
        "a rollback of service `{0}` must carry its previous spec unchanged; inspect it again and \
         retry"
    )]
    RollbackSpec(String),
    /// No such task.
    #[error("task `{0}` not found; `shoal service ps` lists tasks")]
    TaskNotFound(String),
    /// Task states only move forward.
    #[error("task `{task}` cannot go from {from} back to {to}; task states only move forward")]
    TaskStateBackwards {
        /// The task.
        task: String,
        /// Its state.
        from: TaskState,
        /// The state asked for.
        to: TaskState,
    },
    /// A task told to shut down cannot be told to run again.
    #[error("task `{0}` was told to shut down and cannot run again; create a new task instead")]
    TaskRevived(String),
    /// No such secret.
    #[error("secret `{0}` not found")]
    SecretNotFound(String),
    /// A trust without a CA.
    #[error("the cluster's trust must name the CA that issues certificates")]
    NoRoot,
    /// A gossip key of the wrong length.
    #[error("a gossip key is 32 bytes, not {0}")]
    GossipKeyLength(usize),
    /// A node's WireGuard public key is all zeros, which no private key
    /// yields.
    #[error(
        "node `{0}` reports an all-zero tunnel key; its `tunnel.key` in the state directory is \
         damaged: remove that file and restart the daemon to make a new one"
    )]
    ZeroTunnelKey(String),
    /// An operator id issued twice.
    #[error("operator certificate `{0}` exists already; issue again for a fresh id")]
    OperatorExists(String),
    /// No such operator certificate.
    #[error(
        "no operator certificate `{0}` was issued in this swarm; its id is what `shoal swarm ca \
         client-cert` printed"
    )]
    OperatorNotFound(String),
    /// A batch holds a batch.
    #[error("a batch of commands may not hold another batch")]
    NestedBatch,
    /// A command of a batch was refused, so the batch was.
    #[error("{source}")]
    InBatch {
        /// Which command, from 0.
        index: usize,
        /// Why.
        source: Box<StateError>,
    },
}
