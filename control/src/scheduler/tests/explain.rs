//! The text users read when a task fits nowhere.

use super::*;

#[test]
fn groups_rejected_nodes_by_reason_in_filter_order() {
    let s = cluster([
        with_labels(node("n1"), &[("zone", "b")]),
        with_availability(
            with_labels(node("n2"), &[("zone", "a")]),
            Availability::Drain,
        ),
        with_availability(node("n3"), Availability::Drain),
    ]);
    let err = refusal(&s, &constraints(&["node.labels.zone==a"]), None);
    assert_eq!(
        err.to_string(),
        "no suitable node (2 nodes not available: drained; 1 node: constraint node.labels.zone==a)"
    );
    assert_eq!(
        err.rejected[0].nodes,
        vec![NodeId::new("n2").unwrap(), NodeId::new("n3").unwrap()]
    );
}

#[test]
fn every_reason_has_its_place() {
    let mut s = cluster([
        with_status(node("n1"), NodeStatus::Down),
        with_status(node("n2"), NodeStatus::Unknown),
        with_availability(node("n3"), Availability::Pause),
        with_labels(node("n4"), &[("zone", "a")]),
        with_labels(node("n5"), &[("zone", "a"), ("disk", "hdd")]),
        with_labels(node("n6"), &[("zone", "a"), ("disk", "ssd")]),
    ]);
    add_task(&mut s, "t1", "s1", "n6", TaskState::Running);
    let cons = constraints(&[
        "node.labels.zone==a",
        "node.labels.disk!=hdd",
        "node.labels.disk==ssd",
    ]);
    assert_eq!(
        refusal(&s, &cons, Some(1)).to_string(),
        "no suitable node (1 node not available: down; 1 node not available: unknown status; \
         1 node not available: paused; 1 node: constraint node.labels.disk!=hdd; \
         1 node: constraint node.labels.disk==ssd; 1 node: max replicas per node (1))"
    );
}

#[test]
fn an_empty_swarm_says_so() {
    let s = cluster([]);
    assert_eq!(
        refusal(&s, &[], None).to_string(),
        "no suitable node (the swarm has no nodes)"
    );
}

#[test]
fn later_tasks_of_a_failed_call_fail_the_same_way() {
    let s = cluster([with_availability(node("n1"), Availability::Drain)]);
    let placements = schedule(&s, web(&s), &[], None, &pending(2));
    assert_eq!(placements.len(), 2);
    assert_eq!(placements[0].result, placements[1].result);
    assert_eq!(placements[1].task, task_id("p2"));
}
