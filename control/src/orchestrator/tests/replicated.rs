//! Slots: scaling up and down, duplicates, leftovers of global mode, and
//! replacing tasks that stopped.

use super::*;

#[test]
fn a_new_service_gets_one_placed_task_per_slot() {
    let mut s = cluster(3, replicated(3));
    let ids = &mut counter();
    let cmds = round(&mut s, ids);
    // Three creations, three placements.
    assert_eq!(cmds.len(), 6);
    for slot in 1..=3 {
        let t = in_slot(&s, slot);
        assert_eq!(t.state, TaskState::Assigned);
    }
    assert_eq!(per_node(&s), map(&[("n1", 1), ("n2", 1), ("n3", 1)]));
}

#[test]
fn scaling_up_from_2_to_5_spreads_over_3_nodes() {
    let mut s = cluster(3, replicated(2));
    let ids = &mut counter();
    round(&mut s, ids);
    agents(&mut s);
    assert_eq!(per_node(&s), map(&[("n1", 1), ("n2", 1)]));

    scale(&mut s, 5);
    let cmds = round(&mut s, ids);
    let created: Vec<Option<u64>> = cmds
        .iter()
        .filter_map(|c| match c {
            Command::CreateTask { slot, node, .. } => {
                assert_eq!(node, &None);
                Some(*slot)
            }
            _ => None,
        })
        .collect();
    assert_eq!(created, [Some(3), Some(4), Some(5)]);
    assert_eq!(per_node(&s), map(&[("n1", 2), ("n2", 2), ("n3", 1)]));
    assert!((1..=5).all(|slot| in_slot(&s, slot).node.is_some()));
}

#[test]
fn scaling_down_from_5_to_2_shuts_down_slots_3_to_5() {
    let mut s = cluster(3, replicated(5));
    let ids = &mut counter();
    round(&mut s, ids);
    agents(&mut s);
    let doomed: Vec<TaskId> = (3..=5).map(|slot| in_slot(&s, slot).id.clone()).collect();

    scale(&mut s, 2);
    let cmds = round(&mut s, ids);
    let expected: Vec<Command> = doomed
        .iter()
        .map(|id| Command::UpdateTask {
            id: id.clone(),
            update: TaskUpdate {
                desired: Some(DesiredState::Shutdown),
                ..TaskUpdate::default()
            },
        })
        .collect();
    assert_eq!(cmds, expected);
    assert_eq!(live(&s).len(), 2);

    // Once their agents stop them, the tasks of slots that no longer
    // exist are removed; they are nobody's history.
    agents(&mut s);
    let cmds = round(&mut s, ids);
    let removed: Vec<Command> = doomed
        .iter()
        .map(|id| Command::RemoveTask { id: id.clone() })
        .collect();
    assert_eq!(cmds, removed);
}

#[test]
fn scaled_down_tasks_that_never_ran_are_stopped_and_removed_at_once() {
    let mut s = cluster(0, replicated(3));
    let ids = &mut counter();
    round(&mut s, ids);
    assert_eq!(live(&s).len(), 3);
    assert!(live(&s).iter().all(|t| t.state == TaskState::Pending));

    scale(&mut s, 1);
    round(&mut s, ids);
    assert_eq!(s.tasks().len(), 1);
    assert_eq!(in_slot(&s, 1).state, TaskState::Pending);
}

#[test]
fn a_slot_with_two_live_tasks_keeps_the_one_furthest_along() {
    let mut s = cluster(2, replicated(1));
    add_task(&mut s, "a", Some(1), "n1", TaskState::Assigned);
    add_task(&mut s, "b", Some(1), "n2", TaskState::Running);
    add_task(&mut s, "c", Some(1), "n1", TaskState::Running);
    let cmds = round(&mut s, &mut counter());
    let shut: Vec<&TaskId> = cmds
        .iter()
        .map(|c| match c {
            Command::UpdateTask { id, update } => {
                assert_eq!(update.desired, Some(DesiredState::Shutdown));
                id
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(shut, [&tid("a"), &tid("c")]);
    assert_eq!(in_slot(&s, 1).id, tid("b"));
}

#[test]
fn tasks_without_a_slot_are_left_from_global_mode_and_replaced() {
    let mut s = cluster(2, ServiceMode::Global);
    let ids = &mut counter();
    round(&mut s, ids);
    agents(&mut s);
    assert_eq!(per_node(&s), map(&[("n1", 1), ("n2", 1)]));

    scale(&mut s, 1);
    round(&mut s, ids);
    let kept = live(&s);
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].slot, Some(1));
    assert!(kept[0].node.is_some());
}

#[test]
fn a_failed_task_is_replaced_in_its_slot_and_told_to_shut_down() {
    let mut s = cluster(2, replicated(2));
    let ids = &mut counter();
    round(&mut s, ids);
    agents(&mut s);
    let failed = in_slot(&s, 2).id.clone();
    set_state(&mut s, &failed, TaskState::Failed);

    round(&mut s, ids);
    let old = s.task(&failed).unwrap();
    assert_eq!(
        (old.desired, old.state),
        (DesiredState::Shutdown, TaskState::Failed)
    );
    let new = in_slot(&s, 2);
    assert_ne!(new.id, failed);
    assert_eq!(new.state, TaskState::Assigned);
}

#[test]
fn a_converged_cluster_gets_no_commands() {
    let mut s = cluster(3, replicated(4));
    let ids = &mut counter();
    round(&mut s, ids);
    agents(&mut s);
    assert_eq!(round(&mut s, ids), []);
}

#[test]
fn a_failing_id_source_ends_the_round() {
    let s = cluster(1, replicated(1));
    let mut broken = || Err(RandomError("no entropy".into()));
    assert_eq!(
        reconcile(&s, &Options::default(), T0, &mut broken),
        Err(RandomError("no entropy".into()))
    );
}
