//! Random clusters: every placement passes every filter, an empty cluster
//! fills evenly, max replicas holds, and failures account for every node.

use proptest::prelude::*;

use super::*;
use crate::testkit::{any_availability, any_status};

const CONSTRAINTS: [&str; 4] = [
    "node.labels.zone==a",
    "node.labels.zone!=b",
    "node.role==worker",
    "node.hostname!=host-n2",
];

#[derive(Debug, Clone)]
struct RandomNode {
    status: NodeStatus,
    availability: Availability,
    manager: bool,
    zone: Option<&'static str>,
}

fn random_node() -> impl Strategy<Value = RandomNode> {
    (
        any_status(6),
        any_availability(6),
        any::<bool>(),
        prop_oneof![Just(None), Just(Some("a")), Just(Some("b"))],
    )
        .prop_map(|(status, availability, manager, zone)| RandomNode {
            status,
            availability,
            manager,
            zone,
        })
}

fn build(random: &[RandomNode]) -> ClusterState {
    cluster(random.iter().enumerate().map(|(i, r)| {
        let mut n = with_availability(
            with_status(node(&format!("n{i}")), r.status),
            r.availability,
        );
        if r.manager {
            n.role = Role::Manager;
        }
        match r.zone {
            Some(zone) => with_labels(n, &[("zone", zone)]),
            None => n,
        }
    }))
}

fn passes(n: &Node, cons: &[Constraint]) -> bool {
    n.status == NodeStatus::Ready
        && n.availability == Availability::Active
        && cons.iter().all(|c| c.matches(n))
}

/// Live tasks of `web` per node after the placements.
fn counts(s: &ClusterState, placements: &[Placement]) -> BTreeMap<NodeId, u64> {
    let mut counts: BTreeMap<NodeId, u64> = BTreeMap::new();
    let existing = s
        .tasks()
        .values()
        .filter(|t| t.service == web(s).id && t.is_live());
    for n in existing.filter_map(|t| t.node.clone()) {
        *counts.entry(n).or_default() += 1;
    }
    for p in placements {
        if let Ok(n) = &p.result {
            *counts.entry(n.clone()).or_default() += 1;
        }
    }
    counts
}

proptest! {
    #[test]
    fn an_empty_cluster_fills_evenly_within_the_filters(
        random in proptest::collection::vec(random_node(), 0..8),
        picked in proptest::sample::subsequence(CONSTRAINTS.to_vec(), 0..=2),
        max in proptest::option::of(0..4u64),
        replicas in 0..20usize,
    ) {
        let s = build(&random);
        let cons = constraints(&picked);
        let placements = schedule(&s, web(&s), &cons, max, &pending(replicas));
        prop_assert_eq!(placements.len(), replicas);

        let eligible: Vec<&NodeId> =
            s.nodes().values().filter(|n| passes(n, &cons)).map(|n| &n.id).collect();
        for p in &placements {
            match &p.result {
                Ok(id) => prop_assert!(eligible.contains(&id), "{} on ineligible {}", p.task, id),
                Err(e) => {
                    let rejected: usize = e.rejected.iter().map(|r| r.nodes.len()).sum();
                    prop_assert_eq!(rejected, s.nodes().len());
                }
            }
        }

        let counts = counts(&s, &placements);
        let per_node: Vec<u64> =
            eligible.iter().map(|id| counts.get(*id).copied().unwrap_or(0)).collect();
        if let (Some(lo), Some(hi)) = (per_node.iter().min(), per_node.iter().max()) {
            prop_assert!(hi - lo <= 1, "uneven spread {:?}", per_node);
        }
        let limit = max.filter(|&m| m > 0);
        if let Some(m) = limit {
            prop_assert!(counts.values().all(|&c| c <= m), "{:?} over {}", counts, m);
        }
        let capacity = limit.map_or(usize::MAX, |m| eligible.len() * m as usize);
        let placed = placements.iter().filter(|p| p.result.is_ok()).count();
        prop_assert_eq!(placed, replicas.min(if eligible.is_empty() { 0 } else { capacity }));
    }

    #[test]
    fn existing_tasks_never_push_a_node_over_max_replicas(
        random in proptest::collection::vec(random_node(), 1..6),
        existing in proptest::collection::vec((0..6usize, any::<bool>()), 0..12),
        picked in proptest::sample::subsequence(CONSTRAINTS.to_vec(), 0..=2),
        max in 1..4u64,
        replicas in 0..12usize,
    ) {
        let mut s = build(&random);
        let mut before: BTreeMap<NodeId, u64> = BTreeMap::new();
        for (i, (n, other)) in existing.iter().enumerate() {
            let node = format!("n{}", n % random.len());
            let service = if *other { "s2" } else { "s1" };
            add_task(&mut s, &format!("t{i}"), service, &node, TaskState::Running);
            if !other {
                *before.entry(NodeId::new(node).unwrap()).or_default() += 1;
            }
        }
        let cons = constraints(&picked);
        let placements = schedule(&s, web(&s), &cons, Some(max), &pending(replicas));
        prop_assert_eq!(&placements, &schedule(&s, web(&s), &cons, Some(max), &pending(replicas)));

        let after = counts(&s, &placements);
        for p in &placements {
            if let Ok(id) = &p.result {
                prop_assert!(passes(s.node(id).unwrap(), &cons));
                prop_assert!(after[id] <= max.max(before.get(id).copied().unwrap_or(0)));
            }
        }
    }
}
