//! Random clusters (nodes of every status and availability, some
//! removed; replicated and global services with constraints, restart
//! policies and update configs, updated, rolled back or paused, some
//! removed; tasks of every spec version, in every state, at random times)
//! reconcile in one round at a random time: every command applies in
//! order, a second round at the same time decides nothing, the same input
//! decides the same, and the result has what each service asks for, or
//! what its restart policy and update allow.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::orchestrator::place::{Place, by_place, is_outdated, place_of};
use crate::orchestrator::{restart, update};
use crate::state::{
    FailureAction, RestartCondition, Service, UpdateConfig, UpdateOrder, UpdateState, UpdateStatus,
};
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
    restart: RestartPolicy,
    update: UpdateConfig,
    rollback: UpdateConfig,
    /// How many updates that replace tasks it goes through.
    updates: usize,
    rolled_back: bool,
    /// A progress recorded over whatever the updates left.
    status: Option<UpdateState>,
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
    /// After how many updates of the services it is created.
    stage: usize,
    /// When, after the stage's updates.
    created: u64,
    /// Whether it reported Running before its final state, and when.
    ran: Option<u64>,
    /// How long after that its final state was reported, if with a time.
    reported: Option<u64>,
}

/// When the services' updates of each stage happen.
const STAGE_MS: u64 = 5000;
const STAGES: usize = 3;

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

fn random_restart() -> impl Strategy<Value = RestartPolicy> {
    (
        proptest::sample::select(vec![
            RestartCondition::Any,
            RestartCondition::OnFailure,
            RestartCondition::None,
        ]),
        proptest::sample::select(vec![0, 1000, 5000u64]),
        0..3u64,
        proptest::sample::select(vec![0, 3000, 20000u64]),
    )
        .prop_map(
            |(condition, delay_ms, max_attempts, window_ms)| RestartPolicy {
                condition,
                delay_ms,
                max_attempts,
                window_ms,
            },
        )
}

fn random_update_config() -> impl Strategy<Value = UpdateConfig> {
    (
        0..3u64,
        proptest::sample::select(vec![0, 2000u64]),
        proptest::sample::select(vec![
            FailureAction::Pause,
            FailureAction::Continue,
            FailureAction::Rollback,
        ]),
        proptest::sample::select(vec![0, 1000, 5000u64]),
        proptest::sample::select(vec![0, 300, 1000u64]),
        any::<bool>(),
    )
        .prop_map(
            |(parallelism, delay_ms, failure_action, monitor_ms, ratio, start_first)| {
                UpdateConfig {
                    parallelism,
                    delay_ms,
                    failure_action,
                    monitor_ms,
                    max_failure_ratio_permille: ratio,
                    order: if start_first {
                        UpdateOrder::StartFirst
                    } else {
                        UpdateOrder::StopFirst
                    },
                }
            },
        )
}

fn random_status() -> impl Strategy<Value = Option<UpdateState>> {
    prop_oneof![
        3 => Just(None),
        1 => proptest::sample::select(vec![
            UpdateState::Updating,
            UpdateState::Paused,
            UpdateState::Completed,
            UpdateState::RollbackStarted,
            UpdateState::RollbackPaused,
            UpdateState::RollbackCompleted,
        ])
        .prop_map(Some),
    ]
}

fn random_service() -> impl Strategy<Value = RandomService> {
    (
        (
            prop_oneof![3 => (0..=8u64).prop_map(Some), 1 => Just(None)],
            proptest::sample::subsequence(CONSTRAINTS.to_vec(), 0..=2),
            proptest::option::of(0..3u64),
            proptest::bool::weighted(0.15),
        ),
        (
            random_restart(),
            random_update_config(),
            random_update_config(),
            0..=STAGES,
            proptest::bool::weighted(0.3),
            random_status(),
        ),
    )
        .prop_map(
            |(
                (replicas, constraints, max_replicas, removed),
                (restart, update, rollback, updates, rolled_back, status),
            )| RandomService {
                replicas,
                constraints,
                max_replicas,
                restart,
                update,
                rollback,
                updates,
                rolled_back,
                status,
                removed,
            },
        )
}

fn random_task() -> impl Strategy<Value = RandomTask> {
    (
        (
            0..8usize,
            proptest::option::of(0..10u64),
            proptest::option::of(0..8usize),
            0..8usize,
            proptest::bool::weighted(0.2),
            any::<bool>(),
        ),
        (
            0..=STAGES,
            0..STAGE_MS,
            proptest::option::of(0..4000u64),
            proptest::option::of(0..8000u64),
        ),
    )
        .prop_map(
            |((service, slot, node, state, shutdown, error), (stage, created, ran, reported))| {
                RandomTask {
                    service,
                    slot,
                    node,
                    state,
                    shutdown,
                    error,
                    stage,
                    created,
                    ran,
                    reported,
                }
            },
        )
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
    let spec_of = |i: usize, r: &RandomService, stage: usize| {
        let mode = r.replicas.map_or(ServiceMode::Global, replicated);
        ServiceSpec {
            env: vec![format!("STAGE={stage}")],
            max_replicas: r.max_replicas.unwrap_or(0),
            restart: r.restart,
            update: r.update,
            rollback: r.rollback,
            ..spec(&format!("svc{i}"), mode, &r.constraints)
        }
    };
    for (i, r) in services.iter().enumerate() {
        apply(
            &mut s,
            Command::CreateService {
                id: sid(&format!("s{i}")),
                spec: spec_of(i, r, 0),
            },
        );
    }
    for stage in 0..=STAGES {
        let at = stage as u64 * STAGE_MS;
        for (i, r) in services.iter().enumerate() {
            if stage > 0 && r.updates >= stage {
                let id = sid(&format!("s{i}"));
                let version = s.service(&id).unwrap().version;
                let spec = spec_of(i, r, stage);
                let update = Command::UpdateService {
                    id,
                    version,
                    spec,
                    rollback: false,
                    at_ms: at,
                };
                apply(&mut s, update);
            }
        }
        for (k, r) in tasks.iter().enumerate() {
            if services.is_empty() || r.stage != stage {
                continue;
            }
            add_random_task(&mut s, nodes.len(), services.len(), k, r, at);
        }
    }
    let end = (STAGES as u64 + 1) * STAGE_MS;
    for (i, r) in services.iter().enumerate() {
        let id = sid(&format!("s{i}"));
        let service = s.service(&id).unwrap().clone();
        if r.rolled_back
            && let Some(spec) = service.previous_spec
        {
            let rollback = Command::UpdateService {
                id: id.clone(),
                version: service.version,
                spec,
                rollback: true,
                at_ms: end,
            };
            apply(&mut s, rollback);
        }
        if let Some(state) = r.status {
            let service = s.service(&id).unwrap();
            let status = Command::SetUpdateStatus {
                id: id.clone(),
                version: service.version,
                status: UpdateStatus {
                    state,
                    message: "set by the test".into(),
                    started_ms: end,
                },
            };
            apply(&mut s, status);
        }
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

/// Creates task `t<k>` as `r` says, at `at` plus its offset.
fn add_random_task(
    s: &mut ClusterState,
    nodes: usize,
    services: usize,
    k: usize,
    r: &RandomTask,
    at: u64,
) {
    let node = r
        .node
        .filter(|_| nodes > 0)
        .map(|n| nid(&format!("n{}", n % nodes)));
    let state = match node {
        Some(_) => PLACED[r.state % PLACED.len()],
        None => UNPLACED[r.state % UNPLACED.len()],
    };
    let id = tid(&format!("t{k}"));
    let created = at + r.created;
    apply(
        s,
        Command::CreateTask {
            id: id.clone(),
            service: sid(&format!("s{}", r.service % services)),
            slot: r.slot,
            node: node.clone(),
            at_ms: created,
        },
    );
    let mut last = created;
    if let Some(ran) = r
        .ran
        .filter(|_| node.is_some() && state > TaskState::Running)
    {
        last += ran;
        report(s, &id, TaskState::Running, last, None);
    }
    let update = TaskUpdate {
        state: Some(state),
        desired: r.shutdown.then_some(DesiredState::Shutdown),
        error: r.error.then(|| "stale".to_owned()),
        at_ms: r.reported.map(|after| last + after),
        ..TaskUpdate::default()
    };
    update_task(s, &id, update);
}

/// Whether `node` may receive a new task of a service with `constraints`.
fn eligible(node: &Node, constraints: &[Constraint]) -> bool {
    node.status == NodeStatus::Ready
        && node.availability == Availability::Active
        && constraints.iter().all(|c| c.matches(node))
}

/// Checks what the settled state `s` must hold.
fn check_settled(s: &ClusterState, options: &Options, now: u64) -> Result<(), TestCaseError> {
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

    for service in s.services().values() {
        check_places(s, options, service, now)?;
    }
    Ok(())
}

/// Checks the places of `service`: terminal tasks only in places that
/// exist, no more of them than the history limit or the restart policy
/// keeps, and in each place one live task, or a new one starting beside
/// an outdated one (start-first), or none when the restart policy or a
/// stop-first update holds it empty.
fn check_places(
    s: &ClusterState,
    options: &Options,
    service: &Service,
    now: u64,
) -> Result<(), TestCaseError> {
    let live: Vec<&Task> = s
        .tasks()
        .values()
        .filter(|t| t.service == service.id && t.is_live())
        .collect();
    for t in s.tasks().values().filter(|t| t.service == service.id) {
        if t.state.is_terminal() || t.is_live() {
            prop_assert!(place_of(s, service, t).is_some(), "{t:?} belongs nowhere");
        }
    }
    let max = service.spec.restart.max_attempts;
    let kept = if max > 0 { max as usize + 2 } else { 1 };
    let places = by_place(s, service);
    for (place, tasks) in &places {
        let terminal = tasks.iter().filter(|t| t.state.is_terminal()).count();
        let bound = options.task_history_limit.max(kept);
        prop_assert!(terminal <= bound, "{place:?} keeps {terminal}");
        let here: Vec<&&Task> = tasks.iter().filter(|t| t.is_live()).collect();
        match here[..] {
            [] | [_] => {}
            [a, b] => {
                let (new, old) = if is_outdated(service, a) {
                    (b, a)
                } else {
                    (a, b)
                };
                prop_assert!(
                    !is_outdated(service, new) && is_outdated(service, old),
                    "{place:?}"
                );
                prop_assert!(new.state < TaskState::Running, "{place:?}: {new:?} runs");
            }
            _ => prop_assert!(false, "{place:?} has {} live tasks", here.len()),
        }
    }
    let constraints = Constraint::parse_all(&service.spec.constraints);
    let expected: Vec<Place> = match service.spec.mode {
        ServiceMode::Replicated { replicas } => (1..=replicas).map(Place::Slot).collect(),
        ServiceMode::Global => match &constraints {
            Ok(cons) => s
                .nodes()
                .values()
                .filter(|n| eligible(n, cons))
                .map(|n| Place::Node(n.id.clone()))
                .collect(),
            Err(_) => Vec::new(),
        },
    };
    for place in &expected {
        let tasks = places.get(place).map_or(&[][..], Vec::as_slice);
        if !tasks.iter().any(|t| t.is_live()) {
            prop_assert!(
                !restart::may_start(service, tasks, now) || update::must_wait(s, service, tasks),
                "{place:?} left empty"
            );
        }
    }

    match service.spec.mode {
        ServiceMode::Replicated { .. } => {
            for t in live.iter().filter(|t| t.node.is_none()) {
                prop_assert_eq!(t.state, TaskState::Pending);
                prop_assert!(t.error.as_ref().is_some_and(|e| e != "stale"), "{:?}", t);
            }
            // Every placed task sits on a node that either keeps what it
            // has or took new ones up to the limit, so all live tasks are
            // placed unless every eligible node is full.
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
            prop_assert_eq!(placed, (live.len() as u64).min(capacity));
        }
        ServiceMode::Global => {
            for t in &live {
                prop_assert!(t.slot.is_none() && t.node.is_some(), "{:?}", t);
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
        now in 0..(STAGES as u64 + 3) * STAGE_MS,
    ) {
        let s = build(&nodes, &services, &tasks);
        let options = Options {
            task_history_limit: history,
        };
        let mut ids = counter();
        let done = reconcile(&s, &options, now, &mut ids).unwrap();
        prop_assert_eq!(&done.refused, &[]);
        prop_assert_eq!(&reconcile(&s, &options, now, &mut counter()).unwrap(), &done);

        let mut after = s.clone();
        for cmd in &done.commands {
            if let Err(e) = after.apply(cmd.clone()) {
                return Err(TestCaseError::fail(format!("{cmd:?} refused: {e}")));
            }
        }
        prop_assert_eq!(
            reconcile(&after, &options, now, &mut ids).unwrap(),
            Reconciliation::default()
        );
        check_settled(&after, &options, now)?;
    }
}
