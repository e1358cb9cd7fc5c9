//! What `node ls`, `node inspect` and `info` show: the cluster state joined
//! with what only the running node knows (who leads Raft, who gossip sees
//! alive), as plain serde values for the admin API.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use shoal_dataplane::tables::WgKey;

use crate::state::{Availability, ClusterState, Node, NodeStatus};
use crate::{NodeId, Role};

/// A manager's standing in Raft, as `docker node ls` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ManagerStatus {
    /// It leads.
    Leader,
    /// A voter this node can reach.
    Reachable,
    /// A voter that is down, partitioned, or not yet (or no longer) voting.
    Unreachable,
}

/// One node as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    /// Its id.
    pub id: NodeId,
    /// Its hostname.
    pub hostname: String,
    /// Manager or worker.
    pub role: Role,
    /// Ready, Down or Unknown.
    pub status: NodeStatus,
    /// Active, Pause or Drain.
    pub availability: Availability,
    /// For managers: Leader, Reachable or Unreachable.
    pub manager_status: Option<ManagerStatus>,
    /// Its cluster API address.
    pub addr: SocketAddr,
    /// Its gossip address.
    pub gossip_addr: SocketAddr,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// What runs its tasks.
    pub engine: String,
    /// When its current certificate expires (Unix seconds), as recorded
    /// when it was issued.
    #[serde(default)]
    pub cert_expiry: Option<u64>,
    /// True for the node the command ran on (`*` in listings).
    pub is_self: bool,
}

/// What the running node knows beyond the replicated state.
#[derive(Debug, Clone, Default)]
pub struct Liveness {
    /// This node.
    pub me: Option<NodeId>,
    /// The Raft leader.
    pub leader: Option<NodeId>,
    /// The Raft voters.
    pub voters: BTreeSet<NodeId>,
    /// Nodes gossip sees alive (this one included).
    pub alive: BTreeSet<NodeId>,
}

impl NodeView {
    /// The view of `node`.
    pub fn of(node: &Node, live: &Liveness) -> NodeView {
        let manager_status = (node.role == Role::Manager).then(|| {
            if live.leader.as_ref() == Some(&node.id) {
                ManagerStatus::Leader
            } else if live.voters.contains(&node.id) && live.alive.contains(&node.id) {
                ManagerStatus::Reachable
            } else {
                ManagerStatus::Unreachable
            }
        });
        NodeView {
            id: node.id.clone(),
            hostname: node.hostname.clone(),
            role: node.role,
            status: node.status,
            availability: node.availability,
            manager_status,
            addr: node.addr,
            gossip_addr: node.gossip_addr,
            labels: node.labels.clone(),
            engine: node.engine.clone(),
            cert_expiry: node.cert.as_ref().map(|c| c.not_after_ms / 1000),
            is_self: live.me.as_ref() == Some(&node.id),
        }
    }

    /// Every node, in listing order: managers first, then by hostname.
    pub fn all(state: &ClusterState, live: &Liveness) -> Vec<NodeView> {
        let mut views: Vec<NodeView> = state
            .nodes()
            .values()
            .map(|n| NodeView::of(n, live))
            .collect();
        views.sort_by(|a, b| (a.role, &a.hostname, &a.id).cmp(&(b.role, &b.hostname, &b.id)));
        views
    }
}

/// Finds a node by id, unique id prefix or hostname, as docker does.
pub fn find_node<'a>(state: &'a ClusterState, key: &str) -> Result<&'a Node, String> {
    find_by_key(
        state.nodes().values(),
        key,
        "node",
        |n| n.id.as_str(),
        |n| n.hostname.as_str(),
    )
}

/// Docker's lookup of an object by what an operator typed: its whole id,
/// else its name (nodes may share a hostname), else a unique id prefix.
pub(super) fn find_by_key<'a, T>(
    items: impl Iterator<Item = &'a T> + Clone,
    key: &str,
    kind: &str,
    id: impl Fn(&T) -> &str,
    name: impl Fn(&T) -> &str,
) -> Result<&'a T, String> {
    let matching =
        |test: &dyn Fn(&T) -> bool| -> Vec<&'a T> { items.clone().filter(|t| test(t)).collect() };
    let mut found = matching(&|t| id(t) == key);
    if found.is_empty() {
        found = matching(&|t| name(t) == key);
    }
    if found.is_empty() && !key.is_empty() {
        found = matching(&|t| id(t).starts_with(key));
    }
    match found[..] {
        [t] => Ok(t),
        [] => Err(format!(
            "{kind} `{key}` not found; `shoal {kind} ls` lists {kind}s"
        )),
        _ => Err(format!(
            "`{key}` matches {} {kind}s; give more of the id",
            found.len()
        )),
    }
}

/// What `shoal info` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// inactive, pending or active.
    pub swarm: String,
    /// This node's id, when in a swarm.
    pub node_id: Option<NodeId>,
    /// This node's hostname.
    pub hostname: String,
    /// Its role, when in a swarm.
    pub role: Option<Role>,
    /// The cluster's id.
    pub cluster_id: Option<String>,
    /// This node's cluster API address.
    pub addr: Option<SocketAddr>,
    /// The managers' cluster API addresses.
    pub managers: Vec<SocketAddr>,
    /// How many nodes the cluster has (as last known here).
    pub nodes: usize,
    /// The Raft leader, when known.
    pub leader: Option<NodeId>,
    /// Raft term and commit index, on managers.
    pub raft: Option<RaftInfo>,
    /// The data-plane engine in use, and why.
    pub dataplane: String,
    /// When this node's certificate expires (Unix seconds); it renews
    /// itself at about two thirds of its life.
    #[serde(default)]
    pub cert_expiry: Option<u64>,
    /// The public half of this node's WireGuard key, which encrypted
    /// networks' tunnels to it use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_key: Option<WgKey>,
    /// The daemon's version.
    #[serde(default)]
    pub version: String,
}

/// Raft figures for `shoal info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftInfo {
    /// The current term.
    pub term: u64,
    /// The index of the last applied entry.
    pub applied: u64,
    /// How many voters there are.
    pub voters: usize,
}
