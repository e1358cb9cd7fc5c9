//! Random clusters (nodes of every status and availability, some
//! removed; replicated and global services with constraints, some
//! removed; tasks in every state) reconcile in one round: every command
//! applies in order, a second round decides nothing, the same input
//! decides the same, and the result has what each service asks for.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::testkit::{any_availability, any_status};

/// The last one does not parse.
const CONSTRAINTS: [&str; 5] = [
    "node.labels.zone==a",
    "node.labels.zone!=b",
    "node.role==worker",
    "node.hostname!=host-n2",
    "zone=a",
];

const UNPLACED: [TaskState; 5] = [
    TaskState::New,
    TaskState::Pending,
    TaskState::Failed,
    TaskState::Rejected,
    TaskState::Shutdown,
];

const PLACED: [TaskState; 8] = [
    TaskState::Assigned,
    TaskState::Starting,
    TaskState::Running,
    TaskState::Complete,
    TaskState::Shutdown,
    TaskState::Failed,
    TaskState::Rejected,
    TaskState::Orphaned,
];

#[derive(Debug, Clone)]
struct RandomNode {
    status: NodeStatus,
    availability: Availability,
    manager: bool,
    zone: Option<&'static str>,
    removed: bool,
}

#[derive(Debug, Clone)]
struct RandomService {
    /// `None` for global.
    replicas: Option<u64>,
    constraints: Vec<&'static str>,
    max_replicas: Option<u64>,
    removed: bool,
}

#[derive(Debug, Clone)]
struct RandomTask {
    service: usize,
    slot: Option<u64>,
    node: Option<usize>,
    state: usize,
    shutdown: bool,
    error: bool,
}

fn random_node() -> impl Strategy<Value = RandomNode> {
    (
        any_status(4),
        any_availability(4),
        any::<bool>(),
        prop_oneof![Just(None), Just(Some("a")), Just(Some("b"))],
        proptest::bool::weighted(0.15),
    )
        .prop_map(
            |(status, availability, manager, zone, removed)| RandomNode {
                status,
                availability,
                manager,
                zone,
                removed,
            },
        )
}

fn random_service() -> impl Strategy<Value = RandomService> {
    (
        prop_oneof![3 => (0..=8u64).prop_map(Some), 1 => Just(None)],
        proptest::sample::subsequence(CONSTRAINTS.to_vec(), 0..=2),
        proptest::option::of(0..3u64),
        proptest::bool::weighted(0.15),
    )
        .prop_map(
            |(replicas, constraints, max_replicas, removed)| RandomService {
                replicas,
                constraints,
                max_replicas,
                removed,
            },
        )
}

fn random_task() -> impl Strategy<Value = RandomTask> {
    (
        0..8usize,
        proptest::option::of(0..10u64),
        proptest::option::of(0..8usize),
        0..8usize,
        proptest::bool::weighted(0.2),
        any::<bool>(),
    )
        .prop_map(|(service, slot, node, state, shutdown, error)| RandomTask {
            service,
            slot,
            node,
            state,
            shutdown,
            error,
        })
}

fn build(nodes: &[RandomNode], services: &[RandomService], tasks: &[RandomTask]) -> ClusterState {
    let mut s = ClusterState::new();
    for (i, r) in nodes.iter().enumerate() {
        let mut n = node(&format!("n{i}"));
        n.status = r.status;
        n.availability = r.availability;
        if r.manager {
            n.role = Role::Manager;
        }
        if let Some(zone) = r.zone {
            n.labels.insert("zone".into(), zone.into());
        }
        apply(&mut s, Command::AddNode(n));
    }
    for (i, r) in services.iter().enumerate() {
        let mode = r.replicas.map_or(ServiceMode::Global, replicated);
        apply(
            &mut s,
            Command::CreateService {
                id: sid(&format!("s{i}")),
                spec: ServiceSpec {
                    max_replicas: r.max_replicas.unwrap_or(0),
                    ..spec(&format!("svc{i}"), mode, &r.constraints)
                },
            },
        );
    }
    for (k, r) in tasks.iter().enumerate() {
        if services.is_empty() {
            break;
        }
        let node = r
            .node
            .filter(|_| !nodes.is_empty())
            .map(|n| nid(&format!("n{}", n % nodes.len())));
        let state = match node {
            Some(_) => PLACED[r.state % PLACED.len()],
            None => UNPLACED[r.state % UNPLACED.len()],
        };
        let id = tid(&format!("t{k}"));
        apply(
            &mut s,
            Command::CreateTask {
                id: id.clone(),
                service: sid(&format!("s{}", r.service % services.len())),
                slot: r.slot,
                node,
            },
        );
        let update = TaskUpdate {
            state: Some(state),
            desired: r.shutdown.then_some(DesiredState::Shutdown),
            error: r.error.then(|| "stale".to_owned()),
            ..TaskUpdate::default()
        };
        update_task(&mut s, &id, update);
    }
    for (i, r) in nodes.iter().enumerate() {
        if r.removed && !r.manager {
            let id = nid(&format!("n{i}"));
            apply(&mut s, Command::RemoveNode { id, force: true });
        }
    }
    for (i, r) in services.iter().enumerate() {
        if r.removed {
            apply(
                &mut s,
                Command::RemoveService {
                    id: sid(&format!("s{i}")),
                },
            );
        }
    }
    s
}

/// Whether `node` may receive a new task of a service with `constraints`.
fn eligible(node: &Node, constraints: &[Constraint]) -> bool {
    node.status == NodeStatus::Ready
        && node.availability == Availability::Active
        && constraints.iter().all(|c| c.matches(node))
}

/// Checks what the settled state `s` must hold.
fn check_settled(s: &ClusterState, options: &Options) -> Result<(), TestCaseError> {
    for t in s.tasks().values() {
        prop_assert!(
            !(t.state.is_terminal() && t.desired == DesiredState::Running),
            "{t:?}"
        );
        if t.desired == DesiredState::Shutdown && !t.state.is_terminal() {
            let node = t.node.as_ref();
            prop_assert!(node.is_some_and(|n| !is_lost(s, n)), "abandoned {t:?}");
        }
        let Some(service) = s.service(&t.service) else {
            prop_assert!(
                !t.state.is_terminal() && !t.is_live(),
                "{t:?} of a removed service"
            );
            continue;
        };
        if !t.is_live() {
            continue;
        }
        if let Some(n) = &t.node {
            let node = s.node(n);
            prop_assert!(node.is_some(), "{t:?} on a removed node");
            let node = node.unwrap();
            prop_assert!(node.status != NodeStatus::Down, "{t:?} on a down node");
            prop_assert!(
                node.availability != Availability::Drain,
                "{t:?} on a drained node"
            );
            if let Ok(cons) = Constraint::parse_all(&service.spec.constraints) {
                prop_assert!(cons.iter().all(|c| c.matches(node)), "{t:?} unmatched");
            }
        }
    }

    let mut history: BTreeMap<(&ServiceId, Option<u64>, Option<&NodeId>), usize> = BTreeMap::new();
    for t in s.tasks().values().filter(|t| t.state.is_terminal()) {
        *history
            .entry((&t.service, t.slot, t.node.as_ref()))
            .or_default() += 1;
    }
    for service in s.services().values() {
        let limit = options.task_history_limit;
        let live: Vec<&Task> = s
            .tasks()
            .values()
            .filter(|t| t.service == service.id && t.is_live())
            .collect();
        let constraints = Constraint::parse_all(&service.spec.constraints);
        match service.spec.mode {
            ServiceMode::Replicated { replicas } => {
                let mut slots: Vec<u64> = live.iter().filter_map(|t| t.slot).collect();
                slots.sort();
                prop_assert_eq!(&slots, &(1..=replicas).collect::<Vec<_>>());
                prop_assert_eq!(slots.len(), live.len());
                for t in live.iter().filter(|t| t.node.is_none()) {
                    prop_assert_eq!(t.state, TaskState::Pending);
                    prop_assert!(t.error.as_ref().is_some_and(|e| e != "stale"), "{:?}", t);
                }
                let mut by_slot: BTreeMap<Option<u64>, usize> = BTreeMap::new();
                for ((svc, slot, _), count) in &history {
                    if **svc == service.id {
                        *by_slot.entry(*slot).or_default() += count;
                    }
                }
                for (slot, count) in by_slot {
                    prop_assert!(
                        slot.is_some_and(|s| (1..=replicas).contains(&s)),
                        "{slot:?}"
                    );
                    prop_assert!(count <= limit, "slot {slot:?} keeps {count}");
                }

                // Every placed task sits on a node that either keeps
                // what it has or took new ones up to the limit, so all
                // replicas are placed unless every eligible node is full.
                let mut counts: BTreeMap<&NodeId, u64> = BTreeMap::new();
                for n in live.iter().filter_map(|t| t.node.as_ref()) {
                    *counts.entry(n).or_default() += 1;
                }
                let placed: u64 = counts.values().sum();
                let limit = Some(service.spec.max_replicas).filter(|&m| m > 0);
                let mut capacity = 0u64;
                for n in s.nodes().values() {
                    let here = counts.get(&n.id).copied().unwrap_or(0);
                    let open = constraints.as_ref().is_ok_and(|c| eligible(n, c));
                    capacity = capacity.saturating_add(match (open, limit) {
                        (false, _) => here,
                        (true, Some(m)) => here.max(m),
                        (true, None) => u64::MAX,
                    });
                }
                prop_assert_eq!(placed, replicas.min(capacity));
            }
            ServiceMode::Global => {
                let mut nodes: Vec<&NodeId> = Vec::new();
                for t in &live {
                    prop_assert!(t.slot.is_none(), "{:?}", t);
                    prop_assert!(t.node.is_some(), "{:?}", t);
                    nodes.extend(t.node.as_ref());
                }
                let count = nodes.len();
                nodes.dedup();
                prop_assert_eq!(nodes.len(), count, "two tasks on one node");
                if let Ok(cons) = &constraints {
                    for n in s.nodes().values().filter(|n| eligible(n, cons)) {
                        prop_assert!(nodes.contains(&&n.id), "{} not covered", n.id);
                    }
                }
                for ((svc, slot, node), count) in &history {
                    if **svc == service.id {
                        prop_assert!(slot.is_none() && node.is_some_and(|n| s.node(n).is_some()));
                        prop_assert!(*count <= limit);
                    }
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn one_round_settles_any_cluster(
        nodes in proptest::collection::vec(random_node(), 0..7),
        services in proptest::collection::vec(random_service(), 0..5),
        tasks in proptest::collection::vec(random_task(), 0..24),
        history in 0..4usize,
    ) {
        let s = build(&nodes, &services, &tasks);
        let options = Options {
            task_history_limit: history,
        };
        let mut ids = counter();
        let done = reconcile(&s, &options, &mut ids).unwrap();
        prop_assert_eq!(&done.refused, &[]);
        prop_assert_eq!(&reconcile(&s, &options, &mut counter()).unwrap(), &done);

        let mut after = s.clone();
        for cmd in &done.commands {
            if let Err(e) = after.apply(cmd.clone()) {
                return Err(TestCaseError::fail(format!("{cmd:?} refused: {e}")));
            }
        }
        prop_assert_eq!(reconcile(&after, &options, &mut ids).unwrap(), Reconciliation::default());
        check_settled(&after, &options)?;
    }
}
