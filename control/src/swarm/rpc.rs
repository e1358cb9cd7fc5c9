//! The messages of the cluster API (`shoal.cluster.Cluster`), sent as JSON
//! over gRPC and mutual TLS between nodes.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use shoal_dataplane::tables::WgKey;

use crate::state::{ClusterState, Command, Outcome, TaskUpdate};
use crate::{NodeId, Role, TaskId};

/// A node asks to join, before it has a certificate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The join token, as the user gave it.
    pub token: String,
    /// The id the node picked for itself (128 random bits).
    pub node_id: NodeId,
    /// Its hostname.
    pub hostname: String,
    /// A CSR for its key, PEM.
    pub csr_pem: String,
    /// Its cluster API address.
    pub addr: SocketAddr,
    /// Its gossip address.
    pub gossip_addr: SocketAddr,
    /// What runs its tasks.
    pub engine: String,
    /// A node already in the swarm that comes back after its certificate
    /// expired (it was down when it was due for renewal): that last
    /// certificate, PEM. It keeps its id and its place in the state; the
    /// CSR must be for the same key.
    #[serde(default)]
    pub rejoin: Option<String>,
    /// The public half of its WireGuard key, for encrypted networks.
    #[serde(default)]
    pub tunnel_key: Option<WgKey>,
}

/// What a joining node gets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinResponse {
    /// The role its token granted.
    pub role: Role,
    /// Its certificate, PEM.
    pub cert_pem: String,
    /// The cluster's id.
    pub cluster_id: String,
    /// The managers' cluster API addresses.
    pub managers: Vec<SocketAddr>,
    /// Gossip addresses of the nodes.
    pub gossip_seeds: Vec<SocketAddr>,
    /// The CAs the cluster trusts, PEM: the one the token pins, and while
    /// a CA rotation runs the other.
    #[serde(default)]
    pub roots_pem: Vec<String>,
}

/// A manager forwards a change to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProposeRequest {
    /// The change.
    pub command: Command,
}

/// The leader's answer to a change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProposeResponse {
    /// What applying it did, or why the state refused it.
    pub result: Result<Outcome, String>,
}

/// No arguments.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Empty {}

/// The whole cluster state, between managers (`ReadState`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateMessage {
    /// The state.
    pub state: ClusterState,
}

/// Where a manager's copy of the state stands: what a worker compares
/// across managers to notice one that fell behind (cut off from the
/// others, or a leader that lost its majority without knowing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The manager's Raft term.
    pub term: u64,
    /// The index of the last log entry applied to its state.
    pub applied: u64,
}

/// One message of the state stream a worker follows (`WatchState`): the
/// redacted state whenever it changes, and at least every second the
/// manager's [`Progress`], which is also the stream's heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WatchMessage {
    /// The state, when it changed since the last message.
    pub state: Option<ClusterState>,
    /// Where the manager stands.
    pub progress: Progress,
}

/// A node asks for a certificate for its current role (after promotion or
/// demotion, or before its certificate expires).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenewRequest {
    /// A CSR for its key, PEM.
    pub csr_pem: String,
    /// The public half of its WireGuard key, when the state records
    /// another one or none (a node that made a new key, or one from
    /// before encrypted networks): recorded with the certificate.
    #[serde(default)]
    pub tunnel_key: Option<WgKey>,
}

/// A renewed certificate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenewResponse {
    /// The certificate, PEM, with the role the state gives the node.
    pub cert_pem: String,
}

/// Make a manager node a Raft voter, or stop it being one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VoterRequest {
    /// Which node.
    pub node: NodeId,
}

/// A node's agent reports a task's progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportTaskRequest {
    /// Which task; it must be placed on the caller.
    pub task: TaskId,
    /// Its new state and error.
    pub update: TaskUpdate,
}

/// A manager reads a task's log from the node that runs it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskLogsRequest {
    /// Which task.
    pub task: TaskId,
    /// Lines from the end, when `offset` is not given (all with neither).
    pub tail: Option<usize>,
    /// Where to continue reading.
    pub offset: Option<u64>,
}

/// Lines of a task's log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskLogsResponse {
    /// Whole lines.
    pub lines: Vec<String>,
    /// Where to continue.
    pub offset: u64,
}

/// Raft's append-entries (and heartbeat) between managers.
pub type RaftAppendRequest = openraft::raft::AppendEntriesRequest<crate::consensus::TypeConfig>;
/// The follower's answer, or its Raft's error.
pub type RaftAppendReply = Result<
    openraft::raft::AppendEntriesResponse<crate::consensus::RaftId>,
    openraft::error::RaftError<crate::consensus::RaftId>,
>;
/// Raft's vote request.
pub type RaftVoteRequest = openraft::raft::VoteRequest<crate::consensus::RaftId>;
/// The vote, or the voter's Raft's error.
pub type RaftVoteReply = Result<
    openraft::raft::VoteResponse<crate::consensus::RaftId>,
    openraft::error::RaftError<crate::consensus::RaftId>,
>;
/// One chunk of a snapshot.
pub type RaftSnapshotRequest = openraft::raft::InstallSnapshotRequest<crate::consensus::TypeConfig>;
/// The receiver's answer, or its Raft's error.
pub type RaftSnapshotReply = Result<
    openraft::raft::InstallSnapshotResponse<crate::consensus::RaftId>,
    openraft::error::RaftError<crate::consensus::RaftId, openraft::error::InstallSnapshotError>,
>;
