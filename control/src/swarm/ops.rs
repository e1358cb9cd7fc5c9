//! The swarm operations' arguments and answers, as the local admin API
//! carries them between the CLI and the daemon.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::state::Availability;
use crate::{NodeId, Role};

/// `shoal swarm init`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InitOptions {
    /// The address other nodes reach this one at (default: the daemon's).
    pub advertise_addr: Option<IpAddr>,
    /// How long node certificates live (default 90 days).
    #[serde(default)]
    pub cert_expiry: Option<Duration>,
}

/// `shoal swarm update`: the cluster-wide settings to change.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SwarmUpdate {
    /// How long node certificates live from their next renewal on.
    pub cert_expiry: Option<Duration>,
    /// Make a new gossip key now, which rotates encrypted networks'
    /// preshared key too (the leader also does every 12 hours).
    pub rotate_gossip_key: bool,
}

/// What `swarm init` made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitReply {
    /// This node's id.
    pub node_id: NodeId,
    /// Where joining nodes call.
    pub addr: SocketAddr,
    /// The worker join token.
    pub worker_token: String,
}

/// `shoal swarm join`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinOptions {
    /// The join token.
    pub token: String,
    /// A manager's cluster API address.
    pub remote: SocketAddr,
    /// The address other nodes reach this one at (default: the daemon's).
    pub advertise_addr: Option<IpAddr>,
}

/// What `swarm join` did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinReply {
    /// This node's new id.
    pub node_id: NodeId,
    /// The role the token granted.
    pub role: Role,
    /// Whether the node came back with its id, after its certificate
    /// expired while it was down.
    #[serde(default)]
    pub rejoined: bool,
}

/// `shoal swarm join-token`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenOptions {
    /// Which token.
    pub role: Role,
    /// Replace it with a fresh one first.
    pub rotate: bool,
}

/// `shoal swarm ca`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct CaOptions {
    /// Replace the cluster's CA with a new one.
    pub rotate: bool,
}

/// The cluster's CA and how far a rotation has got.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaReply {
    /// The CA that issues node certificates now, PEM.
    pub root_pem: String,
    /// Its SHA-256, hex.
    pub digest: String,
    /// True while nodes still hold certificates of the previous CA.
    pub rotating: bool,
    /// How many nodes the swarm has.
    pub nodes: usize,
    /// How many of them hold a certificate of this CA.
    pub renewed: usize,
    /// The hostnames of the others.
    pub pending: Vec<String>,
}

/// A join token and where to use it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenReply {
    /// Which token.
    pub role: Role,
    /// The token.
    pub token: String,
    /// This manager's cluster API address.
    pub addr: SocketAddr,
}

/// `shoal swarm leave`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LeaveOptions {
    /// Leave even if that breaks quorum or erases the swarm.
    pub force: bool,
}

/// `shoal node update`, `promote`, `demote`: what an operator may change.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeChange {
    /// New availability.
    pub availability: Option<Availability>,
    /// New role.
    pub role: Option<Role>,
    /// Labels to add or overwrite.
    pub labels_add: BTreeMap<String, String>,
    /// Labels to remove.
    pub labels_rm: BTreeSet<String>,
}
