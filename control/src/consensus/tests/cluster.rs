//! A cluster of managers in one process: an in-memory router stands in for
//! gRPC, each manager keeps its data in a temporary directory, and any
//! manager can be stopped, restarted or cut off from the others.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use tempfile::TempDir;
use tokio::time::{Instant, sleep};

use crate::NodeId;
use crate::consensus::{
    Consensus, ConsensusConfig, Peer, RaftId, RpcError, SnapshotRpcError, Transport,
    TransportError, TypeConfig, WriteError,
};
use crate::state::{ClusterState, Command, Outcome, SecretBytes};

/// The running managers, by Raft id, those cut off from everyone, and the
/// most entries one append-entries message may carry.
#[derive(Default)]
struct Net {
    running: HashMap<RaftId, Consensus>,
    cut: HashSet<RaftId>,
    max_entries: Option<usize>,
}

/// One manager's transport: delivers its requests to the others in `net`.
#[derive(Clone)]
pub(super) struct Router {
    net: Arc<Mutex<Net>>,
    from: RaftId,
}

impl Router {
    /// The receiving manager, unless it is down or either side is cut off.
    fn target(&self, to: &Peer) -> Result<Consensus, String> {
        let net = self.net.lock().unwrap();
        let to = to.raft_id();
        if net.cut.contains(&self.from) || net.cut.contains(&to) {
            return Err("cut off".into());
        }
        net.running
            .get(&to)
            .cloned()
            .ok_or_else(|| "not running".into())
    }

    /// Drops an answer when a side was cut off while the request was out.
    fn deliver<T, E>(&self, to: &Peer, answer: Result<T, E>) -> Result<T, TransportError<E>> {
        self.target(to).map_err(TransportError::Network)?;
        answer.map_err(TransportError::Remote)
    }
}

impl Transport for Router {
    async fn append_entries(
        &self,
        to: &Peer,
        req: AppendEntriesRequest<TypeConfig>,
    ) -> Result<AppendEntriesResponse<RaftId>, RpcError> {
        let node = self.target(to).map_err(TransportError::Unreachable)?;
        let limit = self.net.lock().unwrap().max_entries;
        if limit.is_some_and(|max| req.entries.len() > max) {
            return Err(TransportError::TooLarge(format!(
                "{} entries",
                req.entries.len()
            )));
        }
        let answer = node.handle_append_entries(req).await;
        self.deliver(to, answer)
    }

    async fn vote(
        &self,
        to: &Peer,
        req: VoteRequest<RaftId>,
    ) -> Result<VoteResponse<RaftId>, RpcError> {
        let node = self.target(to).map_err(TransportError::Unreachable)?;
        let answer: Result<_, RaftError<RaftId>> = node.handle_vote(req).await;
        self.deliver(to, answer)
    }

    async fn install_snapshot(
        &self,
        to: &Peer,
        req: InstallSnapshotRequest<TypeConfig>,
    ) -> Result<InstallSnapshotResponse<RaftId>, SnapshotRpcError> {
        let node = self.target(to).map_err(TransportError::Unreachable)?;
        let answer: Result<_, RaftError<RaftId, InstallSnapshotError>> =
            node.handle_install_snapshot(req).await;
        self.deliver(to, answer)
    }
}

/// Fast timing so tests take seconds.
pub(super) fn fast() -> ConsensusConfig {
    ConsensusConfig {
        heartbeat_interval: Duration::from_millis(50),
        election_timeout_min: Duration::from_millis(300),
        election_timeout_max: Duration::from_millis(600),
        request_timeout: Duration::from_secs(2),
        catch_up_timeout: Duration::from_secs(10),
        ..ConsensusConfig::default()
    }
}

/// How long a test waits for something that should happen before it fails.
const PATIENCE: Duration = Duration::from_secs(20);

/// Polls `done` until it holds; panics after [`PATIENCE`].
pub(super) async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        sleep(Duration::from_millis(20)).await;
    }
}

/// A command that always applies.
pub(super) fn set_secret(i: usize) -> Command {
    Command::SetSecret {
        name: format!("s{i}"),
        value: SecretBytes(vec![i as u8]),
    }
}

/// `n` managers, each with its own directory; all opened, none initialized.
pub(super) struct Cluster {
    net: Arc<Mutex<Net>>,
    dirs: Vec<TempDir>,
    peers: Vec<Peer>,
    nodes: Vec<Option<Consensus>>,
    config: ConsensusConfig,
}

impl Cluster {
    pub(super) async fn new(n: usize, config: ConsensusConfig) -> Cluster {
        let mut cluster = Cluster {
            net: Arc::default(),
            dirs: (0..n).map(|_| tempfile::tempdir().unwrap()).collect(),
            peers: (0..n)
                .map(|i| Peer {
                    id: NodeId::new(format!("m{i}")).unwrap(),
                    addr: SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16)),
                })
                .collect(),
            nodes: (0..n).map(|_| None).collect(),
            config,
        };
        for i in 0..n {
            cluster.start(i).await;
        }
        cluster
    }

    /// `n` managers: 0 initializes the cluster and adds the others as voters.
    pub(super) async fn voters(n: usize, config: ConsensusConfig) -> Cluster {
        let cluster = Cluster::new(n, config).await;
        cluster.node(0).initialize().await.unwrap();
        for i in 1..n {
            cluster
                .node(0)
                .add_voter(cluster.peer(i).clone())
                .await
                .unwrap();
        }
        cluster
    }

    /// Opens manager `i` from its directory.
    pub(super) async fn start(&mut self, i: usize) {
        let router = Router {
            net: self.net.clone(),
            from: self.peers[i].raft_id(),
        };
        let node = Consensus::open(
            self.dirs[i].path(),
            self.peers[i].clone(),
            self.config.clone(),
            router,
        )
        .await
        .unwrap();
        self.net
            .lock()
            .unwrap()
            .running
            .insert(node.id(), node.clone());
        self.nodes[i] = Some(node);
    }

    /// Stops manager `i` as a crash would look to the others.
    pub(super) async fn stop(&mut self, i: usize) {
        let node = self.nodes[i].take().expect("stopping a running manager");
        self.net.lock().unwrap().running.remove(&node.id());
        node.shutdown().await.unwrap();
    }

    pub(super) async fn stop_all(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_some() {
                self.stop(i).await;
            }
        }
    }

    /// Cuts manager `i` off from all others, both ways.
    pub(super) fn cut(&self, i: usize) {
        self.net.lock().unwrap().cut.insert(self.peers[i].raft_id());
    }

    /// Refuses append-entries messages with more than `max` entries.
    pub(super) fn limit_entries(&self, max: usize) {
        self.net.lock().unwrap().max_entries = Some(max);
    }

    pub(super) fn heal(&self, i: usize) {
        self.net
            .lock()
            .unwrap()
            .cut
            .remove(&self.peers[i].raft_id());
    }

    pub(super) fn node(&self, i: usize) -> &Consensus {
        self.nodes[i].as_ref().expect("manager is running")
    }

    pub(super) fn peer(&self, i: usize) -> &Peer {
        &self.peers[i]
    }

    /// The running managers that are not cut off.
    fn reachable(&self) -> Vec<usize> {
        let net = self.net.lock().unwrap();
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_some() && !net.cut.contains(&self.peers[i].raft_id()))
            .collect()
    }

    /// Waits for a leader among the reachable managers: one that says it
    /// leads, in the highest term any of them has seen.
    pub(super) async fn leader(&self) -> usize {
        let mut found = None;
        eventually("a leader", || {
            let reachable = self.reachable();
            let top = reachable.iter().map(|&i| self.node(i).status().term).max();
            found = reachable.into_iter().find(|&i| {
                let status = self.node(i).status();
                status.is_leader && Some(status.term) == top
            });
            found.is_some()
        })
        .await;
        found.unwrap()
    }

    /// Writes `cmd` through whoever leads, following leadership changes.
    pub(super) async fn write(&self, cmd: Command) -> Outcome {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let leader = self.leader().await;
            match self.node(leader).write(cmd.clone()).await {
                Ok(outcome) => return outcome,
                Err(e @ (WriteError::NotLeader { .. } | WriteError::NoQuorum(_))) => {
                    assert!(Instant::now() < deadline, "write kept failing: {e}");
                    sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("write failed: {e}"),
            }
        }
    }

    /// Waits until every reachable manager holds `expected`.
    pub(super) async fn converged(&self, expected: &ClusterState) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let behind: Vec<_> = self
                .reachable()
                .into_iter()
                .filter(|&i| *self.node(i).local_state() != *expected)
                .map(|i| (i, self.node(i).status()))
                .collect();
            if behind.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "managers never caught up: {behind:?}"
            );
            sleep(Duration::from_millis(20)).await;
        }
    }
}
