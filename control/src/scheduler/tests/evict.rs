//! Live tasks leave nodes that are down, drained, or no longer match;
//! paused nodes keep theirs.

use super::*;

fn ids(tasks: Vec<TaskId>) -> Vec<String> {
    tasks.into_iter().map(|t| t.to_string()).collect()
}

#[test]
fn tasks_leave_down_and_drained_nodes_but_not_paused_ones() {
    let mut s = cluster(nodes(5));
    for (task, n) in [
        ("t1", "n1"),
        ("t2", "n2"),
        ("t3", "n3"),
        ("t4", "n4"),
        ("t5", "n5"),
    ] {
        add_task(&mut s, task, "s1", n, TaskState::Running);
    }
    let set = |status, availability| NodeUpdate {
        status,
        availability,
        ..Default::default()
    };
    update_node(&mut s, "n1", set(Some(NodeStatus::Down), None));
    update_node(&mut s, "n2", set(None, Some(Availability::Drain)));
    update_node(&mut s, "n3", set(None, Some(Availability::Pause)));
    update_node(&mut s, "n4", set(Some(NodeStatus::Unknown), None));
    assert_eq!(ids(evictions(&s, web(&s), &[])), ["t1", "t2"]);
}

#[test]
fn tasks_leave_nodes_that_no_longer_satisfy_the_constraints() {
    let mut s = cluster([
        with_labels(node("n1"), &[("zone", "a")]),
        with_labels(node("n2"), &[("zone", "a")]),
    ]);
    add_task(&mut s, "t1", "s1", "n1", TaskState::Running);
    add_task(&mut s, "t2", "s1", "n2", TaskState::Starting);
    let cons = constraints(&["node.labels.zone==a"]);
    assert!(evictions(&s, web(&s), &cons).is_empty());
    update_node(
        &mut s,
        "n2",
        NodeUpdate {
            labels_rm: ["zone".to_string()].into(),
            ..Default::default()
        },
    );
    assert_eq!(ids(evictions(&s, web(&s), &cons)), ["t2"]);
}

#[test]
fn only_live_tasks_of_the_service_are_evicted() {
    let mut s = cluster(nodes(1));
    add_task(&mut s, "t1", "s1", "n1", TaskState::Running);
    add_task(&mut s, "t2", "s1", "n1", TaskState::Failed);
    add_task(&mut s, "t3", "s2", "n1", TaskState::Running);
    add_task(&mut s, "t4", "s1", "n1", TaskState::Running);
    update_task(
        &mut s,
        "t4",
        TaskUpdate {
            desired: Some(DesiredState::Shutdown),
            ..Default::default()
        },
    );
    update_node(
        &mut s,
        "n1",
        NodeUpdate {
            availability: Some(Availability::Drain),
            ..Default::default()
        },
    );
    assert_eq!(ids(evictions(&s, web(&s), &[])), ["t1"]);
}
