//! What can go wrong when opening Raft, writing, reading, and changing who
//! the managers are; each error says what to do about it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use super::db::DbError;
use super::types::{Peer, RaftId};
use crate::NodeId;

/// Says where the leader is, for a request sent to a follower.
struct LeaderHint<'a>(&'a Option<Peer>);

impl fmt::Display for LeaderHint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(leader) => write!(
                f,
                "send it to the leader, manager `{}` at {}",
                leader.id, leader.addr
            ),
            None => f.write_str("no leader is elected right now; retry in a few seconds"),
        }
    }
}

/// Why Raft could not be opened, initialized or stopped.
#[derive(Debug, Error)]
pub enum ConsensusError {
    /// The data directory cannot be created.
    #[error(
        "cannot create the Raft data directory `{path}`: {source}; check that shoal may write there"
    )]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `raft.redb` cannot be opened or read.
    #[error(
        "cannot use the Raft database `{path}`: {source}; if another shoal daemon uses the same \
         data directory stop it first, otherwise check the disk"
    )]
    Database {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: DbError,
    },
    /// The directory holds another node's Raft data.
    #[error(
        "`{path}` holds the Raft data of another manager (Raft id {owner:016x}), not of node \
         `{me}`; give this node its own data directory"
    )]
    WrongOwner {
        /// The database file.
        path: PathBuf,
        /// The Raft id recorded in it.
        owner: RaftId,
        /// This node.
        me: NodeId,
    },
    /// The timing in [`ConsensusConfig`](super::ConsensusConfig) is inconsistent.
    #[error(
        "invalid Raft timing: {0}; the election timeout's minimum must be below its maximum and \
         above the heartbeat interval"
    )]
    Config(#[source] Box<openraft::ConfigError>),
    /// `initialize` on a manager that already has Raft state.
    #[error(
        "this manager already belongs to a Raft cluster, so it cannot start a new one; to start \
         over, stop shoal and remove its data directory"
    )]
    AlreadyInitialized,
    /// The new single-manager cluster did not elect this manager.
    #[error(
        "this manager did not become the Raft leader within {0:?} after initializing; check the \
         daemon's log for storage errors"
    )]
    NotElected(Duration),
    /// Raft stopped on an error (usually of storage) or was shut down.
    #[error("Raft stopped: {0}; check the daemon's log for the cause, then restart shoal")]
    Fatal(String),
}

/// Why a command was not applied.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WriteError {
    /// Only the leader accepts writes.
    #[error("this manager is not the Raft leader; {}", LeaderHint(.leader))]
    NotLeader {
        /// The leader, if one is known.
        leader: Option<Peer>,
    },
    /// The cluster state refused the command; nothing changed.
    #[error("{0}")]
    Refused(String),
    /// No majority of managers confirmed the command in time.
    #[error(
        "no majority of managers confirmed the change within {0:?}; it may still be applied \
         once they are reachable: check that most managers are up (`shoal node ls`), then look \
         at the state before retrying"
    )]
    NoQuorum(Duration),
    /// Raft stopped.
    #[error("Raft stopped: {0}; check the daemon's log for the cause, then restart shoal")]
    Fatal(String),
}

/// Why an up-to-date read was not possible.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReadError {
    /// Only the leader serves linearizable reads.
    #[error("this manager is not the Raft leader; {}", LeaderHint(.leader))]
    NotLeader {
        /// The leader, if one is known.
        leader: Option<Peer>,
    },
    /// The leader could not confirm it still leads a majority.
    #[error(
        "this manager could not confirm with a majority of managers within {0:?} that its state \
         is current; check that most managers are up (`shoal node ls`)"
    )]
    NoQuorum(Duration),
    /// Raft stopped.
    #[error("Raft stopped: {0}; check the daemon's log for the cause, then restart shoal")]
    Fatal(String),
}

/// Why a manager could not be added or removed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MembershipError {
    /// Only the leader changes membership.
    #[error("this manager is not the Raft leader; {}", LeaderHint(.leader))]
    NotLeader {
        /// The leader, if one is known.
        leader: Option<Peer>,
    },
    /// Another membership change has not finished.
    #[error("another manager is being added or removed; retry when that has finished")]
    Busy,
    /// Removing the last voter would leave nobody to hold the state.
    #[error("cannot remove the last Raft voter; promote another manager first")]
    LastVoter,
    /// The new manager did not receive the log in time; it was not added.
    #[error(
        "manager `{peer}` did not catch up with the Raft log within {timeout:?}, so it was not \
         made a voter; check that it is running and reachable from the leader, then retry"
    )]
    NotCaughtUp {
        /// The manager being added.
        peer: NodeId,
        /// How long it had.
        timeout: Duration,
    },
    /// No majority of managers confirmed the change in time.
    #[error(
        "no majority of managers confirmed the membership change within {0:?}; it may still \
         complete once they are reachable: check that most managers are up (`shoal node ls`)"
    )]
    NoQuorum(Duration),
    /// openraft refused the change for another reason.
    #[error("the membership change was refused: {0}")]
    Refused(String),
    /// Raft stopped.
    #[error("Raft stopped: {0}; check the daemon's log for the cause, then restart shoal")]
    Fatal(String),
}
