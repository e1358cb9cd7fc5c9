//! The member's side of its agent: starting it with this node's identity,
//! and carrying its task reports to the managers (a manager writes them
//! through Raft itself; a worker calls a manager, which checks that the
//! task is the caller's before writing).

use std::sync::{Arc, Weak};

use super::SwarmError;
use super::member::Member;
use super::rpc::ReportTaskRequest;
use crate::agent::container::{DEFAULT_INIT, Runtime};
use crate::agent::{Agent, AgentConfig, DEFAULT_STOP_GRACE, Reporter};
use crate::ids::{NodeId, TaskId};
use crate::state::{ClusterState, Command, TaskUpdate};

impl Member {
    /// Starts this member's agent.
    pub(super) fn start_agent(self: &Arc<Self>) -> Result<Agent, SwarmError> {
        let config = AgentConfig {
            node: self.node_id.clone(),
            dir: self.config.state_dir.join("tasks"),
            stop_grace: DEFAULT_STOP_GRACE,
            images: self.images.clone(),
            runtime: Runtime {
                program: self.config.runtime.clone(),
                root: self.config.state_dir.join("runtime"),
                init: DEFAULT_INIT.into(),
            },
        };
        Agent::start(
            config,
            self.watch_state(),
            self.config.tables.0.clone(),
            Arc::new(ToManagers(Arc::downgrade(self))),
        )
        .map_err(|e| SwarmError::Refused(format!("starting the agent: {e}")))
    }

    /// Records a task's progress, from this node's agent.
    async fn report_task(&self, task: &TaskId, update: TaskUpdate) -> Result<(), SwarmError> {
        if self.consensus().await.is_some() {
            self.write(Command::UpdateTask {
                id: task.clone(),
                update,
            })
            .await
            .map(|_| ())
        } else {
            self.call_managers(|mut c| {
                let request = ReportTaskRequest {
                    task: task.clone(),
                    update: update.clone(),
                };
                async move { c.report_task(request).await.map(|_| ()) }
            })
            .await
        }
    }
}

/// Checks a report from node `from`: only its own tasks, and only their
/// progress (state and error), never placement or desired state.
pub(super) fn check_report(
    state: &ClusterState,
    from: &NodeId,
    request: &ReportTaskRequest,
) -> Result<Command, String> {
    let task = state
        .task(&request.task)
        .ok_or_else(|| format!("no task `{}`", request.task))?;
    if task.node.as_ref() != Some(from) {
        return Err(format!(
            "task `{}` is not placed on node `{from}`; a node reports only on its own tasks",
            request.task
        ));
    }
    if request.update.node.is_some() || request.update.desired.is_some() {
        return Err("a node reports only a task's state and error".into());
    }
    Ok(Command::UpdateTask {
        id: request.task.clone(),
        update: request.update.clone(),
    })
}

/// Reports to the managers through the member, while it lives.
struct ToManagers(Weak<Member>);

#[async_trait::async_trait]
impl Reporter for ToManagers {
    async fn report(&self, task: &TaskId, update: TaskUpdate) -> Result<(), String> {
        let member = self.0.upgrade().ok_or("the member stopped")?;
        member
            .report_task(task, update)
            .await
            .map_err(|e| e.to_string())
    }
}
