//! Changing who votes: a manager is added as a learner until it holds the
//! log up to its own addition, and only then made a voter, so adding one
//! that is down or far behind never costs the cluster its quorum.

use std::collections::BTreeSet;
use std::future::Future;

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::metrics::WaitError;
use openraft::raft::ClientWriteResponse;
use openraft::{ChangeMembers, RaftMetrics, ServerState};

use super::error::MembershipError;
use super::node::{Consensus, leader_of};
use super::types::{Peer, RaftId, TypeConfig};

impl Consensus {
    /// Adds `peer` as a voting manager: first as a learner, until it has
    /// the log up to its own addition, then as a voter. Leader only. Adding
    /// a voter again changes nothing (its recorded address included).
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

    /// The voting managers.
    pub fn voters(&self) -> Vec<Peer> {
        voters_of(&self.raft.metrics().borrow())
    }

    /// Every manager in the Raft membership: voters and learners. Empty
    /// until this manager has an initialized log.
    pub fn members(&self) -> Vec<Peer> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.membership_config
            .membership()
            .nodes()
            .map(|(_, peer)| peer.clone())
            .collect()
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
                    tracing::warn!(
                        peer = %peer.id,
                        "could not drop the learner that did not catch up: {e}"
                    );
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

/// The voting managers in `m`.
pub(super) fn voters_of(m: &RaftMetrics<RaftId, Peer>) -> Vec<Peer> {
    let membership = m.membership_config.membership();
    membership
        .voter_ids()
        .filter_map(|id| membership.get_node(&id).cloned())
        .collect()
}
