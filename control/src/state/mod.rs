//! The cluster state that Raft replicates among managers.
//!
//! [`ClusterState`] holds nodes, networks, services, tasks, address
//! allocations and secrets. It changes only through
//! [`ClusterState::apply`], which takes a [`Command`] (one Raft log entry)
//! and either applies all of it and returns an [`Outcome`], or refuses it
//! with a [`StateError`] and changes nothing. Every handler validates first
//! and mutates after, and every choice (VNI, subnet, address, port) is the
//! lowest free one, so all managers that apply the same log hold equal
//! states.

mod cluster;
mod command;
mod error;
pub mod ipam;
pub mod model;
mod names;
mod networks;
mod nodes;
mod operators;
pub mod policy;
mod services;
mod tasks;
mod updates;

pub use cluster::{ClusterState, GOSSIP_KEYS};
pub use command::{Command, NetworkSpec, NodeUpdate, Outcome, SecretBytes, TaskUpdate};
pub use error::StateError;
pub use ipam::Ipam;
pub use model::{
    Availability, CertRecord, DesiredState, EndpointMode, GossipKey, Network, Node, NodeStatus,
    PlacementPreference, PortConfig, Protocol, PublishMode, Rotation, Service, ServiceMode,
    ServiceSpec, Task, TaskState, Trust,
};
pub use operators::Operator;
pub use policy::{
    FailureAction, HealthCheck, RestartCondition, RestartPolicy, TaskHealth, UpdateConfig,
    UpdateOrder, UpdateState, UpdateStatus,
};

#[cfg(test)]
mod tests;
