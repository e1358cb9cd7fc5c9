//! shoal's control plane.
//!
//! So far the pure foundations that the networked parts will be wired onto:
//! - [`pki`]: the cluster CA, node certificates and join tokens;
//! - [`state`]: the typed cluster state that Raft replicates, changed only
//!   by applying [`state::Command`]s, deterministically;
//! - [`membership`]: SWIM gossip (foca) as events in, datagrams, timers
//!   and up/down notifications out;
//! - [`ids`] and [`role`]: the names they use.
//!
//! Nothing here opens a socket or starts a task; the only I/O is
//! [`pki::write_private`].

#![forbid(unsafe_code)]

pub mod api;
mod base36;
pub mod consensus;
pub mod ids;
pub mod membership;
pub mod pki;
pub mod role;
pub mod state;
pub mod swarm;

pub use ids::{NetworkId, NodeId, ServiceId, TaskId};
pub use role::Role;
