//! `shoal service logs [-f] [--tail N]`: a manager gathers the output of
//! a service's tasks from the nodes that ran them. Each node keeps its
//! tasks' logs (see [`crate::agent::executor`]) and serves them to
//! managers; a follower comes back with the offset it reached per task and
//! gets only what was written since.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::SwarmError;
use super::member::Member;
use super::rpc::{TaskLogsRequest, TaskLogsResponse};
use crate::agent::{executor, logs, short_name};
use crate::ids::TaskId;
use crate::state::NodeStatus;

/// What `service logs` asks for.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LogsRequest {
    /// Lines from the end of each task's log, for tasks not yet read.
    pub tail: Option<usize>,
    /// Where reading stopped last time, per task.
    pub offsets: BTreeMap<TaskId, u64>,
}

/// New output of one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskLog {
    /// The task.
    pub task: TaskId,
    /// `SERVICE.SLOT.ID@NODE`, docker's prefix.
    pub name: String,
    /// Its new lines.
    pub lines: Vec<String>,
    /// Where to continue.
    pub offset: u64,
    /// Why its node could not be read, if it could not.
    pub error: Option<String>,
}

impl Member {
    /// Reads a task's log on this node.
    pub(super) fn read_task_log(&self, r: &TaskLogsRequest) -> Result<TaskLogsResponse, String> {
        let path = executor::log_path(&self.config.state_dir.join("tasks"), &r.task);
        let read = match r.offset {
            Some(offset) => logs::read_from(&path, offset),
            None => logs::tail(&path, r.tail),
        };
        read.map(|l| TaskLogsResponse {
            lines: l.lines,
            offset: l.offset,
        })
        .map_err(|e| format!("reading the log of task {}: {e}", r.task))
    }

    /// `service logs`: new output of every task of the service.
    pub(super) async fn service_logs(
        &self,
        key: &str,
        request: LogsRequest,
    ) -> Result<Vec<TaskLog>, SwarmError> {
        let state = self.read().await?;
        let service = super::services::find(&state, key)?;
        let mut out = Vec::new();
        for task in state.tasks().values().filter(|t| t.service == service.id) {
            let Some(node) = task.node.as_ref().and_then(|n| state.node(n)) else {
                continue;
            };
            let name = format!("{}.{}@{}", short_name(&state, task), task.id, node.hostname);
            let offset = request.offsets.get(&task.id).copied();
            let ask = TaskLogsRequest {
                task: task.id.clone(),
                tail: request.tail,
                offset,
            };
            let answer = if node.id == self.node_id {
                self.read_task_log(&ask)
            } else if node.status == NodeStatus::Down {
                Err(format!("node {} is down", node.hostname))
            } else {
                match self.channel(node.addr, node.id.as_str()).await {
                    Ok(mut client) => client
                        .task_logs(ask)
                        .await
                        .map(tonic::Response::into_inner)
                        .map_err(|s| s.message().to_owned()),
                    Err(e) => Err(e.to_string()),
                }
            };
            out.push(match answer {
                Ok(r) => TaskLog {
                    task: task.id.clone(),
                    name,
                    lines: r.lines,
                    offset: r.offset,
                    error: None,
                },
                Err(error) => TaskLog {
                    task: task.id.clone(),
                    name,
                    lines: Vec::new(),
                    offset: offset.unwrap_or(0),
                    error: Some(error),
                },
            });
        }
        Ok(out)
    }
}
