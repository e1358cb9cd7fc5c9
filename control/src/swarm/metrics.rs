//! What `/metrics` shows of the control plane: a [`SwarmMetrics`] read from
//! the running member at one moment ([`Swarm::metrics`]), rendered in the
//! OpenMetrics text format with prometheus-client
//! ([`SwarmMetrics::encode`]), for the daemon to serve next to the data
//! plane's families.
//!
//! Every member shows its role, the members gossip sees alive, and nodes
//! and tasks by state from its copy of the cluster state (a manager's
//! replica, or the whole state a worker is streamed). Only managers run
//! Raft, so only they show the `shoal_raft_*` families; a node outside a
//! swarm shows none of these.

use std::collections::BTreeMap;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use super::Swarm;
use crate::consensus::RaftStatus;
use crate::state::{ClusterState, NodeStatus, TaskState};
use crate::{NodeId, Role};

/// The control plane of this node, as `/metrics` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SwarmMetrics {
    /// `None` outside a swarm.
    member: Option<MemberMetrics>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct MemberMetrics {
    node_id: NodeId,
    role: Role,
    /// Managers only.
    raft: Option<RaftMetrics>,
    /// Alive as gossip sees it, this node included.
    gossip_members: usize,
    /// Gossip datagrams refused, by reason.
    gossip_rejected: BTreeMap<&'static str, u64>,
    nodes: BTreeMap<(Role, &'static str), i64>,
    tasks: BTreeMap<TaskState, i64>,
    /// When this node's certificate expires, Unix seconds.
    cert_expiry: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct RaftMetrics {
    term: u64,
    commit_index: u64,
    is_leader: bool,
    leader: Option<NodeId>,
    voters: usize,
}

impl From<RaftStatus> for RaftMetrics {
    fn from(s: RaftStatus) -> RaftMetrics {
        RaftMetrics {
            term: s.term,
            commit_index: s.commit_index,
            is_leader: s.is_leader,
            leader: s.leader.map(|p| p.id),
            voters: s.voters.len(),
        }
    }
}

/// Every task state, in Swarm's order; each is shown, zero or not.
const TASK_STATES: [TaskState; 10] = [
    TaskState::New,
    TaskState::Pending,
    TaskState::Assigned,
    TaskState::Starting,
    TaskState::Running,
    TaskState::Complete,
    TaskState::Shutdown,
    TaskState::Failed,
    TaskState::Rejected,
    TaskState::Orphaned,
];

/// Why gossip refuses a datagram (or drops a member update), as
/// `membership::seal` and `membership::screen` label it; each is shown,
/// zero or not.
const GOSSIP_REFUSALS: [&str; 10] = [
    "malformed",
    "no_key",
    "unknown_key",
    "forged",
    "replayed",
    "stale",
    "spoofed_source",
    "unknown_member",
    "future_generation",
    "unknown_member_update",
];

/// Every node status with its label; each is shown, zero or not.
const NODE_STATUSES: [(NodeStatus, &str); 3] = [
    (NodeStatus::Ready, "ready"),
    (NodeStatus::Down, "down"),
    (NodeStatus::Unknown, "unknown"),
];

fn status_label(status: NodeStatus) -> &'static str {
    NODE_STATUSES
        .iter()
        .find(|(s, _)| *s == status)
        .map_or("unknown", |(_, l)| l)
}

/// Nodes of `state` by role and status, every pair present.
fn count_nodes(state: &ClusterState) -> BTreeMap<(Role, &'static str), i64> {
    let mut out: BTreeMap<(Role, &'static str), i64> = Role::ALL
        .iter()
        .flat_map(|&r| NODE_STATUSES.iter().map(move |&(_, l)| ((r, l), 0)))
        .collect();
    for n in state.nodes().values() {
        *out.entry((n.role, status_label(n.status))).or_default() += 1;
    }
    out
}

/// Tasks by state, every state present.
fn count_tasks(states: impl Iterator<Item = TaskState>) -> BTreeMap<TaskState, i64> {
    let mut out: BTreeMap<TaskState, i64> = TASK_STATES.iter().map(|&s| (s, 0)).collect();
    for s in states {
        *out.entry(s).or_default() += 1;
    }
    out
}

impl Swarm {
    /// The control-plane metrics of this node now.
    pub async fn metrics(&self) -> SwarmMetrics {
        let Ok(member) = self.member().await else {
            return SwarmMetrics::default();
        };
        let state = member.local_state();
        let raft = member.consensus().await.map(|c| c.status().into());
        let gossip_members = member.live().borrow().len() + 1;
        SwarmMetrics {
            member: Some(MemberMetrics {
                node_id: member.node_id.clone(),
                role: member.creds.role(),
                raft,
                gossip_members,
                gossip_rejected: member.gossip_rejected(),
                nodes: count_nodes(&state),
                tasks: count_tasks(state.tasks().values().map(|t| t.state)),
                cert_expiry: super::member::unix_secs(member.creds.not_after()),
            }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct NodeLabels {
    role: String,
    status: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TaskLabels {
    state: String,
}

fn gauge(v: impl TryInto<i64>) -> Gauge {
    let g = Gauge::default();
    g.set(v.try_into().unwrap_or(i64::MAX));
    g
}

impl SwarmMetrics {
    /// Appends the families in the OpenMetrics text format, without the
    /// closing `# EOF`, so that the data plane's can follow.
    pub fn encode(&self, out: &mut String) {
        let Some(m) = &self.member else {
            return;
        };
        let mut r = Registry::with_prefix("shoal");
        r.register(
            "swarm_node",
            "This node's id and role in the swarm",
            Info::new(vec![
                ("node_id", m.node_id.to_string()),
                ("role", m.role.to_string()),
            ]),
        );
        r.register(
            "swarm_manager",
            "1 if this node is a manager (a Raft voter or about to be), 0 if a worker",
            gauge(i64::from(m.role == Role::Manager)),
        );
        if let Some(raft) = &m.raft {
            r.register(
                "raft_term",
                "This manager's current Raft term",
                gauge(raft.term),
            );
            r.register(
                "raft_commit_index",
                "Index of the last Raft entry applied to this manager's state",
                gauge(raft.commit_index),
            );
            r.register(
                "raft_leader",
                "1 if this manager leads Raft, else 0",
                gauge(i64::from(raft.is_leader)),
            );
            r.register(
                "raft_voters",
                "Raft voters (managers) as this manager knows them",
                gauge(raft.voters),
            );
            if let Some(leader) = &raft.leader {
                r.register(
                    "raft_leader_node",
                    "The node id of the Raft leader as this manager knows it",
                    Info::new(vec![("leader", leader.to_string())]),
                );
            }
        }
        r.register(
            "cert_expiry_timestamp_seconds",
            "When this node's certificate expires (Unix time); it renews itself at about two thirds of its life",
            gauge(m.cert_expiry),
        );
        r.register(
            "gossip_members",
            "Swarm members gossip sees alive, this node included",
            gauge(m.gossip_members),
        );
        let rejected = Family::<ReasonLabels, Counter>::default();
        for reason in GOSSIP_REFUSALS {
            let n = m.gossip_rejected.get(reason).copied().unwrap_or(0);
            rejected.get_or_create(&ReasonLabels { reason }).inc_by(n);
        }
        r.register(
            "gossip_rejected",
            "Gossip datagrams refused since start-up, by reason (not sealed with a cluster key, replayed, a sender or member that is not a node of the cluster, ...); member updates about strangers count one each",
            rejected,
        );
        let nodes = Family::<NodeLabels, Gauge>::default();
        for (&(role, status), &n) in &m.nodes {
            let labels = NodeLabels {
                role: role.to_string(),
                status,
            };
            nodes.get_or_create(&labels).set(n);
        }
        r.register(
            "nodes",
            "Nodes in the cluster state, by role and status (as this node's copy of the state has them)",
            nodes,
        );
        let tasks = Family::<TaskLabels, Gauge>::default();
        for (state, &n) in &m.tasks {
            let labels = TaskLabels {
                state: state.to_string(),
            };
            tasks.get_or_create(&labels).set(n);
        }
        r.register(
            "tasks",
            "Tasks of every service by state, from this node's copy of the whole cluster state (a manager's replica, or the state a worker is streamed)",
            tasks,
        );
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(out, &r);
    }
}

#[cfg(test)]
mod tests;
