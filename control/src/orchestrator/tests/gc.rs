//! Garbage collection: the history limit per slot and per node, and the
//! tasks of removed services.

use super::*;

/// Fails the live task of every slot `times` times over, reconciling
/// after each failure.
fn crash_loop(
    s: &mut ClusterState,
    options: &Options,
    ids: &mut impl FnMut() -> Result<TaskId, RandomError>,
    times: usize,
) {
    for _ in 0..times {
        let running: Vec<TaskId> = live(s).iter().map(|t| t.id.clone()).collect();
        for id in &running {
            set_state(s, id, TaskState::Failed);
        }
        round_with(s, options, ids);
        agents(s);
    }
}

fn terminal_in_slot(s: &ClusterState, slot: u64) -> Vec<&TaskId> {
    s.tasks()
        .values()
        .filter(|t| t.slot == Some(slot) && t.state.is_terminal())
        .map(|t| &t.id)
        .collect()
}

#[test]
fn each_slot_keeps_five_stopped_tasks_by_default() {
    let mut s = cluster(2, replicated(2));
    let options = Options::default();
    let ids = &mut counter();
    round_with(&mut s, &options, ids);
    agents(&mut s);
    crash_loop(&mut s, &options, ids, 8);
    for slot in 1..=2 {
        assert_eq!(terminal_in_slot(&s, slot).len(), DEFAULT_TASK_HISTORY_LIMIT);
        assert_eq!(in_slot(&s, slot).state, TaskState::Running);
    }
    assert_eq!(s.tasks().len(), 2 * (DEFAULT_TASK_HISTORY_LIMIT + 1));
}

#[test]
fn the_history_limit_is_configurable_and_removes_the_lowest_ids_first() {
    let mut s = cluster(1, replicated(1));
    let options = Options {
        task_history_limit: 2,
    };
    let ids = &mut counter();
    round_with(&mut s, &options, ids);
    agents(&mut s);
    crash_loop(&mut s, &options, ids, 4);
    assert_eq!(terminal_in_slot(&s, 1), [&tid("o3"), &tid("o4")]);
    assert_eq!(in_slot(&s, 1).id, tid("o5"));

    let none = Options {
        task_history_limit: 0,
    };
    crash_loop(&mut s, &none, ids, 1);
    assert_eq!(terminal_in_slot(&s, 1), Vec::<&TaskId>::new());
}

#[test]
fn global_history_is_kept_per_node_and_dropped_with_the_node() {
    let mut s = cluster(2, ServiceMode::Global);
    let options = Options {
        task_history_limit: 1,
    };
    let ids = &mut counter();
    round_with(&mut s, &options, ids);
    agents(&mut s);
    crash_loop(&mut s, &options, ids, 3);
    let history = |s: &ClusterState| -> Vec<String> {
        s.tasks()
            .values()
            .filter(|t| t.state.is_terminal())
            .map(|t| t.node.as_ref().unwrap().to_string())
            .collect()
    };
    assert_eq!(history(&s), ["n1", "n2"]);

    set_status(&mut s, "n2", NodeStatus::Down);
    round_with(&mut s, &options, ids);
    apply(
        &mut s,
        Command::RemoveNode {
            id: nid("n2"),
            force: false,
        },
    );
    round_with(&mut s, &options, ids);
    assert_eq!(history(&s), ["n1"]);
}

#[test]
fn tasks_of_a_removed_service_are_removed_once_stopped() {
    let mut s = cluster(3, replicated(4));
    let mut limited = spec("web", replicated(4), &[]);
    limited.max_replicas = 1;
    respec(&mut s, limited);
    let options = Options::default();
    let ids = &mut counter();
    round_with(&mut s, &options, ids);
    agents(&mut s);
    // Slots 1 to 3 run on n1 to n3; slot 4 fits nowhere.
    let [failed, lost, running, pending] = [1, 2, 3, 4].map(|slot| in_slot(&s, slot).id.clone());
    assert_eq!(s.task(&pending).unwrap().state, TaskState::Pending);
    set_state(&mut s, &failed, TaskState::Failed);
    set_status(&mut s, "n2", NodeStatus::Down);

    apply(&mut s, Command::RemoveService { id: sid("s1") });
    let cmds = round_with(&mut s, &options, ids);
    // The failed task, the one on the down node and the never-placed one
    // go at once; the running one waits for its agent to stop it.
    assert_eq!(s.tasks().keys().collect::<Vec<_>>(), [&running]);
    for id in [failed, lost, pending] {
        assert!(cmds.contains(&Command::RemoveTask { id }));
    }

    agents(&mut s);
    assert_eq!(
        round_with(&mut s, &options, ids),
        [Command::RemoveTask { id: running }]
    );
    assert!(s.tasks().is_empty());
}
