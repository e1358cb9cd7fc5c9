//! `shoal service logs [-f] [--tail N] SERVICE|TASK`: a manager gathers
//! the output of a service's tasks (or of one task) from the nodes that
//! ran them. Each node keeps its
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
use crate::state::{ClusterState, NodeStatus, Task};

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

    /// `service logs`: new output of every task of the service, or of
    /// the one task `key` names (see [`logged_tasks`]).
    pub(super) async fn service_logs(
        &self,
        key: &str,
        request: LogsRequest,
    ) -> Result<Vec<TaskLog>, SwarmError> {
        let state = self.read().await?;
        let mut out = Vec::new();
        for task in logged_tasks(&state, key).map_err(SwarmError::Refused)? {
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

/// The tasks `service logs KEY` shows. As docker, `KEY` is first a
/// service (id, name or unique id prefix): all its tasks; else one task,
/// by id, unique id prefix or docker's task name (`SERVICE.SLOT.ID`, the
/// log prefix without `@NODE`).
fn logged_tasks<'a>(state: &'a ClusterState, key: &str) -> Result<Vec<&'a Task>, String> {
    let is_service =
        |s: &crate::state::Service| s.id.as_str().starts_with(key) || s.spec.name == key;
    if state.services().values().any(is_service) {
        let service = super::services::find(state, key).map_err(|e| e.to_string())?;
        return Ok(state
            .tasks()
            .values()
            .filter(|t| t.service == service.id)
            .collect());
    }
    let named: Vec<(String, &Task)> = state
        .tasks()
        .values()
        .map(|t| (format!("{}.{}", short_name(state, t), t.id), t))
        .collect();
    let found = super::view::find_by_key(
        named.iter(),
        key,
        "task",
        |(_, t)| t.id.as_str(),
        |(name, _)| name.as_str(),
    );
    match found {
        Ok((_, task)) => Ok(vec![task]),
        Err(_) if !named.iter().any(|(_, t)| t.id.as_str().starts_with(key)) => Err(format!(
            "no such task or service: `{key}`; `shoal service ls` lists services, `shoal \
             service ps SERVICE` their tasks"
        )),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;
    use crate::ids::{ServiceId, TaskId};
    use crate::state::{Command, ServiceSpec};
    use crate::testkit::{apply, node};

    fn task_id(s: &str) -> TaskId {
        TaskId::new(s).unwrap()
    }

    /// Service `web` (svcweb) with tasks `aaa1` and `aab2` in slots 1, 2.
    fn state() -> ClusterState {
        let mut s = ClusterState::new();
        apply(&mut s, Command::AddNode(node("n1", Role::Manager)));
        let id = ServiceId::new("svcweb").unwrap();
        let spec = ServiceSpec {
            name: "web".into(),
            command: vec!["true".into()],
            ..ServiceSpec::default()
        };
        apply(
            &mut s,
            Command::CreateService {
                id: id.clone(),
                spec,
            },
        );
        for (task, slot) in [("aaa1", 1), ("aab2", 2)] {
            apply(
                &mut s,
                Command::CreateTask {
                    id: task_id(task),
                    service: id.clone(),
                    slot: Some(slot),
                    node: None,
                    at_ms: 0,
                },
            );
        }
        s
    }

    fn ids(tasks: &[&Task]) -> Vec<String> {
        tasks.iter().map(|t| t.id.to_string()).collect()
    }

    #[test]
    fn logs_are_of_a_service_or_of_one_task() {
        let s = state();
        assert_eq!(ids(&logged_tasks(&s, "web").unwrap()), ["aaa1", "aab2"]);
        assert_eq!(ids(&logged_tasks(&s, "svc").unwrap()), ["aaa1", "aab2"]);
        assert_eq!(ids(&logged_tasks(&s, "aab2").unwrap()), ["aab2"]);
        assert_eq!(ids(&logged_tasks(&s, "aaa").unwrap()), ["aaa1"]);
        assert_eq!(ids(&logged_tasks(&s, "web.2.aab2").unwrap()), ["aab2"]);
        let e = logged_tasks(&s, "aa").unwrap_err();
        assert!(e.contains("matches 2 tasks"), "{e}");
        let e = logged_tasks(&s, "nope").unwrap_err();
        assert!(e.starts_with("no such task or service: `nope`"), "{e}");
    }
}
