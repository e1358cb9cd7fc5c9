//! What the control crate's unit tests build their clusters from: nodes,
//! commands that must apply, and random node states for property tests.
//! One definition, so a field added to `Node` is added here once.

use proptest::prelude::*;

use crate::Role;
use crate::ids::NodeId;
use crate::state::{Availability, ClusterState, Command, Node, NodeStatus};

/// A Ready, Active node called `host-<id>`, with no labels.
pub(crate) fn node(id: &str, role: Role) -> Node {
    Node {
        id: NodeId::new(id).unwrap(),
        hostname: format!("host-{id}"),
        role,
        availability: Availability::Active,
        status: NodeStatus::Ready,
        labels: Default::default(),
        addr: "198.18.0.1:2377".parse().unwrap(),
        gossip_addr: "198.18.0.1:7946".parse().unwrap(),
        engine: "shoal-process".into(),
        cert: None,
        tunnel_key: None,
    }
}

/// `n` with exactly these labels.
pub(crate) fn with_labels(mut n: Node, labels: &[(&str, &str)]) -> Node {
    n.labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    n
}

/// `n` with this status.
pub(crate) fn with_status(mut n: Node, status: NodeStatus) -> Node {
    n.status = status;
    n
}

/// `n` with this availability.
pub(crate) fn with_availability(mut n: Node, availability: Availability) -> Node {
    n.availability = availability;
    n
}

/// Applies `cmd`, which the test expects the state to accept.
pub(crate) fn apply(state: &mut ClusterState, cmd: Command) {
    if let Err(e) = state.apply(cmd.clone()) {
        panic!("{cmd:?} was refused: {e}");
    }
}

/// A status, Ready `ready` times as often as Down or Unknown.
pub(crate) fn any_status(ready: u32) -> impl Strategy<Value = NodeStatus> {
    prop_oneof![
        ready => Just(NodeStatus::Ready),
        1 => Just(NodeStatus::Down),
        1 => Just(NodeStatus::Unknown)
    ]
}

/// An availability, Active `active` times as often as Pause or Drain.
pub(crate) fn any_availability(active: u32) -> impl Strategy<Value = Availability> {
    prop_oneof![
        active => Just(Availability::Active),
        1 => Just(Availability::Pause),
        1 => Just(Availability::Drain)
    ]
}
