//! Each filter rejects what it should, with its reason.

use super::*;

#[test]
fn only_ready_nodes_take_tasks() {
    let s = cluster([
        with_status(node("n1"), NodeStatus::Down),
        with_status(node("n2"), NodeStatus::Unknown),
        node("n3"),
    ]);
    assert_eq!(shares(&s, &[], None, 2), map(&[("n3", 2)]));

    let s = cluster([with_status(node("n1"), NodeStatus::Down)]);
    let err = refusal(&s, &[], None);
    assert_eq!(err.rejected[0].reason, Rejection::Down);
    assert_eq!(err.rejected[0].reason.to_string(), "down");

    let s = cluster([with_status(node("n1"), NodeStatus::Unknown)]);
    let err = refusal(&s, &[], None);
    assert_eq!(err.rejected[0].reason.to_string(), "unknown status");
}

#[test]
fn only_active_nodes_take_tasks() {
    let s = cluster([
        with_availability(node("n1"), Availability::Drain),
        with_availability(node("n2"), Availability::Pause),
        node("n3"),
    ]);
    assert_eq!(shares(&s, &[], None, 2), map(&[("n3", 2)]));

    let s = cluster([with_availability(node("n1"), Availability::Drain)]);
    assert_eq!(
        refusal(&s, &[], None).rejected[0].reason.to_string(),
        "drained"
    );
    let s = cluster([with_availability(node("n1"), Availability::Pause)]);
    assert_eq!(
        refusal(&s, &[], None).rejected[0].reason.to_string(),
        "paused"
    );
}

#[test]
fn status_is_checked_before_availability() {
    let s = cluster([with_availability(
        with_status(node("n1"), NodeStatus::Down),
        Availability::Drain,
    )]);
    assert_eq!(refusal(&s, &[], None).rejected[0].reason, Rejection::Down);
}

#[test]
fn constraints_filter_and_the_first_failing_one_is_named() {
    let s = cluster([
        with_labels(node("n1"), &[("zone", "a"), ("disk", "ssd")]),
        with_labels(node("n2"), &[("zone", "a")]),
        with_labels(node("n3"), &[("zone", "b"), ("disk", "ssd")]),
    ]);
    let cons = constraints(&["node.labels.zone==a", "node.labels.disk==ssd"]);
    assert_eq!(shares(&s, &cons, None, 3), map(&[("n1", 3)]));

    let cons = constraints(&["node.labels.zone==c", "node.labels.disk==ssd"]);
    let err = refusal(&s, &cons, None);
    assert_eq!(err.rejected.len(), 1, "{err}");
    assert_eq!(
        err.rejected[0].reason.to_string(),
        "constraint node.labels.zone==c"
    );
    assert_eq!(err.rejected[0].nodes.len(), 3);
}

#[test]
fn constraints_are_checked_after_status_and_availability() {
    let s = cluster([with_availability(node("n1"), Availability::Pause)]);
    let err = refusal(&s, &constraints(&["node.role==manager"]), None);
    assert_eq!(err.rejected[0].reason, Rejection::Paused);
}

#[test]
fn max_replicas_caps_each_node_counting_running_and_new_tasks() {
    let mut s = cluster(nodes(2));
    add_task(&mut s, "t1", "s1", "n1", TaskState::Running);
    add_task(&mut s, "t2", "s1", "n1", TaskState::Running);
    let placements = schedule(&s, web(&s), &[], Some(2), &pending(3));
    let results: Vec<_> = placements
        .iter()
        .map(|p| p.result.clone().map(|n| n.to_string()))
        .collect();
    assert_eq!(results[0], Ok("n2".into()));
    assert_eq!(results[1], Ok("n2".into()));
    let err = results[2].clone().unwrap_err();
    assert_eq!(err.rejected.len(), 1);
    assert_eq!(err.rejected[0].reason, Rejection::MaxReplicas(2));
    assert_eq!(
        err.rejected[0].reason.to_string(),
        "max replicas per node (2)"
    );
    assert_eq!(
        err.to_string(),
        "no suitable node (2 nodes: max replicas per node (2))"
    );
}

#[test]
fn max_replicas_zero_means_no_limit_as_in_swarm() {
    let s = cluster(nodes(1));
    assert_eq!(shares(&s, &[], Some(0), 4), map(&[("n1", 4)]));
}

#[test]
fn max_replicas_ignores_other_services_and_finished_tasks() {
    let mut s = cluster(nodes(1));
    add_task(&mut s, "t1", "s2", "n1", TaskState::Running);
    add_task(&mut s, "t2", "s1", "n1", TaskState::Failed);
    assert_eq!(shares(&s, &[], Some(1), 1), map(&[("n1", 1)]));
}
