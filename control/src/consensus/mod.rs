//! Raft among managers (openraft), its log and state machine in redb.
//!
//! Each manager opens a [`Consensus`] on its data directory (one
//! `raft.redb` file holds the log, the vote and the latest snapshot). The
//! leader takes [`Command`](crate::state::Command)s through
//! [`Consensus::write`], replicates them, and every manager applies them in
//! log order to its [`ClusterState`](crate::state::ClusterState), which it
//! publishes on a `watch` channel. Messages between managers travel over a
//! [`Transport`] the caller supplies; the receiving side hands them to the
//! `Consensus::handle_*` methods.
//!
//! - `types`: what Raft is instantiated with ([`TypeConfig`]), and how
//!   node ids become Raft ids ([`raft_id`]);
//! - `db`, `store`, `state_machine`: the redb file, the log, the state;
//! - `network`: openraft's network traits over a [`Transport`];
//! - `node`, `voters`: [`Consensus`], the handle the daemon uses, and
//!   [`ConsensusConfig`], its timing.

mod config;
mod db;
mod error;
mod network;
mod node;
mod state_machine;
mod store;
mod types;
mod voters;

pub use config::ConsensusConfig;
pub use db::DbError;
pub use error::{ConsensusError, MembershipError, ReadError, WriteError};
pub use network::{RpcError, SnapshotRpcError, Transport, TransportError};
pub use node::{Consensus, RaftStatus};
pub use types::{Peer, RaftId, Request, Response, TypeConfig, raft_id};

#[cfg(test)]
mod tests;
