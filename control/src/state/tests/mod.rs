//! Tests of command application: every refusal, all-or-nothing, and
//! property tests over random command sequences.

mod networks;
mod nodes;
mod props;
mod services;
mod tasks;
mod updates;

use super::*;
use crate::ids::{NetworkId, NodeId, ServiceId, TaskId};
use crate::role::Role;

pub(super) fn node_id(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}
pub(super) fn net_id(s: &str) -> NetworkId {
    NetworkId::new(s).unwrap()
}
pub(super) fn svc_id(s: &str) -> ServiceId {
    ServiceId::new(s).unwrap()
}
pub(super) fn task_id(s: &str) -> TaskId {
    TaskId::new(s).unwrap()
}

pub(super) use crate::testkit::node;

pub(super) fn network(id: &str, name: &str, subnet: Option<&str>) -> NetworkSpec {
    NetworkSpec {
        id: net_id(id),
        name: name.into(),
        subnet: subnet.map(|s| s.parse().unwrap()),
        vni: None,
        attachable: false,
        ingress: false,
        encrypted: false,
        labels: Default::default(),
    }
}

pub(super) fn spec(name: &str, networks: &[&str]) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        mode: ServiceMode::Replicated { replicas: 1 },
        command: vec!["shoal".into(), "whoami".into()],
        env: vec![],
        networks: networks.iter().map(|n| net_id(n)).collect(),
        ports: vec![],
        endpoint_mode: EndpointMode::Vip,
        constraints: vec![],
        max_replicas: 0,
        ..ServiceSpec::default()
    }
}

pub(super) fn port(published: Option<u16>, target: u16, protocol: Protocol) -> PortConfig {
    PortConfig {
        protocol,
        target,
        published,
        mode: PublishMode::Ingress,
    }
}

/// Applies `cmd`, which must succeed.
pub(super) fn ok(state: &mut ClusterState, cmd: Command) -> Outcome {
    match state.apply(cmd.clone()) {
        Ok(o) => o,
        Err(e) => panic!("{cmd:?} was refused: {e}"),
    }
}

/// Applies `cmd`, which must be refused without changing the state;
/// returns the message.
pub(super) fn refused(state: &mut ClusterState, cmd: Command) -> String {
    let before = state.clone();
    let err = match state.apply(cmd.clone()) {
        Ok(o) => panic!("{cmd:?} was accepted: {o:?}"),
        Err(e) => e,
    };
    assert_eq!(*state, before, "refused {cmd:?} changed the state");
    err.to_string()
}

/// A state with one manager `m1`, one worker `w1`, an ingress network and
/// an overlay network `backend` (10.0.1.0/24).
pub(super) fn cluster() -> ClusterState {
    let mut s = ClusterState::new();
    ok(&mut s, Command::AddNode(node("m1", Role::Manager)));
    ok(&mut s, Command::AddNode(node("w1", Role::Worker)));
    let mut ingress = network("ingress", "ingress", None);
    ingress.ingress = true;
    ok(&mut s, Command::CreateNetwork(ingress));
    ok(
        &mut s,
        Command::CreateNetwork(network("backend", "backend", None)),
    );
    s
}
