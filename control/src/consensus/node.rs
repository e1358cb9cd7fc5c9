//! [`Consensus`]: one manager's Raft, as the daemon uses it.
//!
//! Commands go in through [`Consensus::write`] on the leader (followers
//! answer `NotLeader` with the leader to forward to); the state comes out
//! through [`Consensus::read`] (linearizable, leader only),
//! [`Consensus::local_state`] and [`Consensus::watch`] (this manager's
//! copy, possibly a little behind). Raft messages from other managers come
//! in through the `handle_*` methods and leave through the
//! [`Transport`] given to [`Consensus::open`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    ChangeMembershipError, CheckIsLeaderError, ClientWriteError, InitializeError,
    InstallSnapshotError, RaftError,
};
use openraft::metrics::WaitError;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, ClientWriteResponse, InstallSnapshotRequest,
    InstallSnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{ChangeMembers, Raft, RaftMetrics, ServerState};
use tokio::sync::watch;

use super::config::ConsensusConfig;
use super::db::Db;
use super::error::{ConsensusError, MembershipError, ReadError, WriteError};
use super::network::{Network, Transport};
use super::state_machine::StateMachine;
use super::store::LogStore;
use super::types::{Peer, RaftId, Request, TypeConfig};
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
    raft: Raft<TypeConfig>,
    me: Peer,
    config: ConsensusConfig,
    state: watch::Receiver<Arc<ClusterState>>,
    /// Tells when `raft.redb` is closed: every task using it is gone.
    closed: watch::Receiver<()>,
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
        tokio::fs::create_dir_all(dir)
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

    /// A receiver that sees every state this manager applies.
    pub fn watch(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.state.clone()
    }

    /// Adds `peer` as a voting manager: first as a learner, until it has
    /// the log up to its own addition, then as a voter. Leader only.
    pub async fn add_voter(&self, peer: Peer) -> Result<(), MembershipError> {
        let id = peer.raft_id();
        let added = self
            .change_membership(self.raft.add_learner(id, peer.clone(), false))
            .await?;
        self.wait_caught_up(&peer, added.log_id.index).await?;
        let voters = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
        self.change_membership(self.raft.change_membership(voters, false))
            .await
            .map(drop)
    }

    /// Removes the manager `id` from the voters (and from Raft). Leader only.
    pub async fn remove_voter(&self, id: RaftId) -> Result<(), MembershipError> {
        let voters = ChangeMembers::RemoveVoters(BTreeSet::from([id]));
        self.change_membership(self.raft.change_membership(voters, false))
            .await
            .map(drop)
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

    /// The voting managers.
    pub fn voters(&self) -> Vec<Peer> {
        voters_of(&self.raft.metrics().borrow())
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

    /// The openraft node, for tests that look at its log and snapshots.
    #[cfg(test)]
    pub(super) fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// Runs a membership change with the request timeout, mapping its errors.
    async fn change_membership(
        &self,
        change: impl Future<
            Output = Result<
                ClientWriteResponse<TypeConfig>,
                RaftError<RaftId, ClientWriteError<RaftId, Peer>>,
            >,
        >,
    ) -> Result<ClientWriteResponse<TypeConfig>, MembershipError> {
        let timeout = self.config.request_timeout;
        let changed = tokio::time::timeout(timeout, change)
            .await
            .map_err(|_| MembershipError::NoQuorum(timeout))?;
        changed.map_err(|e| match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(to)) => {
                MembershipError::NotLeader {
                    leader: to.leader_node,
                }
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => match e {
                // A follower checks its own pending membership entry
                // before it checks who leads.
                ChangeMembershipError::InProgress(_) => {
                    let metrics = self.raft.metrics();
                    let m = metrics.borrow();
                    if m.state == ServerState::Leader {
                        MembershipError::Busy
                    } else {
                        MembershipError::NotLeader {
                            leader: leader_of(&m),
                        }
                    }
                }
                ChangeMembershipError::EmptyMembership(_) => MembershipError::LastVoter,
                ChangeMembershipError::LearnerNotFound(_) => {
                    MembershipError::Refused(e.to_string())
                }
            },
            RaftError::Fatal(e) => MembershipError::Fatal(e.to_string()),
        })
    }

    /// Waits until the leader has replicated up to `index` to `peer`. On
    /// timeout the learner is dropped again, so the leader stops sending it
    /// the log.
    async fn wait_caught_up(&self, peer: &Peer, index: u64) -> Result<(), MembershipError> {
        let id = peer.raft_id();
        let timeout = self.config.catch_up_timeout;
        let waited = self
            .raft
            .wait(Some(timeout))
            .metrics(
                move |m| m.state != ServerState::Leader || matched(m, id) >= Some(index),
                "the new manager to catch up",
            )
            .await;
        match waited {
            Ok(m) if m.state == ServerState::Leader => Ok(()),
            Ok(m) => Err(MembershipError::NotLeader {
                leader: leader_of(&m),
            }),
            Err(WaitError::Timeout(..)) => {
                let learner = ChangeMembers::RemoveNodes(BTreeSet::from([id]));
                if let Err(e) = self
                    .change_membership(self.raft.change_membership(learner, false))
                    .await
                {
                    tracing::warn!(peer = %peer.id, "could not drop the learner that did not catch up: {e}");
                }
                Err(MembershipError::NotCaughtUp {
                    peer: peer.id.clone(),
                    timeout,
                })
            }
            Err(e @ WaitError::ShuttingDown) => Err(MembershipError::Fatal(e.to_string())),
        }
    }
}

/// The last log index the leader knows `id` holds.
fn matched(m: &RaftMetrics<RaftId, Peer>, id: RaftId) -> Option<u64> {
    let replication = m.replication.as_ref()?;
    replication.get(&id)?.map(|log_id| log_id.index)
}

fn leader_of(m: &RaftMetrics<RaftId, Peer>) -> Option<Peer> {
    let leader = m.current_leader?;
    m.membership_config.membership().get_node(&leader).cloned()
}

fn voters_of(m: &RaftMetrics<RaftId, Peer>) -> Vec<Peer> {
    let membership = m.membership_config.membership();
    membership
        .voter_ids()
        .filter_map(|id| membership.get_node(&id).cloned())
        .collect()
}
