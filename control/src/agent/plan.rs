//! The agent's decisions, pure: from the cluster state and what this
//! node's executor knows of its tasks, which tasks to start and stop, what
//! to report to the managers, and which finished tasks to clean up.
//!
//! The state says what should run here; the executor says what does. A
//! task the state believes started but the executor does not know was
//! lost (the daemon restarted, and its processes with it) and is reported
//! failed, so the orchestrator replaces it.

use std::collections::BTreeMap;

use crate::ids::{NodeId, TaskId};
use crate::state::{ClusterState, DesiredState, Task, TaskHealth, TaskState, TaskUpdate};

/// What this node's executor knows of one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local {
    /// Its namespace exists; its process has not started yet.
    Prepared,
    /// Its process runs.
    Running,
    /// Its process was asked to stop and has not exited yet.
    Stopping,
    /// Its process ended, or never started.
    Exited(Exit),
}

/// How a task's process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Stopped because it was told to shut down.
    Stopped,
    /// Exited by itself with this status.
    Code(i32),
    /// Killed by a signal it was not sent by the agent.
    Signal(i32),
    /// Could not be started.
    StartFailed(String),
    /// Stopped because its health check failed.
    Unhealthy,
}

impl Exit {
    /// The state a task ends in, and why.
    pub fn outcome(&self) -> (TaskState, Option<String>) {
        match self {
            Exit::Stopped => (TaskState::Shutdown, None),
            Exit::Code(0) => (TaskState::Complete, None),
            Exit::Code(code) => (
                TaskState::Failed,
                Some(format!("task: non-zero exit ({code})")),
            ),
            Exit::Signal(signal) => (
                TaskState::Failed,
                Some(format!("task: killed by signal {signal}")),
            ),
            Exit::StartFailed(why) => (TaskState::Failed, Some(format!("starting: {why}"))),
            Exit::Unhealthy => (TaskState::Failed, Some("task: unhealthy".into())),
        }
    }
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Tasks to start: make their namespace, wire it, run their command.
    pub start: Vec<TaskId>,
    /// Running tasks to stop.
    pub stop: Vec<TaskId>,
    /// Progress to report to the managers.
    pub report: Vec<(TaskId, TaskUpdate)>,
    /// Finished tasks whose namespace and local record can go, once the
    /// data plane no longer holds their endpoints.
    pub forget: Vec<TaskId>,
}

/// Decides for node `me`.
pub fn plan(state: &ClusterState, me: &NodeId, local: &BTreeMap<TaskId, Local>) -> Plan {
    let mut plan = Plan::default();
    let mine = state
        .tasks()
        .values()
        .filter(|t| t.node.as_ref() == Some(me));
    for task in mine {
        decide(&mut plan, task, local.get(&task.id));
    }
    // Local tasks the state no longer places here.
    for (id, l) in local {
        let placed_here = state.task(id).is_some_and(|t| t.node.as_ref() == Some(me));
        if !placed_here {
            match l {
                Local::Prepared | Local::Running => plan.stop.push(id.clone()),
                Local::Stopping => {}
                Local::Exited(_) => plan.forget.push(id.clone()),
            }
        }
    }
    plan
}

/// Adds to `plan` the health verdicts of this node's running tasks that
/// the state does not show yet, in the same report as any state change of
/// the task (one report per task and round).
pub fn add_health(
    plan: &mut Plan,
    state: &ClusterState,
    local: &BTreeMap<TaskId, Local>,
    health: &BTreeMap<TaskId, TaskHealth>,
) {
    for (id, verdict) in health {
        let running = matches!(local.get(id), Some(Local::Running | Local::Stopping));
        let Some(task) = state.task(id).filter(|t| !t.state.is_terminal()) else {
            continue;
        };
        if !running || task.health == Some(*verdict) {
            continue;
        }
        match plan.report.iter_mut().find(|(t, _)| t == id) {
            Some((_, update)) => update.health = Some(*verdict),
            None => plan.report.push((
                id.clone(),
                TaskUpdate {
                    health: Some(*verdict),
                    ..TaskUpdate::default()
                },
            )),
        }
    }
}

fn decide(plan: &mut Plan, task: &Task, local: Option<&Local>) {
    let id = &task.id;
    if task.state.is_terminal() {
        match local {
            Some(Local::Prepared | Local::Running) => plan.stop.push(id.clone()),
            Some(Local::Exited(_)) => plan.forget.push(id.clone()),
            Some(Local::Stopping) | None => {}
        }
        return;
    }
    match (task.desired, local) {
        (DesiredState::Running, None) => {
            if task.state <= TaskState::Assigned {
                plan.start.push(id.clone());
            } else {
                report(
                    plan,
                    task,
                    TaskState::Failed,
                    Some("task lost: its process is gone (the node's daemon restarted)".into()),
                );
            }
        }
        (DesiredState::Running, Some(Local::Running)) => {
            if task.state < TaskState::Running {
                report(plan, task, TaskState::Running, None);
            }
        }
        (DesiredState::Running, Some(Local::Prepared | Local::Stopping)) => {}
        (_, Some(Local::Exited(exit))) => {
            let (to, error) = exit.outcome();
            report(plan, task, to, error);
        }
        (DesiredState::Shutdown, Some(Local::Prepared | Local::Running)) => {
            plan.stop.push(id.clone());
        }
        (DesiredState::Shutdown, Some(Local::Stopping)) => {}
        (DesiredState::Shutdown, None) => report(plan, task, TaskState::Shutdown, None),
    }
}

fn report(plan: &mut Plan, task: &Task, to: TaskState, error: Option<String>) {
    if to < task.state {
        return;
    }
    plan.report.push((
        task.id.clone(),
        TaskUpdate {
            state: Some(to),
            error,
            ..TaskUpdate::default()
        },
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ServiceId;
    use crate::role::Role;
    use crate::state::{Command, ServiceSpec};
    use crate::testkit::{apply, node};

    fn tid(s: &str) -> TaskId {
        TaskId::new(s).unwrap()
    }

    fn me() -> NodeId {
        NodeId::new("n1").unwrap()
    }

    /// A cluster of n1 and n2 with a service and task `t` on `on`.
    fn with_task(on: &str, desired: DesiredState, state: TaskState) -> ClusterState {
        let mut s = ClusterState::new();
        apply(&mut s, Command::AddNode(node("n1", Role::Manager)));
        apply(&mut s, Command::AddNode(node("n2", Role::Worker)));
        let service = ServiceId::new("s1").unwrap();
        apply(
            &mut s,
            Command::CreateService {
                id: service.clone(),
                spec: ServiceSpec {
                    name: "web".into(),
                    command: vec!["true".into()],
                    ..ServiceSpec::default()
                },
            },
        );
        apply(
            &mut s,
            Command::CreateTask {
                id: tid("t"),
                service,
                slot: Some(1),
                node: Some(NodeId::new(on).unwrap()),
                at_ms: 0,
            },
        );
        let update = TaskUpdate {
            desired: Some(desired),
            state: (state > TaskState::Assigned).then_some(state),
            ..TaskUpdate::default()
        };
        apply(
            &mut s,
            Command::UpdateTask {
                id: tid("t"),
                update,
            },
        );
        s
    }

    fn local(l: Local) -> BTreeMap<TaskId, Local> {
        [(tid("t"), l)].into()
    }

    fn reported(p: &Plan) -> Vec<(TaskState, Option<String>)> {
        p.report
            .iter()
            .map(|(_, u)| (u.state.unwrap(), u.error.clone()))
            .collect()
    }

    #[test]
    fn assigned_tasks_here_start_and_others_do_not() {
        let s = with_task("n1", DesiredState::Running, TaskState::Assigned);
        assert_eq!(plan(&s, &me(), &BTreeMap::new()).start, [tid("t")]);
        let s = with_task("n2", DesiredState::Running, TaskState::Assigned);
        assert_eq!(plan(&s, &me(), &BTreeMap::new()), Plan::default());
    }

    #[test]
    fn a_started_process_is_reported_running_once_the_state_lags() {
        let s = with_task("n1", DesiredState::Running, TaskState::Assigned);
        let p = plan(&s, &me(), &local(Local::Running));
        assert_eq!(reported(&p), [(TaskState::Running, None)]);
        assert!(p.start.is_empty());
        let s = with_task("n1", DesiredState::Running, TaskState::Running);
        assert_eq!(plan(&s, &me(), &local(Local::Running)), Plan::default());
    }

    #[test]
    fn exits_become_complete_or_failed_with_docker_words() {
        let s = with_task("n1", DesiredState::Running, TaskState::Running);
        let p = plan(&s, &me(), &local(Local::Exited(Exit::Code(0))));
        assert_eq!(reported(&p), [(TaskState::Complete, None)]);
        let p = plan(&s, &me(), &local(Local::Exited(Exit::Code(3))));
        assert_eq!(
            reported(&p),
            [(TaskState::Failed, Some("task: non-zero exit (3)".into()))]
        );
        let p = plan(&s, &me(), &local(Local::Exited(Exit::Signal(9))));
        assert_eq!(p.report[0].1.state, Some(TaskState::Failed));
    }

    #[test]
    fn a_task_told_to_shut_down_is_stopped_then_reported_shutdown() {
        let s = with_task("n1", DesiredState::Shutdown, TaskState::Running);
        assert_eq!(plan(&s, &me(), &local(Local::Running)).stop, [tid("t")]);
        assert_eq!(plan(&s, &me(), &local(Local::Stopping)), Plan::default());
        let p = plan(&s, &me(), &local(Local::Exited(Exit::Stopped)));
        assert_eq!(reported(&p), [(TaskState::Shutdown, None)]);
    }

    #[test]
    fn a_task_the_executor_never_knew_is_lost_and_fails() {
        let s = with_task("n1", DesiredState::Running, TaskState::Running);
        let p = plan(&s, &me(), &BTreeMap::new());
        assert_eq!(p.report[0].1.state, Some(TaskState::Failed));
        assert!(p.start.is_empty());
        // Told to shut down while lost: simply shut down.
        let s = with_task("n1", DesiredState::Shutdown, TaskState::Running);
        let p = plan(&s, &me(), &BTreeMap::new());
        assert_eq!(reported(&p), [(TaskState::Shutdown, None)]);
    }

    #[test]
    fn finished_or_moved_tasks_are_forgotten_and_strays_stopped() {
        let s = with_task("n1", DesiredState::Shutdown, TaskState::Shutdown);
        let p = plan(&s, &me(), &local(Local::Exited(Exit::Stopped)));
        assert_eq!(p.forget, [tid("t")]);
        assert!(p.report.is_empty());
        // Placed elsewhere now, or gone from the state: stop what runs.
        let s = with_task("n2", DesiredState::Running, TaskState::Running);
        assert_eq!(plan(&s, &me(), &local(Local::Running)).stop, [tid("t")]);
        let empty = ClusterState::new();
        assert_eq!(plan(&empty, &me(), &local(Local::Running)).stop, [tid("t")]);
        let p = plan(&empty, &me(), &local(Local::Exited(Exit::Code(0))));
        assert_eq!(p.forget, [tid("t")]);
    }

    #[test]
    fn reports_never_go_backwards() {
        let s = with_task("n1", DesiredState::Running, TaskState::Failed);
        let p = plan(&s, &me(), &local(Local::Exited(Exit::Code(0))));
        assert!(p.report.is_empty(), "{p:?}");
        assert_eq!(p.forget, [tid("t")]);
    }

    #[test]
    fn health_verdicts_the_state_lacks_ride_with_the_task_report() {
        let s = with_task("n1", DesiredState::Running, TaskState::Assigned);
        let health = [(tid("t"), TaskHealth::Healthy)].into();
        let mut p = plan(&s, &me(), &local(Local::Running));
        add_health(&mut p, &s, &local(Local::Running), &health);
        assert_eq!(p.report.len(), 1);
        assert_eq!(p.report[0].1.state, Some(TaskState::Running));
        assert_eq!(p.report[0].1.health, Some(TaskHealth::Healthy));
        // Known already, or not running here: nothing to say.
        let mut known = s.clone();
        crate::testkit::apply(
            &mut known,
            Command::UpdateTask {
                id: tid("t"),
                update: TaskUpdate {
                    state: Some(TaskState::Running),
                    health: Some(TaskHealth::Healthy),
                    ..TaskUpdate::default()
                },
            },
        );
        let mut p = plan(&known, &me(), &local(Local::Running));
        add_health(&mut p, &known, &local(Local::Running), &health);
        assert!(p.report.is_empty(), "{p:?}");
        let mut p = Plan::default();
        add_health(&mut p, &s, &local(Local::Prepared), &health);
        assert!(p.report.is_empty());
    }
}
