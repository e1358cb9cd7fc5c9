//! shoal's control plane.
//!
//! Pure cores, tested without sockets:
//! - [`pki`]: the cluster CA, node certificates and join tokens;
//! - [`state`]: the typed cluster state that Raft replicates, changed only
//!   by applying [`state::Command`]s, deterministically;
//! - [`membership`]: SWIM gossip (foca) as events in, datagrams, timers
//!   and up/down notifications out;
//! - [`scheduler`]: placement of tasks on nodes (filters, then spread),
//!   with an explanation when nothing fits;
//! - [`orchestrator`]: the commands that move tasks toward what the
//!   services ask for (slots, global nodes, rescheduling, history);
//! - [`ids`] and [`role`]: the names they use.
//!
//! And the parts that do I/O, built on them:
//! - [`consensus`]: Raft among managers (openraft), stored in redb;
//! - [`api`]: node-to-node gRPC over mutual TLS;
//! - [`agent`]: runs this node's tasks and turns the state into this
//!   node's data-plane tables;
//! - [`swarm`]: a node's life in the swarm, joining all of the above;
//! - [`private_dir`]: the state directory's modes (0700/0600).

#![forbid(unsafe_code)]

pub mod agent;
pub mod api;
mod base36;
pub mod clock;
pub mod consensus;
pub mod ids;
pub mod image;
pub mod membership;
pub mod orchestrator;
pub mod pki;
pub mod private_dir;
pub mod role;
pub mod scheduler;
pub mod signal;
pub mod stack;
pub mod state;
pub mod swarm;
#[cfg(test)]
mod testkit;

pub use ids::{NetworkId, NodeId, ServiceId, TaskId};
pub use role::Role;
