//! Restart policies: the condition, the delay, the attempts within a
//! window, and what they do not govern (tasks lost with their node or
//! moved off a drained one).

use super::*;
use crate::state::RestartCondition;

/// When the tasks of these tests fail.
const T1: u64 = T0 + 1000;

/// `nodes` workers and `web` (`s1`) with `replicas` and `restart`, its
/// tasks running since [`T0`].
fn running(
    nodes: usize,
    mode: ServiceMode,
    restart: RestartPolicy,
) -> (ClusterState, impl FnMut() -> Result<TaskId, RandomError>) {
    let mut s = cluster_with(
        nodes,
        ServiceSpec {
            restart,
            ..spec("web", mode, &[])
        },
    );
    let mut ids = counter();
    round(&mut s, &mut ids);
    agents(&mut s);
    (s, ids)
}

fn policy(condition: RestartCondition, delay_ms: u64) -> RestartPolicy {
    RestartPolicy {
        condition,
        delay_ms,
        ..RestartPolicy::default()
    }
}

/// The live task of `slot` ends in `state` at `at`.
fn end(s: &mut ClusterState, slot: u64, state: TaskState, at: u64) -> TaskId {
    let id = in_slot(s, slot).id.clone();
    let error = (state == TaskState::Failed).then_some("task: non-zero exit (1)");
    report(s, &id, state, at, error);
    id
}

fn live_in(s: &ClusterState, slot: u64) -> usize {
    live(s).iter().filter(|t| t.slot == Some(slot)).count()
}

#[test]
fn on_failure_replaces_a_failed_task_but_not_one_that_exited_0() {
    let (mut s, mut ids) = running(2, replicated(2), policy(RestartCondition::OnFailure, 0));
    let failed = end(&mut s, 1, TaskState::Failed, T1);
    let completed = end(&mut s, 2, TaskState::Complete, T1);
    round_at(&mut s, T1, &mut ids);
    for id in [&failed, &completed] {
        assert_eq!(s.task(id).unwrap().desired, DesiredState::Shutdown);
    }
    assert_eq!(in_slot(&s, 1).state, TaskState::Assigned);
    assert_eq!(live_in(&s, 2), 0);

    // Much later, slot 2 is still empty; `service ps` shows why.
    assert_eq!(round_at(&mut s, T1 + 3_600_000, &mut ids), []);
    assert_eq!(live_in(&s, 2), 0);
    assert!(s.task(&completed).is_some());
}

#[test]
fn condition_any_replaces_a_task_that_exited_0_and_none_replaces_nothing() {
    let (mut s, mut ids) = running(1, replicated(1), policy(RestartCondition::Any, 0));
    end(&mut s, 1, TaskState::Complete, T1);
    round_at(&mut s, T1, &mut ids);
    assert_eq!(live_in(&s, 1), 1);

    let (mut s, mut ids) = running(1, replicated(2), policy(RestartCondition::None, 0));
    end(&mut s, 1, TaskState::Failed, T1);
    end(&mut s, 2, TaskState::Complete, T1);
    round_at(&mut s, T1, &mut ids);
    assert!(live(&s).is_empty());
}

#[test]
fn a_replacement_waits_for_the_restart_delay_even_in_rounds_at_an_earlier_time() {
    let (mut s, mut ids) = running(1, replicated(1), RestartPolicy::default());
    let failed = end(&mut s, 1, TaskState::Failed, T1);

    // Told to shut down at once; no replacement for 5 s.
    let cmds = round_at(&mut s, T1, &mut ids);
    assert_eq!(
        cmds,
        [Command::UpdateTask {
            id: failed.clone(),
            update: TaskUpdate {
                desired: Some(DesiredState::Shutdown),
                ..TaskUpdate::default()
            },
        }]
    );
    assert_eq!(round_at(&mut s, T1 + 4999, &mut ids), []);
    // A manager whose clock is behind decides nothing either.
    assert_eq!(round_at(&mut s, T0, &mut ids), []);
    assert_eq!(live_in(&s, 1), 0);

    let cmds = round_at(&mut s, T1 + 5000, &mut ids);
    assert!(matches!(
        cmds[0],
        Command::CreateTask {
            slot: Some(1),
            at_ms,
            ..
        } if at_ms == T1 + 5000
    ));
    assert_eq!(in_slot(&s, 1).state, TaskState::Assigned);
}

#[test]
fn max_attempts_gives_up_and_the_history_keeps_what_it_counts() {
    let restart = RestartPolicy {
        max_attempts: 3,
        ..policy(RestartCondition::Any, 0)
    };
    let (mut s, mut ids) = running(1, replicated(1), restart);
    // The history limit is below what the count needs.
    let options = Options {
        task_history_limit: 1,
    };
    let mut at = T1;
    for _ in 0..3 {
        end(&mut s, 1, TaskState::Failed, at);
        run(&mut s, &options, at, &mut ids);
        assert_eq!(live_in(&s, 1), 1, "restarted");
        agents_at(&mut s, at);
        at += 1000;
    }
    // The fourth failure is one too many: three restarts were made.
    end(&mut s, 1, TaskState::Failed, at);
    run(&mut s, &options, at, &mut ids);
    assert_eq!(live_in(&s, 1), 0);
    assert_eq!(run(&mut s, &options, at + 3_600_000, &mut ids), []);
    let failures = s
        .tasks()
        .values()
        .filter(|t| t.state == TaskState::Failed)
        .count();
    assert_eq!(failures, 4);
}

#[test]
fn failures_older_than_the_window_no_longer_count() {
    let restart = RestartPolicy {
        max_attempts: 1,
        window_ms: 10_000,
        ..policy(RestartCondition::Any, 0)
    };
    let (mut s, mut ids) = running(1, replicated(1), restart);
    end(&mut s, 1, TaskState::Failed, T1);
    round_at(&mut s, T1, &mut ids);
    agents_at(&mut s, T1);
    end(&mut s, 1, TaskState::Failed, T1 + 2000);
    round_at(&mut s, T1 + 2000, &mut ids);
    assert_eq!(live_in(&s, 1), 0, "two failures within 10 s");

    // Once the first failure is 10 s old, one counts: restart.
    assert_eq!(round_at(&mut s, T1 + 9999, &mut ids), []);
    round_at(&mut s, T1 + 10_000, &mut ids);
    assert_eq!(live_in(&s, 1), 1);
}

#[test]
fn a_new_spec_gets_its_own_attempts() {
    let restart = RestartPolicy {
        max_attempts: 0,
        ..policy(RestartCondition::None, 0)
    };
    let (mut s, mut ids) = running(1, replicated(1), restart);
    end(&mut s, 1, TaskState::Failed, T1);
    round_at(&mut s, T1, &mut ids);
    assert_eq!(live_in(&s, 1), 0);

    let mut fixed = ServiceSpec {
        restart,
        ..spec("web", replicated(1), &[])
    };
    fixed.command.push("--fixed".into());
    respec_at(&mut s, fixed, T1 + 100);
    round_at(&mut s, T1 + 100, &mut ids);
    assert_eq!(in_slot(&s, 1).state, TaskState::Assigned);
}

#[test]
fn tasks_lost_with_their_node_or_drained_are_replaced_at_once_whatever_the_policy() {
    let (mut s, mut ids) = running(3, replicated(2), policy(RestartCondition::None, 60_000));
    let on = |s: &ClusterState, slot| in_slot(s, slot).node.clone().unwrap();
    let (first, second) = (on(&s, 1), on(&s, 2));
    set_status(&mut s, first.as_str(), NodeStatus::Down);
    set_availability(&mut s, second.as_str(), Availability::Drain);
    round_at(&mut s, T1, &mut ids);
    for slot in [1, 2] {
        assert_eq!(in_slot(&s, slot).state, TaskState::Assigned);
    }
    // The drained task stops as asked; that is no reason to wait either.
    agents_at(&mut s, T1 + 10);
    assert_eq!(round_at(&mut s, T1 + 10, &mut ids), []);
}

#[test]
fn a_global_service_restarts_per_node_after_the_delay() {
    let (mut s, mut ids) = running(2, ServiceMode::Global, policy(RestartCondition::Any, 2000));
    let on_n1 = live(&s)
        .into_iter()
        .find(|t| t.node == Some(nid("n1")))
        .unwrap()
        .id
        .clone();
    report(&mut s, &on_n1, TaskState::Failed, T1, Some("boom"));
    round_at(&mut s, T1, &mut ids);
    assert_eq!(per_node(&s), map(&[("n2", 1)]));
    assert_eq!(round_at(&mut s, T1 + 1999, &mut ids), []);
    round_at(&mut s, T1 + 2000, &mut ids);
    assert_eq!(per_node(&s), map(&[("n1", 1), ("n2", 1)]));
}
