//! Tests of the orchestrators over states built by applying commands,
//! with a counter for task ids and helpers that play the agents' part:
//! replicated and global services, rescheduling, placement, garbage
//! collection, and property tests over random clusters.

mod gc;
mod global;
mod placement;
mod props;
mod replicated;
mod reschedule;

use std::collections::BTreeMap;

use super::*;
use crate::ids::ServiceId;
use crate::role::Role;
use crate::state::{
    Availability, DesiredState, EndpointMode, Node, NodeUpdate, ServiceSpec, Task, TaskState,
    TaskUpdate,
};

/// Task ids `o1`, `o2`, ... in the order they are asked for.
fn counter() -> impl FnMut() -> Result<TaskId, RandomError> {
    let mut n = 0;
    move || {
        n += 1;
        Ok(TaskId::new(format!("o{n}")).unwrap())
    }
}

use crate::testkit::apply;

/// A Ready, Active worker with no labels.
fn node(id: &str) -> Node {
    crate::testkit::node(id, Role::Worker)
}

fn spec(name: &str, mode: ServiceMode, constraints: &[&str]) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        mode,
        command: vec!["shoal".into(), "whoami".into()],
        env: vec![],
        networks: vec![],
        ports: vec![],
        endpoint_mode: EndpointMode::Vip,
        constraints: constraints.iter().map(|c| c.to_string()).collect(),
        max_replicas: 0,
    }
}

fn replicated(replicas: u64) -> ServiceMode {
    ServiceMode::Replicated { replicas }
}

fn sid(id: &str) -> ServiceId {
    ServiceId::new(id).unwrap()
}

fn tid(id: &str) -> TaskId {
    TaskId::new(id).unwrap()
}

fn nid(id: &str) -> NodeId {
    NodeId::new(id).unwrap()
}

/// Ready, Active workers `n1`..`nN` and service `s1` (`web`) in `mode`.
fn cluster(nodes: usize, mode: ServiceMode) -> ClusterState {
    let mut s = ClusterState::new();
    for i in 1..=nodes {
        apply(&mut s, Command::AddNode(node(&format!("n{i}"))));
    }
    apply(
        &mut s,
        Command::CreateService {
            id: sid("s1"),
            spec: spec("web", mode, &[]),
        },
    );
    s
}

/// Replaces the spec of `s1`.
fn respec(s: &mut ClusterState, spec: ServiceSpec) {
    let version = s.service(&sid("s1")).unwrap().version;
    apply(
        s,
        Command::UpdateService {
            id: sid("s1"),
            version,
            spec,
        },
    );
}

fn scale(s: &mut ClusterState, replicas: u64) {
    respec(s, spec("web", replicated(replicas), &[]));
}

fn update_node(s: &mut ClusterState, id: &str, update: NodeUpdate) {
    apply(
        s,
        Command::UpdateNode {
            id: nid(id),
            update,
        },
    );
}

fn set_status(s: &mut ClusterState, id: &str, status: NodeStatus) {
    let update = NodeUpdate {
        status: Some(status),
        ..NodeUpdate::default()
    };
    update_node(s, id, update);
}

fn set_availability(s: &mut ClusterState, id: &str, availability: Availability) {
    let update = NodeUpdate {
        availability: Some(availability),
        ..NodeUpdate::default()
    };
    update_node(s, id, update);
}

fn update_task(s: &mut ClusterState, id: &TaskId, update: TaskUpdate) {
    apply(
        s,
        Command::UpdateTask {
            id: id.clone(),
            update,
        },
    );
}

/// Adds task `id` of `s1` in `slot` on `node`, then moves it to `state`.
fn add_task(s: &mut ClusterState, id: &str, slot: Option<u64>, node: &str, state: TaskState) {
    apply(
        s,
        Command::CreateTask {
            id: tid(id),
            service: sid("s1"),
            slot,
            node: Some(nid(node)),
        },
    );
    set_state(s, &tid(id), state);
}

fn set_state(s: &mut ClusterState, id: &TaskId, state: TaskState) {
    let update = TaskUpdate {
        state: Some(state),
        ..TaskUpdate::default()
    };
    update_task(s, id, update);
}

/// One round with `options`: checks that nothing was refused, applies
/// the commands and returns them.
fn round_with(
    s: &mut ClusterState,
    options: &Options,
    ids: &mut impl FnMut() -> Result<TaskId, RandomError>,
) -> Vec<Command> {
    let done = reconcile(s, options, ids).unwrap();
    assert_eq!(done.refused, [], "refused");
    for cmd in &done.commands {
        apply(s, cmd.clone());
    }
    assert_eq!(
        reconcile(s, options, ids).unwrap(),
        Reconciliation::default()
    );
    done.commands
}

/// One round with the default options.
fn round(
    s: &mut ClusterState,
    ids: &mut impl FnMut() -> Result<TaskId, RandomError>,
) -> Vec<Command> {
    round_with(s, &Options::default(), ids)
}

/// The agents start every task assigned to a Ready node and stop every
/// task told to shut down there.
fn agents(s: &mut ClusterState) {
    let moves: Vec<(TaskId, TaskState)> = s
        .tasks()
        .values()
        .filter(|t| !t.state.is_terminal())
        .filter(|t| {
            t.node
                .as_ref()
                .is_some_and(|n| s.node(n).unwrap().status == NodeStatus::Ready)
        })
        .map(|t| match t.desired {
            DesiredState::Running => (t.id.clone(), TaskState::Running),
            DesiredState::Shutdown => (t.id.clone(), TaskState::Shutdown),
        })
        .filter(|(id, to)| s.task(id).unwrap().state != *to)
        .collect();
    for (id, to) in moves {
        set_state(s, &id, to);
    }
}

/// The live tasks of `s1`, in id order.
fn live(s: &ClusterState) -> Vec<&Task> {
    s.tasks()
        .values()
        .filter(|t| t.service == sid("s1") && t.is_live())
        .collect()
}

/// Live tasks of `s1` per node.
fn per_node(s: &ClusterState) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for t in live(s) {
        let node = t.node.as_ref().map_or("-".to_owned(), |n| n.to_string());
        *counts.entry(node).or_default() += 1;
    }
    counts
}

/// The live task of `s1` in `slot`.
fn in_slot(s: &ClusterState, slot: u64) -> &Task {
    let found: Vec<&Task> = live(s)
        .into_iter()
        .filter(|t| t.slot == Some(slot))
        .collect();
    match found[..] {
        [one] => one,
        _ => panic!("slot {slot} has {} live tasks", found.len()),
    }
}

fn map(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}
