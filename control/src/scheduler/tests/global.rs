//! Global services get one task on every eligible node that lacks one.

use super::*;

fn ids(nodes: Vec<NodeId>) -> Vec<String> {
    nodes.into_iter().map(|n| n.to_string()).collect()
}

#[test]
fn every_eligible_node_without_a_live_task_is_a_target() {
    let mut s = cluster([
        node("n1"),
        node("n2"),
        node("n3"),
        with_status(node("n4"), NodeStatus::Down),
        with_status(node("n5"), NodeStatus::Unknown),
        with_availability(node("n6"), Availability::Drain),
        with_availability(node("n7"), Availability::Pause),
        node("n8"),
    ]);
    add_task(&mut s, "t1", "s1", "n1", TaskState::Running);
    add_task(&mut s, "t2", "s1", "n2", TaskState::Failed);
    add_task(&mut s, "t3", "s2", "n3", TaskState::Running);
    add_task(&mut s, "t4", "s1", "n8", TaskState::Assigned);
    assert_eq!(ids(global_targets(&s, web(&s), &[])), ["n2", "n3"]);
}

#[test]
fn a_task_told_to_stop_no_longer_serves_its_node() {
    let mut s = cluster(nodes(1));
    add_task(&mut s, "t1", "s1", "n1", TaskState::Running);
    assert!(global_targets(&s, web(&s), &[]).is_empty());
    update_task(
        &mut s,
        "t1",
        TaskUpdate {
            desired: Some(DesiredState::Shutdown),
            ..Default::default()
        },
    );
    assert_eq!(ids(global_targets(&s, web(&s), &[])), ["n1"]);
}

#[test]
fn constraints_limit_the_targets() {
    let s = cluster([
        with_labels(node("n1"), &[("zone", "a")]),
        with_labels(node("n2"), &[("zone", "b")]),
        node("n3"),
    ]);
    let cons = constraints(&["node.labels.zone!=b"]);
    assert_eq!(ids(global_targets(&s, web(&s), &cons)), ["n1", "n3"]);
}
