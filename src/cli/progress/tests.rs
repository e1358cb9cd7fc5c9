//! Frames from snapshots, and how a terminal and a pipe show them.

use std::collections::BTreeMap;

use shoal_control::ids::{NodeId, ServiceId, TaskId};
use shoal_control::state::{ServiceSpec, UpdateConfig};

use super::*;

/// `web` with `replicas` tasks at spec version `version`.
fn service(replicas: u64, version: u64, status: Option<UpdateState>) -> ServiceView {
    ServiceView {
        id: ServiceId::new("s1").unwrap(),
        name: "web".into(),
        mode: "replicated".into(),
        running: 0,
        desired: replicas,
        spec: ServiceSpec {
            name: "web".into(),
            mode: ServiceMode::Replicated { replicas },
            update: UpdateConfig {
                parallelism: 2,
                monitor_ms: 5000,
                ..UpdateConfig::default()
            },
            ..ServiceSpec::default()
        },
        networks: vec![],
        vips: BTreeMap::new(),
        version: 7,
        spec_version: version,
        update_status: status.map(|state| UpdateStatus {
            state,
            message: match state {
                UpdateState::Paused => "update paused due to failure of task t9: exit 3".into(),
                UpdateState::RollbackStarted => "update rolled back due to failure".into(),
                _ => "update in progress".into(),
            },
            started_ms: 0,
        }),
        can_roll_back: true,
    }
}

/// Task `id` of `web` in `slot`, made for spec `version`.
fn task(id: &str, slot: u64, version: u64, desired: DesiredState, state: TaskState) -> TaskView {
    TaskView {
        id: TaskId::new(id).unwrap(),
        name: format!("web.{slot}"),
        service: ServiceId::new("s1").unwrap(),
        slot: Some(slot),
        node_id: Some(NodeId::new("n1").unwrap()),
        node: Some("m1".into()),
        desired,
        state,
        error: None,
        health: None,
        addresses: BTreeMap::new(),
        spec_version: version,
        image: None,
        status_ms: 0,
    }
}

fn running(id: &str, slot: u64, version: u64) -> TaskView {
    task(id, slot, version, DesiredState::Running, TaskState::Running)
}

fn stopping(id: &str, slot: u64, version: u64) -> TaskView {
    task(
        id,
        slot,
        version,
        DesiredState::Shutdown,
        TaskState::Running,
    )
}

fn plain(frame: &Frame) -> Vec<String> {
    frame.iter().map(|r| r.tty()).collect()
}

fn wait(step: Step) -> Frame {
    match step {
        Step::Wait(frame) => frame,
        other => panic!("expected to wait, got {other:?}"),
    }
}

const FULL: &str = "[==================================================>]";

#[test]
fn an_update_shows_its_batches_turning_over() {
    // Version 2 replaces version 1 two slots at a time: slot 1's new task
    // runs, slot 2's starts, slot 3 still runs the old one.
    let view = service(3, 2, Some(UpdateState::Updating));
    let tasks = [
        stopping("a1", 1, 1),
        running("b1", 1, 2),
        stopping("a2", 2, 1),
        task("b2", 2, 2, DesiredState::Running, TaskState::Starting),
        running("a3", 3, 1),
    ];
    let frame = wait(Progress::new(false).observe(&view, &tasks, 0));
    assert_eq!(
        plain(&frame),
        [
            "overall progress: 1 out of 3 tasks".to_owned(),
            format!("1/3: running   {FULL}"),
            "2/3: starting  [============================================>      ]".to_owned(),
            "3/3: ".to_owned(),
        ]
    );
    let lines: Vec<String> = frame.iter().filter_map(Row::plain).collect();
    assert_eq!(
        lines,
        [
            "overall progress: 1 out of 3 tasks",
            "1/3: running",
            "2/3: starting"
        ]
    );
}

#[test]
fn an_update_waits_out_its_monitor_period_then_converges() {
    let mut progress = Progress::new(false);
    let tasks = [
        running("b1", 1, 2),
        running("b2", 2, 2),
        running("b3", 3, 2),
    ];
    let updating = service(3, 2, Some(UpdateState::Updating));
    let frame = wait(progress.observe(&updating, &tasks, 1000));
    assert_eq!(
        frame.last().map(Row::tty).as_deref(),
        Some("verify: Waiting 6 seconds to verify that tasks are stable...")
    );
    let frame = wait(progress.observe(&updating, &tasks, 3500));
    assert_eq!(
        frame.last().map(Row::tty).as_deref(),
        Some("verify: Waiting 3 seconds to verify that tasks are stable...")
    );
    let done = service(3, 2, Some(UpdateState::Completed));
    let Step::Done(frame) = progress.observe(&done, &tasks, 6000) else {
        panic!("not converged");
    };
    assert_eq!(
        plain(&frame),
        [
            "overall progress: 3 out of 3 tasks".to_owned(),
            format!("1/3: running   {FULL}"),
            format!("2/3: running   {FULL}"),
            format!("3/3: running   {FULL}"),
            "verify: Service converged".to_owned(),
        ]
    );
}

#[test]
fn a_task_that_fails_after_convergence_is_reported() {
    let mut progress = Progress::new(false);
    let updating = service(1, 2, Some(UpdateState::Updating));
    wait(progress.observe(&updating, &[running("b1", 1, 2)], 0));
    let failed = TaskView {
        error: Some("exit status 3".into()),
        ..task("b1", 1, 2, DesiredState::Shutdown, TaskState::Failed)
    };
    let frame = wait(progress.observe(&updating, &[failed], 500));
    assert_eq!(
        plain(&frame),
        [
            "overall progress: 0 out of 1 tasks",
            "1/1: exit status 3",
            "verify: Detected task failure"
        ]
    );
}

#[test]
fn a_rollback_says_so_and_counts_the_tasks_put_back() {
    // Rolling back to version 1: two slots still run it.
    let view = service(3, 1, Some(UpdateState::RollbackStarted));
    let tasks = [
        running("a1", 1, 1),
        running("a2", 2, 1),
        stopping("b3", 3, 2),
    ];
    let frame = wait(Progress::new(true).observe(&view, &tasks, 0));
    assert_eq!(
        plain(&frame),
        [
            "rollback: manually requested rollback".to_owned(),
            "overall progress: rolling back update: 2 out of 3 tasks".to_owned(),
            format!("1/3: running   {FULL}"),
            format!("2/3: running   {FULL}"),
            "3/3: ".to_owned(),
        ]
    );
    // An update rolled back on failure names why, once.
    let mut progress = Progress::new(false);
    let frame = wait(progress.observe(&view, &tasks, 0));
    assert_eq!(
        frame[0].tty(),
        "rollback: update rolled back due to failure"
    );
    let done = service(3, 1, Some(UpdateState::RollbackCompleted));
    let tasks = [
        running("a1", 1, 1),
        running("a2", 2, 1),
        running("a3", 3, 1),
    ];
    let Step::Done(frame) = progress.observe(&done, &tasks, 100) else {
        panic!("not converged");
    };
    assert_eq!(
        frame[1].tty(),
        "overall progress: rolling back update: 3 out of 3 tasks"
    );
}

#[test]
fn paused_updates_and_rollbacks_fail_with_dockers_words() {
    let view = service(1, 2, Some(UpdateState::Paused));
    assert_eq!(
        Progress::new(false).observe(&view, &[], 0),
        Step::Fail("service update paused: update paused due to failure of task t9: exit 3".into())
    );
    let view = ServiceView {
        update_status: Some(UpdateStatus {
            state: UpdateState::RollbackPaused,
            message: "rollback paused due to x".into(),
            started_ms: 0,
        }),
        ..service(1, 1, None)
    };
    assert_eq!(
        Progress::new(true).observe(&view, &[], 0),
        Step::Fail("service rollback paused: rollback paused due to x".into())
    );
}

#[test]
fn a_new_service_converges_without_waiting_and_errors_are_cut() {
    let view = service(2, 1, None);
    let pending = TaskView {
        error: Some(format!("no suitable node ({})", "x".repeat(100))),
        ..task("p2", 2, 1, DesiredState::Running, TaskState::Pending)
    };
    let frame = wait(Progress::new(false).observe(&view, &[running("p1", 1, 1), pending], 0));
    let line = frame[2].tty();
    assert!(line.starts_with("2/2: no suitable node (xxx"), "{line}");
    assert_eq!(line.chars().count(), "2/2: ".len() + 75);
    assert!(line.ends_with('…'), "{line}");
    let tasks = [running("p1", 1, 1), running("p2", 2, 1)];
    assert!(matches!(
        Progress::new(false).observe(&view, &tasks, 0),
        Step::Done(_)
    ));
}

#[test]
fn many_replicas_show_only_the_overall_count() {
    let view = service(21, 1, None);
    let tasks: Vec<TaskView> = (1..=21).map(|s| running(&format!("t{s}"), s, 1)).collect();
    let Step::Done(frame) = Progress::new(false).observe(&view, &tasks, 0) else {
        panic!("not converged");
    };
    assert_eq!(
        plain(&frame),
        [
            "overall progress: 21 out of 21 tasks",
            "verify: Service converged"
        ]
    );
}

#[test]
fn a_global_service_shows_one_line_per_node() {
    let mut view = service(1, 2, Some(UpdateState::Updating));
    view.spec.mode = ServiceMode::Global;
    let on = |t: TaskView, node: &str| TaskView {
        slot: None,
        node: Some(node.into()),
        ..t
    };
    let tasks = [on(running("a1", 0, 2), "w1"), on(running("a2", 0, 1), "m1")];
    let frame = wait(Progress::new(false).observe(&view, &tasks, 0));
    assert_eq!(
        plain(&frame),
        [
            "overall progress: 1 out of 2 tasks".to_owned(),
            "m1: ".to_owned(),
            format!("w1: running   {FULL}"),
        ]
    );
}

#[test]
fn a_pipe_gets_each_changed_line_once() {
    let mut screen = Screen::new(false);
    let first = vec![
        Row::new("overall progress", "0 out of 2 tasks"),
        Row::new("1/2", ""),
        Row::new("2/2", ""),
    ];
    assert_eq!(screen.draw(&first), "overall progress: 0 out of 2 tasks\n");
    let second = vec![
        Row::new("overall progress", "0 out of 2 tasks"),
        Row {
            step: Some(3),
            ..Row::new("1/2", "pending")
        },
        Row::new("2/2", ""),
    ];
    assert_eq!(screen.draw(&second), "1/2: pending\n");
    assert_eq!(screen.draw(&second), "");
    let third = vec![
        Row::new("overall progress", "1 out of 2 tasks"),
        Row {
            step: Some(9),
            ..Row::new("1/2", "running")
        },
        Row::new("2/2", ""),
        Row::new("verify", "Service converged"),
    ];
    assert_eq!(
        screen.draw(&third),
        "overall progress: 1 out of 2 tasks\n1/2: running\nverify: Service converged\n"
    );
    assert!(!screen.draw(&third).contains('\x1b'));
}

#[test]
fn a_terminal_gets_each_frame_drawn_over_the_last() {
    let mut screen = Screen::new(true);
    let frame = vec![
        Row::new("overall progress", "0 out of 1 tasks"),
        Row {
            step: Some(1),
            ..Row::new("1/1", "new")
        },
    ];
    assert_eq!(
        screen.draw(&frame),
        "\r\x1b[2Koverall progress: 0 out of 1 tasks\n\
         \r\x1b[2K1/1: new       [=====>                                             ]\n\x1b[J"
    );
    let next = vec![Row::new("overall progress", "1 out of 1 tasks")];
    assert_eq!(
        screen.draw(&next),
        "\x1b[2A\r\x1b[2Koverall progress: 1 out of 1 tasks\n\x1b[J"
    );
}
