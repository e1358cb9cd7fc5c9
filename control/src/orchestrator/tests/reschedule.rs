//! Tasks move off nodes that go down, are drained, are removed or no
//! longer match; paused nodes and nodes of unknown status keep theirs.

use super::*;

/// `s1` with three replicas running on n1, n2 and n3.
fn three_on_three() -> (ClusterState, impl FnMut() -> Result<TaskId, RandomError>) {
    let mut s = cluster(3, replicated(3));
    let mut ids = counter();
    round(&mut s, &mut ids);
    agents(&mut s);
    assert_eq!(per_node(&s), map(&[("n1", 1), ("n2", 1), ("n3", 1)]));
    (s, ids)
}

fn on(s: &ClusterState, node: &str) -> TaskId {
    let found: Vec<&Task> = live(s)
        .into_iter()
        .filter(|t| t.node == Some(nid(node)))
        .collect();
    assert_eq!(found.len(), 1, "live tasks on {node}");
    found[0].id.clone()
}

#[test]
fn a_node_going_down_moves_its_tasks_in_one_round() {
    let (mut s, mut ids) = three_on_three();
    let lost = on(&s, "n2");
    let slot = s.task(&lost).unwrap().slot.unwrap();
    set_status(&mut s, "n2", NodeStatus::Down);

    round(&mut s, &mut ids);
    let old = s.task(&lost).unwrap();
    assert_eq!(
        (old.desired, old.state),
        (DesiredState::Shutdown, TaskState::Orphaned)
    );
    let new = in_slot(&s, slot);
    assert_eq!(new.state, TaskState::Assigned);
    assert_eq!(new.node, Some(nid("n1")));
    assert_eq!(per_node(&s), map(&[("n1", 2), ("n3", 1)]));
}

#[test]
fn drain_moves_tasks_and_leaves_them_for_the_agent_to_stop() {
    let (mut s, mut ids) = three_on_three();
    let drained = on(&s, "n3");
    set_availability(&mut s, "n3", Availability::Drain);

    round(&mut s, &mut ids);
    let old = s.task(&drained).unwrap();
    assert_eq!(
        (old.desired, old.state),
        (DesiredState::Shutdown, TaskState::Running)
    );
    assert_eq!(per_node(&s), map(&[("n1", 2), ("n2", 1)]));
    agents(&mut s);
    assert_eq!(s.task(&drained).unwrap().state, TaskState::Shutdown);
    assert_eq!(round(&mut s, &mut ids), []);
}

#[test]
fn pause_and_unknown_status_keep_their_tasks() {
    let (mut s, mut ids) = three_on_three();
    set_availability(&mut s, "n1", Availability::Pause);
    set_status(&mut s, "n2", NodeStatus::Unknown);
    assert_eq!(round(&mut s, &mut ids), []);
    assert_eq!(per_node(&s), map(&[("n1", 1), ("n2", 1), ("n3", 1)]));
}

#[test]
fn a_node_that_no_longer_matches_the_constraints_loses_its_tasks() {
    let mut s = cluster(0, replicated(2));
    for id in ["n1", "n2"] {
        let mut n = node(id);
        n.labels.insert("zone".into(), "a".into());
        apply(&mut s, Command::AddNode(n));
    }
    respec(&mut s, spec("web", replicated(2), &["node.labels.zone==a"]));
    let mut ids = counter();
    round(&mut s, &mut ids);
    agents(&mut s);
    let moved = on(&s, "n2");

    update_node(
        &mut s,
        "n2",
        NodeUpdate {
            labels_add: [("zone".to_string(), "b".to_string())].into(),
            ..NodeUpdate::default()
        },
    );
    round(&mut s, &mut ids);
    assert_eq!(s.task(&moved).unwrap().desired, DesiredState::Shutdown);
    assert_eq!(per_node(&s), map(&[("n1", 2)]));
}

#[test]
fn the_tasks_of_a_removed_node_are_replaced_and_forgotten() {
    let (mut s, mut ids) = three_on_three();
    let gone = on(&s, "n3");
    apply(
        &mut s,
        Command::RemoveNode {
            id: nid("n3"),
            force: true,
        },
    );
    round(&mut s, &mut ids);
    assert_eq!(per_node(&s), map(&[("n1", 2), ("n2", 1)]));
    // The state orphaned it; its slot still exists, so it stays as that
    // slot's history.
    assert_eq!(s.task(&gone).unwrap().state, TaskState::Orphaned);
}

#[test]
fn a_task_on_a_down_node_that_was_already_told_to_stop_is_orphaned() {
    let (mut s, mut ids) = three_on_three();
    scale(&mut s, 2);
    let stopping = in_slot(&s, 3).id.clone();
    let node = s.task(&stopping).unwrap().node.clone().unwrap();
    round(&mut s, &mut ids);
    set_status(&mut s, node.as_str(), NodeStatus::Down);

    round(&mut s, &mut ids);
    // Orphaned, then removed: slot 3 no longer exists.
    assert!(s.task(&stopping).is_none());
}
