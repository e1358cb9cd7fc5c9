//! Global services: a task on every eligible node, including nodes that
//! join later, and none elsewhere.

use super::*;

#[test]
fn a_global_service_gets_a_task_on_a_node_that_joins_later() {
    let mut s = cluster(2, ServiceMode::Global);
    let ids = &mut counter();
    let cmds = round(&mut s, ids);
    assert_eq!(
        cmds,
        [
            Command::CreateTask {
                id: tid("o1"),
                service: sid("s1"),
                slot: None,
                node: Some(nid("n1")),
                at_ms: T0,
            },
            Command::CreateTask {
                id: tid("o2"),
                service: sid("s1"),
                slot: None,
                node: Some(nid("n2")),
                at_ms: T0,
            },
        ]
    );
    agents(&mut s);

    // A node joins with unknown status; membership then sees it alive.
    let mut late = node("n3");
    late.status = NodeStatus::Unknown;
    apply(&mut s, Command::AddNode(late));
    assert_eq!(round(&mut s, ids), []);
    set_status(&mut s, "n3", NodeStatus::Ready);
    let cmds = round(&mut s, ids);
    assert_eq!(
        cmds,
        [Command::CreateTask {
            id: tid("o3"),
            service: sid("s1"),
            slot: None,
            node: Some(nid("n3")),
            at_ms: T0,
        }]
    );
    assert_eq!(s.task(&tid("o3")).unwrap().state, TaskState::Assigned);
}

#[test]
fn global_tasks_leave_down_drained_and_unmatched_nodes_and_pause_keeps_its() {
    let mut s = cluster(0, ServiceMode::Global);
    for id in ["n1", "n2", "n3", "n4", "n5"] {
        let mut n = node(id);
        n.labels.insert("zone".into(), "a".into());
        apply(&mut s, Command::AddNode(n));
    }
    respec(
        &mut s,
        spec("web", ServiceMode::Global, &["node.labels.zone==a"]),
    );
    let ids = &mut counter();
    round(&mut s, ids);
    agents(&mut s);
    assert_eq!(live(&s).len(), 5);

    set_status(&mut s, "n1", NodeStatus::Down);
    set_availability(&mut s, "n2", Availability::Drain);
    set_availability(&mut s, "n3", Availability::Pause);
    update_node(
        &mut s,
        "n4",
        NodeUpdate {
            labels_rm: ["zone".to_string()].into(),
            ..NodeUpdate::default()
        },
    );
    let cmds = round(&mut s, ids);
    assert!(cmds.iter().all(|c| matches!(c, Command::UpdateTask { .. })));
    assert_eq!(per_node(&s), map(&[("n3", 1), ("n5", 1)]));
    let on_n1 = s
        .tasks()
        .values()
        .find(|t| t.node == Some(nid("n1")))
        .unwrap();
    assert_eq!(on_n1.state, TaskState::Orphaned);

    // Back to active: a new task, once the drained one has stopped.
    agents(&mut s);
    set_availability(&mut s, "n2", Availability::Active);
    round(&mut s, ids);
    assert_eq!(per_node(&s), map(&[("n2", 1), ("n3", 1), ("n5", 1)]));
}

#[test]
fn one_task_per_node_and_none_with_a_slot() {
    let mut s = cluster(2, ServiceMode::Global);
    add_task(&mut s, "a", None, "n1", TaskState::Running);
    add_task(&mut s, "b", None, "n1", TaskState::Starting);
    add_task(&mut s, "c", Some(1), "n2", TaskState::Running);
    round(&mut s, &mut counter());
    let kept: Vec<(&TaskId, Option<&NodeId>)> =
        live(&s).iter().map(|t| (&t.id, t.node.as_ref())).collect();
    assert_eq!(
        kept,
        [
            (&tid("a"), Some(&nid("n1"))),
            (&tid("o1"), Some(&nid("n2")))
        ]
    );
}

#[test]
fn invalid_constraints_create_nothing_and_move_nothing() {
    let mut s = cluster(2, ServiceMode::Global);
    let ids = &mut counter();
    round(&mut s, ids);
    respec(&mut s, spec("web", ServiceMode::Global, &["zone=a"]));
    apply(&mut s, Command::AddNode(node("n3")));
    assert_eq!(round(&mut s, ids), []);
    assert_eq!(per_node(&s), map(&[("n1", 1), ("n2", 1)]));
}
