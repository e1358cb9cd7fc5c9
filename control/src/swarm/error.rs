//! Why a swarm operation failed, in words that say what to do.

use std::net::SocketAddr;
use std::path::PathBuf;

use thiserror::Error;

use crate::pki::{PkiError, TokenError};

/// Why a swarm operation failed.
#[derive(Debug, Error)]
pub enum SwarmError {
    /// The node is in no swarm.
    #[error(
        "this node is not part of a swarm; run `shoal swarm init`, or `shoal swarm join` with a \
         token from a manager"
    )]
    NotInSwarm,
    /// The node is in a swarm already.
    #[error(
        "this node is already part of a swarm; run `shoal swarm leave` first to join another one"
    )]
    AlreadyInSwarm,
    /// Cluster state was asked of a worker.
    #[error(
        "this node is not a swarm manager: worker nodes cannot be used to view or modify cluster \
         state; run this command on a manager, or promote this node with `shoal node promote` on \
         a manager"
    )]
    NotManager,
    /// No leader can be found or reached.
    #[error(
        "the swarm has no leader: fewer than a majority of its managers are reachable (quorum \
         lost), or an election is still under way; {0}"
    )]
    NoLeader(String),
    /// A manager could not be reached.
    #[error("cannot reach manager {addr}: {reason}")]
    Unreachable {
        /// Its address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// A manager refused the call, with its reason.
    #[error("{0}")]
    Refused(String),
    /// Leaving would break Raft quorum.
    #[error(
        "this node is a manager, and leaving leaves {remaining} reachable manager(s) out of \
         {total}: without a Raft quorum the swarm is inaccessible; demote it first with `shoal \
         node demote`, or use `shoal swarm leave --force` to leave anyway"
    )]
    LeaveBreaksQuorum {
        /// Managers reachable after leaving.
        remaining: usize,
        /// Managers after leaving.
        total: usize,
    },
    /// The last manager would leave.
    #[error(
        "this node is the swarm's last manager: leaving erases the swarm's state for good; use \
         `shoal swarm leave --force` to do it anyway"
    )]
    LastManager,
    /// A certificate, key or CA problem.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// No randomness for keys, ids or tokens.
    #[error(transparent)]
    Random(#[from] crate::ids::RandomError),
    /// A join token problem.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file holds something unreadable.
    #[error(
        "{}: {reason}; the swarm identity is damaged: run `shoal swarm leave --force` and join \
         again",
        path.display()
    )]
    Corrupt {
        /// Which file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No address to advertise was given or found.
    #[error(
        "cannot choose an address to advertise: this machine has no single non-loopback IPv4 \
         address; give one with --advertise-addr"
    )]
    NoAdvertiseAddr,
    /// A socket could not be opened.
    #[error("cannot listen on {addr} for {what}: {source}; pick another address or port")]
    Bind {
        /// For what.
        what: &'static str,
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The consensus layer failed.
    #[error("raft: {0}")]
    Consensus(String),
}
