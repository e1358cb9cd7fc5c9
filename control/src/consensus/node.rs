//! [`Consensus`]: one manager's Raft, as the daemon uses it.
//!
//! Commands go in through [`Consensus::write`] on the leader (followers
//! answer `NotLeader` with the leader to forward to); the state comes out
//! through [`Consensus::read`] (linearizable, leader only),
//! [`Consensus::local_state`] and [`Consensus::watch`] (this manager's
//! copy, possibly a little behind). Raft messages from other managers come
//! in through the `handle_*` methods and leave through the
//! [`Transport`] given to [`Consensus::open`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use openraft::error::{
    CheckIsLeaderError, ClientWriteError, InitializeError, InstallSnapshotError, RaftError,
};
use openraft::metrics::WaitError;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{Raft, RaftMetrics, ServerState};
use tokio::sync::watch;

use super::config::ConsensusConfig;
use super::db::Db;
use super::error::{ConsensusError, ReadError, WriteError};
use super::network::{Network, Transport};
use super::state_machine::StateMachine;
use super::store::LogStore;
use super::types::{Peer, RaftId, Request, TypeConfig};
use super::voters::voters_of;
use crate::state::{ClusterState, Command, Outcome};

/// How long [`Consensus::shutdown`] waits for the storage tasks to let go
/// of `raft.redb`.
const RELEASE_WAIT: Duration = Duration::from_secs(5);

/// This manager's view of Raft, from its metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftStatus {
    /// This manager's Raft id.
    pub id: RaftId,
    /// The current term.
    pub term: u64,
    /// The leader, if one is known.
    pub leader: Option<Peer>,
    /// The index of the last entry applied to this manager's state.
    pub commit_index: u64,
    /// The voting managers.
    pub voters: Vec<Peer>,
    /// Whether this manager is the leader.
    pub is_leader: bool,
}

/// One manager's Raft: the log and state in `raft.redb`, and the running
/// openraft node. Clones are handles on the same node.
#[derive(Clone)]
pub struct Consensus {
    pub(super) raft: Raft<TypeConfig>,
    me: Peer,
    pub(super) config: ConsensusConfig,
    state: watch::Receiver<Arc<ClusterState>>,
    /// Tells when `raft.redb` is closed: every task using it is gone.
    closed: watch::Receiver<()>,
    /// How many linearizable reads were asked of this manager.
    reads: Arc<AtomicU64>,
}

impl fmt::Debug for Consensus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consensus")
            .field("me", &self.me)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Consensus {
    /// Opens (or creates) this manager's Raft data in `dir` and starts Raft.
    /// A manager that was in a cluster rejoins it with its vote, log and
    /// state; a new one waits for [`initialize`](Self::initialize) or to be
    /// added by a leader.
    pub async fn open<T: Transport>(
        dir: &Path,
        me: Peer,
        config: ConsensusConfig,
        transport: T,
    ) -> Result<Consensus, ConsensusError> {
        let raft_config = config.to_openraft()?;
        let mut private = tokio::fs::DirBuilder::new();
        private.recursive(true).mode(0o700);
        private
            .create(dir)
            .await
            .map_err(|source| ConsensusError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        let path = Db::path(dir);
        let database = |source| ConsensusError::Database {
            path: path.clone(),
            source,
        };

        let db = Db::open(dir).await.map_err(database)?;
        let id = me.raft_id();
        if let Some(owner) = db.claim(id).await.map_err(database)? {
            return Err(ConsensusError::WrongOwner {
                path,
                owner,
                me: me.id,
            });
        }
        let (state_machine, state) = StateMachine::open(db.clone()).await.map_err(database)?;
        let closed = db.closed();
        let raft = Raft::new(
            id,
            Arc::new(raft_config),
            Network::new(transport),
            LogStore::new(db),
            state_machine,
        )
        .await
        .map_err(|e| ConsensusError::Fatal(e.to_string()))?;
        Ok(Consensus {
            raft,
            me,
            config,
            state,
            closed,
            reads: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Starts a new cluster with this manager as its only voter (`swarm
    /// init`), and waits until it leads it.
    pub async fn initialize(&self) -> Result<(), ConsensusError> {
        let members = BTreeMap::from([(self.id(), self.me.clone())]);
        match self.raft.initialize(members).await {
            Ok(()) => {}
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
                return Err(ConsensusError::AlreadyInitialized);
            }
            Err(RaftError::APIError(e)) => return Err(ConsensusError::Fatal(e.to_string())),
            Err(RaftError::Fatal(e)) => return Err(ConsensusError::Fatal(e.to_string())),
        }
        let timeout = self.config.request_timeout;
        let id = self.id();
        self.raft
            .wait(Some(timeout))
            .metrics(
                move |m| m.state == ServerState::Leader && m.current_leader == Some(id),
                "leading the new cluster",
            )
            .await
            .map(drop)
            .map_err(|e| match e {
                WaitError::Timeout(..) => ConsensusError::NotElected(timeout),
                WaitError::ShuttingDown => ConsensusError::Fatal(e.to_string()),
            })
    }

    /// Applies `cmd` to the cluster state through the log and returns its
    /// outcome. Leader only; gives up after the configured request timeout.
    pub async fn write(&self, cmd: Command) -> Result<Outcome, WriteError> {
        let timeout = self.config.request_timeout;
        let written = tokio::time::timeout(timeout, self.raft.client_write(Request(cmd)))
            .await
            .map_err(|_| WriteError::NoQuorum(timeout))?;
        match written {
            Ok(response) => response.data.0.map_err(WriteError::Refused),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(to))) => {
                Err(WriteError::NotLeader {
                    leader: to.leader_node,
                })
            }
            Err(RaftError::APIError(e)) => Err(WriteError::Fatal(e.to_string())),
            Err(RaftError::Fatal(e)) => Err(WriteError::Fatal(e.to_string())),
        }
    }

    /// The cluster state, including every write that completed before the
    /// call: the leader confirms it still leads a majority first. Leader
    /// only.
    pub async fn read(&self) -> Result<Arc<ClusterState>, ReadError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let timeout = self.config.request_timeout;
        let confirmed = tokio::time::timeout(timeout, self.raft.ensure_linearizable())
            .await
            .map_err(|_| ReadError::NoQuorum(timeout))?;
        match confirmed {
            // Applying publishes the state before it is reported applied,
            // so the watch already holds everything up to the read point.
            Ok(_) => Ok(self.local_state()),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(to))) => {
                Err(ReadError::NotLeader {
                    leader: to.leader_node,
                })
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_))) => {
                Err(ReadError::NoQuorum(timeout))
            }
            Err(RaftError::Fatal(e)) => Err(ReadError::Fatal(e.to_string())),
        }
    }

    /// This manager's copy of the state: what it has applied so far, which
    /// may be behind the leader's.
    pub fn local_state(&self) -> Arc<ClusterState> {
        self.state.borrow().clone()
    }

    /// How many linearizable reads ([`read`](Self::read)) were asked of
    /// this manager since it started: each costs a round to a majority.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// A receiver that sees every state this manager applies.
    pub fn watch(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.state.clone()
    }

    /// Term, leader, progress and voters, as this manager sees them.
    pub fn status(&self) -> RaftStatus {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        RaftStatus {
            id: m.id,
            term: m.current_term,
            leader: leader_of(&m),
            commit_index: m.last_applied.map_or(0, |l| l.index),
            voters: voters_of(&m),
            is_leader: m.state == ServerState::Leader,
        }
    }

    /// This manager.
    pub fn me(&self) -> &Peer {
        &self.me
    }

    /// This manager's Raft id.
    pub fn id(&self) -> RaftId {
        self.me.raft_id()
    }

    /// Handles an append-entries request from the leader; the transport
    /// returns the result, error included, to the sender.
    pub async fn handle_append_entries(
        &self,
        req: AppendEntriesRequest<TypeConfig>,
    ) -> Result<AppendEntriesResponse<RaftId>, RaftError<RaftId>> {
        self.raft.append_entries(req).await
    }

    /// Handles a vote request from a candidate.
    pub async fn handle_vote(
        &self,
        req: VoteRequest<RaftId>,
    ) -> Result<VoteResponse<RaftId>, RaftError<RaftId>> {
        self.raft.vote(req).await
    }

    /// Handles one chunk of a snapshot from the leader.
    pub async fn handle_install_snapshot(
        &self,
        req: InstallSnapshotRequest<TypeConfig>,
    ) -> Result<InstallSnapshotResponse<RaftId>, RaftError<RaftId, InstallSnapshotError>> {
        self.raft.install_snapshot(req).await
    }

    /// Stops Raft on this manager (every clone of this handle), and waits
    /// until `raft.redb` is closed so the directory can be opened again.
    pub async fn shutdown(&self) -> Result<(), ConsensusError> {
        self.raft
            .shutdown()
            .await
            .map_err(|e| ConsensusError::Fatal(e.to_string()))?;
        // The state machine worker and the replication tasks end shortly
        // after the core does, each dropping its handle on the database.
        let mut closed = self.closed.clone();
        if tokio::time::timeout(RELEASE_WAIT, closed.changed())
            .await
            .is_err()
        {
            tracing::warn!(
                "Raft storage still open {RELEASE_WAIT:?} after shutdown; reopening it now would fail"
            );
        }
        Ok(())
    }
}

/// The leader in `m`, if it is known.
pub(super) fn leader_of(m: &RaftMetrics<RaftId, Peer>) -> Option<Peer> {
    let leader = m.current_leader?;
    m.membership_config.membership().get_node(&leader).cloned()
}
