//! Rolling updates: stop-first and start-first batches, the monitor
//! period and delay between them, the failure actions, rollbacks, global
//! services, and changes that replace no task.

use super::*;
use crate::state::{FailureAction, UpdateConfig, UpdateOrder, UpdateState, UpdateStatus};

/// When the tests' updates start.
const U: u64 = T0 + 10_000;

fn config(parallelism: u64, order: UpdateOrder) -> UpdateConfig {
    UpdateConfig {
        parallelism,
        order,
        ..UpdateConfig::default()
    }
}

fn web(mode: ServiceMode, update: UpdateConfig) -> ServiceSpec {
    ServiceSpec {
        update,
        ..spec("web", mode, &[])
    }
}

/// `nodes` workers and `web` in `mode` with `update`, its tasks running
/// since [`T0`].
fn running(
    nodes: usize,
    mode: ServiceMode,
    update: UpdateConfig,
) -> (ClusterState, impl FnMut() -> Result<TaskId, RandomError>) {
    let mut s = cluster_with(nodes, web(mode, update));
    let mut ids = counter();
    round(&mut s, &mut ids);
    agents(&mut s);
    (s, ids)
}

/// Updates `web`'s command at `at`.
fn new_command(s: &mut ClusterState, at: u64) {
    let mut spec = s.service(&sid("s1")).unwrap().spec.clone();
    spec.command.push("--v2".into());
    respec_at(s, spec, at);
}

fn status(s: &ClusterState) -> UpdateStatus {
    s.service(&sid("s1"))
        .unwrap()
        .update_status
        .clone()
        .unwrap()
}

/// Live tasks of `s1` made for an older spec, and for the current one.
fn progress(s: &ClusterState) -> (usize, usize) {
    let current = s.service(&sid("s1")).unwrap().spec_version;
    let live = live(s);
    let old = live.iter().filter(|t| t.spec_version != current).count();
    (old, live.len() - old)
}

/// The slots whose task was told to shut down by these commands.
fn shut_slots(s: &ClusterState, cmds: &[Command]) -> Vec<u64> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::UpdateTask { id, update }
                if update.desired == Some(DesiredState::Shutdown) =>
            {
                s.task(id).unwrap().slot
            }
            _ => None,
        })
        .collect()
}

/// The slots these commands created tasks in.
fn created_slots(cmds: &[Command]) -> Vec<Option<u64>> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::CreateTask { slot, .. } => Some(*slot),
            _ => None,
        })
        .collect()
}

/// The agents act and a round runs every second from `from` until the
/// update is no longer in progress; returns when it stopped.
fn until_settled(
    s: &mut ClusterState,
    ids: &mut impl FnMut() -> Result<TaskId, RandomError>,
    from: u64,
) -> u64 {
    let mut now = from;
    for _ in 0..100 {
        agents_at(s, now);
        round_at(s, now, ids);
        if !status(s).state.is_active() {
            return now;
        }
        now += 1000;
    }
    panic!("still updating: {:?}", status(s));
}

#[test]
fn stop_first_replaces_two_of_five_replicas_at_a_time() {
    let update = UpdateConfig {
        monitor_ms: 1000,
        ..config(2, UpdateOrder::StopFirst)
    };
    let (mut s, mut ids) = running(3, replicated(5), update);
    new_command(&mut s, U);
    assert_eq!(status(&s).state, UpdateState::Updating);

    let mut now = U;
    for batch in [vec![1, 2], vec![3, 4], vec![5]] {
        let cmds = round_at(&mut s, now, &mut ids);
        assert_eq!(shut_slots(&s, &cmds), batch, "at {now}");
        assert_eq!(created_slots(&cmds), [], "stop first");
        // Once the old tasks have stopped, their slots get new ones.
        agents_at(&mut s, now + 10);
        let cmds = round_at(&mut s, now + 10, &mut ids);
        let created: Vec<Option<u64>> = batch.iter().map(|s| Some(*s)).collect();
        assert_eq!(created_slots(&cmds), created);
        agents_at(&mut s, now + 20);
        // They must run for the monitor period first.
        assert_eq!(round_at(&mut s, now + 1019, &mut ids), []);
        assert!(progress(&s).0 + progress(&s).1 >= 3);
        now += 1020;
    }
    round_at(&mut s, now, &mut ids);
    assert_eq!(progress(&s), (0, 5));
    assert_eq!(
        status(&s),
        UpdateStatus {
            state: UpdateState::Completed,
            message: "update completed".into(),
            started_ms: U,
        }
    );
}

#[test]
fn start_first_starts_two_new_tasks_before_stopping_two_old_ones() {
    let update = UpdateConfig {
        monitor_ms: 1000,
        ..config(2, UpdateOrder::StartFirst)
    };
    let (mut s, mut ids) = running(3, replicated(5), update);
    new_command(&mut s, U);

    let mut now = U;
    for batch in [vec![1, 2], vec![3, 4], vec![5]] {
        let cmds = round_at(&mut s, now, &mut ids);
        let created: Vec<Option<u64>> = batch.iter().map(|s| Some(*s)).collect();
        assert_eq!(created_slots(&cmds), created, "at {now}");
        assert_eq!(shut_slots(&s, &cmds), Vec::<u64>::new(), "start first");
        assert_eq!(live(&s).len(), 5 + batch.len());
        // The old ones stop once the new ones run.
        agents_at(&mut s, now + 10);
        let cmds = round_at(&mut s, now + 10, &mut ids);
        assert_eq!(shut_slots(&s, &cmds), batch);
        assert_eq!(live(&s).len(), 5);
        assert_eq!(round_at(&mut s, now + 1009, &mut ids), []);
        now += 1010;
    }
    round_at(&mut s, now, &mut ids);
    assert_eq!(progress(&s), (0, 5));
    assert_eq!(status(&s).state, UpdateState::Completed);
}

#[test]
fn the_next_batch_waits_for_the_monitor_period_and_then_the_delay() {
    let update = UpdateConfig {
        monitor_ms: 2000,
        delay_ms: 3000,
        ..config(1, UpdateOrder::StopFirst)
    };
    let (mut s, mut ids) = running(2, replicated(2), update);
    new_command(&mut s, U);
    round_at(&mut s, U, &mut ids);
    agents_at(&mut s, U + 10);
    round_at(&mut s, U + 10, &mut ids);
    // The new task of slot 1 runs from U + 20.
    agents_at(&mut s, U + 20);
    assert_eq!(round_at(&mut s, U + 20 + 1999, &mut ids), []);
    assert_eq!(round_at(&mut s, U + 20 + 4999, &mut ids), []);
    let cmds = round_at(&mut s, U + 20 + 5000, &mut ids);
    assert_eq!(shut_slots(&s, &cmds), [2]);
}

#[test]
fn a_new_task_failing_within_the_monitor_period_pauses_the_update_and_says_why() {
    let (mut s, mut ids) = running(2, replicated(3), config(1, UpdateOrder::StopFirst));
    let old: Vec<TaskId> = (2..=3).map(|slot| in_slot(&s, slot).id.clone()).collect();
    new_command(&mut s, U);
    round_at(&mut s, U, &mut ids);
    agents_at(&mut s, U + 10);
    round_at(&mut s, U + 10, &mut ids);
    agents_at(&mut s, U + 20);
    let new = in_slot(&s, 1).id.clone();
    report(
        &mut s,
        &new,
        TaskState::Failed,
        U + 1000,
        Some("task: non-zero exit (1)"),
    );

    round_at(&mut s, U + 1000, &mut ids);
    assert_eq!(
        status(&s),
        UpdateStatus {
            state: UpdateState::Paused,
            message: format!(
                "update paused due to failure or early termination of task {new}: failed: task: \
                 non-zero exit (1)"
            ),
            started_ms: U,
        }
    );
    // No more replacements, however long it runs; the failed slot still
    // restarts, with the new spec.
    for now in [U + 10_000, U + 100_000] {
        agents_at(&mut s, now);
        round_at(&mut s, now, &mut ids);
    }
    for (slot, id) in (2..=3).zip(&old) {
        assert_eq!(&in_slot(&s, slot).id, id);
    }
    assert_eq!(progress(&s), (2, 1));
    assert_eq!(status(&s).state, UpdateState::Paused);

    // The next update resumes.
    new_command(&mut s, U + 200_000);
    until_settled(&mut s, &mut ids, U + 200_000);
    assert_eq!(status(&s).state, UpdateState::Completed);
    assert_eq!(progress(&s), (0, 3));
}

#[test]
fn a_new_task_failing_after_the_monitor_period_is_no_update_failure() {
    let (mut s, mut ids) = running(2, replicated(2), config(1, UpdateOrder::StopFirst));
    new_command(&mut s, U);
    round_at(&mut s, U, &mut ids);
    agents_at(&mut s, U + 10);
    round_at(&mut s, U + 10, &mut ids);
    agents_at(&mut s, U + 20);
    let new = in_slot(&s, 1).id.clone();
    report(&mut s, &new, TaskState::Failed, U + 20 + 5000, None);
    round_at(&mut s, U + 20 + 5000, &mut ids);
    assert_eq!(status(&s).state, UpdateState::Updating);
}

#[test]
fn failure_action_continue_carries_on_to_the_end() {
    let update = UpdateConfig {
        failure_action: FailureAction::Continue,
        ..config(1, UpdateOrder::StopFirst)
    };
    let (mut s, mut ids) = running(2, replicated(3), update);
    new_command(&mut s, U);
    round_at(&mut s, U, &mut ids);
    agents_at(&mut s, U + 10);
    round_at(&mut s, U + 10, &mut ids);
    let new = in_slot(&s, 1).id.clone();
    report(
        &mut s,
        &new,
        TaskState::Rejected,
        U + 20,
        Some("no such file"),
    );
    round_at(&mut s, U + 20, &mut ids);
    assert_eq!(status(&s).state, UpdateState::Updating);
    until_settled(&mut s, &mut ids, U + 1000);
    assert_eq!(status(&s).state, UpdateState::Completed);
    assert_eq!(progress(&s), (0, 3));
}

#[test]
fn a_failure_beyond_the_tolerated_ratio_pauses() {
    let update = UpdateConfig {
        max_failure_ratio_permille: 400,
        ..config(0, UpdateOrder::StopFirst)
    };
    let (mut s, mut ids) = running(3, replicated(5), update);
    new_command(&mut s, U);
    round_at(&mut s, U, &mut ids);
    agents_at(&mut s, U + 10);
    round_at(&mut s, U + 10, &mut ids);
    // Two failures of five are 40%: tolerated. The third is not.
    for (slot, at) in [(1, U + 20), (2, U + 30)] {
        let id = in_slot(&s, slot).id.clone();
        report(&mut s, &id, TaskState::Failed, at, None);
        round_at(&mut s, at, &mut ids);
        assert_eq!(status(&s).state, UpdateState::Updating);
    }
    let third = in_slot(&s, 3).id.clone();
    report(&mut s, &third, TaskState::Complete, U + 40, None);
    round_at(&mut s, U + 40, &mut ids);
    let paused = status(&s);
    assert_eq!(paused.state, UpdateState::Paused);
    assert!(
        paused.message.ends_with(&format!("task {third}: complete")),
        "{}",
        paused.message
    );
}

#[test]
fn failure_action_rollback_puts_back_the_previous_spec_and_completes() {
    let update = UpdateConfig {
        failure_action: FailureAction::Rollback,
        ..config(1, UpdateOrder::StopFirst)
    };
    let (mut s, mut ids) = running(2, replicated(3), update);
    let before = s.service(&sid("s1")).unwrap().clone();
    let untouched: Vec<TaskId> = (2..=3).map(|slot| in_slot(&s, slot).id.clone()).collect();
    new_command(&mut s, U);
    round_at(&mut s, U, &mut ids);
    agents_at(&mut s, U + 10);
    round_at(&mut s, U + 10, &mut ids);
    let new = in_slot(&s, 1).id.clone();
    report(&mut s, &new, TaskState::Failed, U + 500, Some("boom"));

    let cmds = round_at(&mut s, U + 500, &mut ids);
    assert!(matches!(
        &cmds[0],
        Command::UpdateService { rollback: true, spec, .. } if *spec == before.spec
    ));
    let service = s.service(&sid("s1")).unwrap();
    assert_eq!(service.spec, before.spec);
    assert_eq!(service.spec_version, before.spec_version);
    assert_eq!(service.previous_spec, None);
    assert_eq!(
        status(&s),
        UpdateStatus {
            state: UpdateState::RollbackStarted,
            message: format!(
                "update rolled back due to failure or early termination of task {new}: failed: \
                 boom"
            ),
            started_ms: U + 500,
        }
    );
    // Slot 1 gets a task of the old spec at once; the others never
    // stopped.
    assert_eq!(in_slot(&s, 1).spec_version, before.spec_version);
    until_settled(&mut s, &mut ids, U + 1000);
    let done = status(&s);
    assert_eq!(
        (done.state, done.message.as_str()),
        (UpdateState::RollbackCompleted, "rollback completed")
    );
    for (slot, id) in (2..=3).zip(&untouched) {
        assert_eq!(&in_slot(&s, slot).id, id);
    }
}

#[test]
fn a_manual_rollback_replaces_only_the_tasks_of_the_newer_spec() {
    let update = UpdateConfig {
        monitor_ms: 0,
        ..config(2, UpdateOrder::StopFirst)
    };
    let (mut s, mut ids) = running(3, replicated(4), update);
    let first: Vec<TaskId> = (3..=4).map(|slot| in_slot(&s, slot).id.clone()).collect();
    new_command(&mut s, U);
    // One batch of two, then pause the update by hand.
    round_at(&mut s, U, &mut ids);
    agents_at(&mut s, U + 10);
    round_at(&mut s, U + 10, &mut ids);
    agents_at(&mut s, U + 20);
    let service = s.service(&sid("s1")).unwrap().clone();
    apply(
        &mut s,
        Command::SetUpdateStatus {
            id: sid("s1"),
            version: service.version,
            status: UpdateStatus {
                state: UpdateState::Paused,
                message: "paused by hand".into(),
                started_ms: U,
            },
        },
    );
    assert_eq!(progress(&s), (2, 2));

    apply(
        &mut s,
        Command::UpdateService {
            id: sid("s1"),
            version: service.version,
            spec: service.previous_spec.clone().unwrap(),
            rollback: true,
            at_ms: U + 100,
        },
    );
    assert_eq!(progress(&s), (2, 2));
    let cmds = round_at(&mut s, U + 100, &mut ids);
    // The rollback config: one at a time.
    assert_eq!(shut_slots(&s, &cmds), [1]);
    until_settled(&mut s, &mut ids, U + 200);
    assert_eq!(status(&s).state, UpdateState::RollbackCompleted);
    for (slot, id) in (3..=4).zip(&first) {
        assert_eq!(&in_slot(&s, slot).id, id);
    }
}

#[test]
fn scaling_or_changing_the_update_config_restarts_nothing() {
    let (mut s, mut ids) = running(3, replicated(3), UpdateConfig::default());
    let before: Vec<TaskId> = live(&s).iter().map(|t| t.id.clone()).collect();
    respec_at(
        &mut s,
        web(replicated(5), config(3, UpdateOrder::StartFirst)),
        U,
    );
    assert_eq!(s.service(&sid("s1")).unwrap().update_status, None);

    let cmds = round_at(&mut s, U, &mut ids);
    assert_eq!(created_slots(&cmds), [Some(4), Some(5)]);
    assert_eq!(shut_slots(&s, &cmds), Vec::<u64>::new());
    for id in &before {
        assert!(s.task(id).unwrap().is_live());
    }
    assert_eq!(progress(&s), (0, 5));
}

#[test]
fn a_global_service_updates_node_by_node() {
    let update = UpdateConfig {
        monitor_ms: 1000,
        ..config(1, UpdateOrder::StopFirst)
    };
    let (mut s, mut ids) = running(3, ServiceMode::Global, update);
    new_command(&mut s, U);
    let mut now = U;
    for n in ["n1", "n2", "n3"] {
        let cmds = round_at(&mut s, now, &mut ids);
        let stopped: Vec<&NodeId> = cmds
            .iter()
            .filter_map(|c| match c {
                Command::UpdateTask { id, .. } => s.task(id).unwrap().node.as_ref(),
                _ => None,
            })
            .collect();
        assert_eq!(stopped, [&nid(n)], "at {now}");
        agents_at(&mut s, now + 10);
        let cmds = round_at(&mut s, now + 10, &mut ids);
        assert!(matches!(
            &cmds[..],
            [Command::CreateTask { node: Some(on), slot: None, .. }] if on == &nid(n)
        ));
        agents_at(&mut s, now + 20);
        now += 1020;
    }
    round_at(&mut s, now, &mut ids);
    assert_eq!(status(&s).state, UpdateState::Completed);
    assert_eq!(progress(&s), (0, 3));
    assert_eq!(per_node(&s), map(&[("n1", 1), ("n2", 1), ("n3", 1)]));
}
