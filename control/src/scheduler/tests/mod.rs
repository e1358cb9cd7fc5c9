//! Tests of the scheduler over states built by applying commands: each
//! filter and its reason, explanations, spread, placement preferences,
//! global targets, evictions, and property tests over random clusters.

mod evict;
mod explain;
mod filters;
mod global;
mod preferences;
mod props;
mod spread;

use std::collections::BTreeMap;

use super::*;
use crate::ids::ServiceId;
use crate::role::Role;
use crate::state::{
    Availability, Command, DesiredState, EndpointMode, NodeStatus, NodeUpdate, ServiceMode,
    ServiceSpec, TaskState, TaskUpdate,
};

use crate::testkit::{apply, with_availability, with_labels, with_status};

/// A Ready, Active worker with no labels.
fn node(id: &str) -> Node {
    crate::testkit::node(id, Role::Worker)
}

/// `nodes` plus two replicated services, `web` (id `s1`) and `db`
/// (id `s2`), with no networks.
fn cluster(nodes: impl IntoIterator<Item = Node>) -> ClusterState {
    let mut s = ClusterState::new();
    for n in nodes {
        apply(&mut s, Command::AddNode(n));
    }
    for (id, name) in [("s1", "web"), ("s2", "db")] {
        let spec = ServiceSpec {
            name: name.into(),
            mode: ServiceMode::Replicated { replicas: 1 },
            command: vec!["shoal".into(), "whoami".into()],
            env: vec![],
            networks: vec![],
            ports: vec![],
            endpoint_mode: EndpointMode::Vip,
            constraints: vec![],
            max_replicas: 0,
            ..ServiceSpec::default()
        };
        apply(
            &mut s,
            Command::CreateService {
                id: ServiceId::new(id).unwrap(),
                spec,
            },
        );
    }
    s
}

/// Ready, Active workers `n1`..`nN`.
fn nodes(count: usize) -> Vec<Node> {
    (1..=count).map(|i| node(&format!("n{i}"))).collect()
}

fn web(state: &ClusterState) -> &Service {
    state.service(&ServiceId::new("s1").unwrap()).unwrap()
}

fn task_id(id: &str) -> TaskId {
    TaskId::new(id).unwrap()
}

/// Adds task `id` of `service`, placed on `node`, in `state`.
fn add_task(s: &mut ClusterState, id: &str, service: &str, node: &str, state: TaskState) {
    apply(
        s,
        Command::CreateTask {
            id: task_id(id),
            service: ServiceId::new(service).unwrap(),
            slot: None,
            node: Some(NodeId::new(node).unwrap()),
            at_ms: 0,
        },
    );
    if state != TaskState::Assigned {
        update_task(
            s,
            id,
            TaskUpdate {
                state: Some(state),
                ..Default::default()
            },
        );
    }
}

fn update_task(s: &mut ClusterState, id: &str, update: TaskUpdate) {
    apply(
        s,
        Command::UpdateTask {
            id: task_id(id),
            update,
        },
    );
}

fn update_node(s: &mut ClusterState, id: &str, update: NodeUpdate) {
    apply(
        s,
        Command::UpdateNode {
            id: NodeId::new(id).unwrap(),
            update,
        },
    );
}

fn constraints(exprs: &[&str]) -> Vec<Constraint> {
    Constraint::parse_all(exprs).unwrap()
}

/// Task ids `p1`..`pN`.
fn pending(count: usize) -> Vec<TaskId> {
    (1..=count).map(|i| task_id(&format!("p{i}"))).collect()
}

/// Schedules `count` tasks of `web` and returns each node's share.
fn shares(
    state: &ClusterState,
    cons: &[Constraint],
    max: Option<u64>,
    count: usize,
) -> BTreeMap<String, usize> {
    let mut shares = BTreeMap::new();
    for p in schedule(state, web(state), cons, max, &pending(count)) {
        let node = p.result.unwrap_or_else(|e| panic!("{}: {e}", p.task));
        *shares.entry(node.to_string()).or_default() += 1;
    }
    shares
}

/// The one error of scheduling a single task of `web`.
fn refusal(state: &ClusterState, cons: &[Constraint], max: Option<u64>) -> NoSuitableNode {
    let placements = schedule(state, web(state), cons, max, &pending(1));
    match &placements[..] {
        [Placement { result: Err(e), .. }] => e.clone(),
        other => panic!("expected one refusal, got {other:?}"),
    }
}

fn map(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}
