//! Tests of the orchestrators over states built by applying commands,
//! with a counter for task ids and helpers that play the agents' part:
//! replicated and global services, rescheduling, placement, garbage
//! collection, restart policies, rolling updates, and property tests over
//! random clusters. Rounds run at [`T0`] unless a test moves the clock.

mod gc;
mod global;
mod placement;
mod props;
mod replicated;
mod reschedule;
mod restart;
mod update;

use std::collections::BTreeMap;

use super::*;
use crate::ids::ServiceId;
use crate::role::Role;
use crate::state::{
    Availability, DesiredState, EndpointMode, Node, NodeUpdate, RestartPolicy, ServiceSpec, Task,
    TaskState, TaskUpdate,
};

/// The time rounds run at unless a test says otherwise.
const T0: u64 = 1_000_000;

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

/// A spec whose stopped tasks are replaced at once (no restart delay),
/// so that tests of other rules need not move the clock.
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
        restart: RestartPolicy {
            delay_ms: 0,
            ..RestartPolicy::default()
        },
        ..ServiceSpec::default()
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
    cluster_with(nodes, spec("web", mode, &[]))
}

/// Ready, Active workers `n1`..`nN` and service `s1` with `spec`.
fn cluster_with(nodes: usize, spec: ServiceSpec) -> ClusterState {
    let mut s = ClusterState::new();
    for i in 1..=nodes {
        apply(&mut s, Command::AddNode(node(&format!("n{i}"))));
    }
    apply(
        &mut s,
        Command::CreateService {
            id: sid("s1"),
            spec,
        },
    );
    s
}

/// Replaces the spec of `s1`.
fn respec(s: &mut ClusterState, spec: ServiceSpec) {
    respec_at(s, spec, T0);
}

/// Replaces the spec of `s1` at `at`.
fn respec_at(s: &mut ClusterState, spec: ServiceSpec, at: u64) {
    let version = s.service(&sid("s1")).unwrap().version;
    apply(
        s,
        Command::UpdateService {
            id: sid("s1"),
            version,
            spec,
            rollback: false,
            at_ms: at,
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
            at_ms: T0,
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

/// An agent's report: `id` moved to `state` at `at`, for `error`.
fn report(s: &mut ClusterState, id: &TaskId, state: TaskState, at: u64, error: Option<&str>) {
    let update = TaskUpdate {
        state: Some(state),
        error: error.map(str::to_owned),
        at_ms: Some(at),
        ..TaskUpdate::default()
    };
    update_task(s, id, update);
}

/// One round with `options` at `now`: checks that nothing was refused,
/// applies the commands, checks that a second round at the same time
/// decides nothing, and returns the commands.
fn run(
    s: &mut ClusterState,
    options: &Options,
    now: u64,
    ids: &mut impl FnMut() -> Result<TaskId, RandomError>,
) -> Vec<Command> {
    let done = reconcile(s, options, now, ids).unwrap();
    assert_eq!(done.refused, [], "refused");
    for cmd in &done.commands {
        apply(s, cmd.clone());
    }
    assert_eq!(
        reconcile(s, options, now, ids).unwrap(),
        Reconciliation::default()
    );
    done.commands
}

/// One round with `options` at [`T0`].
fn round_with(
    s: &mut ClusterState,
    options: &Options,
    ids: &mut impl FnMut() -> Result<TaskId, RandomError>,
) -> Vec<Command> {
    run(s, options, T0, ids)
}

/// One round with the default options at [`T0`].
fn round(
    s: &mut ClusterState,
    ids: &mut impl FnMut() -> Result<TaskId, RandomError>,
) -> Vec<Command> {
    round_with(s, &Options::default(), ids)
}

/// One round with the default options at `now`.
fn round_at(
    s: &mut ClusterState,
    now: u64,
    ids: &mut impl FnMut() -> Result<TaskId, RandomError>,
) -> Vec<Command> {
    run(s, &Options::default(), now, ids)
}

/// The agents start every task assigned to a Ready node and stop every
/// task told to shut down there, reporting at [`T0`].
fn agents(s: &mut ClusterState) {
    agents_at(s, T0);
}

/// [`agents`], reporting at `now`.
fn agents_at(s: &mut ClusterState, now: u64) {
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
        report(s, &id, to, now, None);
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
