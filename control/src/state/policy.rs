//! How a service's tasks are restarted and replaced: the restart policy
//! and update configurations of its spec, with Docker's defaults, and the
//! progress of its current update or rollback.
//!
//! Plain data; the orchestrator reads it and records progress through
//! `Command::SetUpdateStatus`. Every field has a serde default, so specs
//! written before these existed decode with Docker's behaviour.

use serde::{Deserialize, Serialize};

/// When a task that ended by itself gets a replacement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartCondition {
    /// Whatever the outcome.
    #[default]
    Any,
    /// Unless it exited with status 0.
    OnFailure,
    /// Never.
    None,
}

/// Docker's `--restart-*` options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RestartPolicy {
    /// When to replace a task that ended by itself.
    pub condition: RestartCondition,
    /// How long after the task ended its replacement is created.
    pub delay_ms: u64,
    /// How many replacements of one slot (or node) after failures of the
    /// same spec before giving up; 0 means no limit.
    pub max_attempts: u64,
    /// How far back failures count toward `max_attempts`; 0 means all of
    /// them.
    pub window_ms: u64,
}

impl Default for RestartPolicy {
    fn default() -> RestartPolicy {
        RestartPolicy {
            condition: RestartCondition::Any,
            delay_ms: 5000,
            max_attempts: 0,
            window_ms: 0,
        }
    }
}

/// What a rolling update does when new tasks fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureAction {
    /// Stop replacing tasks until the next update.
    #[default]
    Pause,
    /// Go on.
    Continue,
    /// Go back to the previous spec.
    Rollback,
}

/// Whether an old task stops before or after its replacement starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    /// Stop the old task, then start the new one.
    #[default]
    StopFirst,
    /// Start the new task, and stop the old one once it runs.
    StartFirst,
}

/// Docker's `--update-*` (and `--rollback-*`) options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UpdateConfig {
    /// Tasks replaced per batch; 0 means all at once.
    pub parallelism: u64,
    /// The pause between one batch settling and the next starting.
    pub delay_ms: u64,
    /// What to do when too many new tasks fail.
    pub failure_action: FailureAction,
    /// How long a new task must run before it counts as a success, and
    /// within which its ending counts as a failure.
    pub monitor_ms: u64,
    /// The failures tolerated, in thousandths of the service's tasks.
    pub max_failure_ratio_permille: u64,
    /// Stop-first or start-first.
    pub order: UpdateOrder,
}

impl Default for UpdateConfig {
    fn default() -> UpdateConfig {
        UpdateConfig {
            parallelism: 1,
            delay_ms: 0,
            failure_action: FailureAction::Pause,
            monitor_ms: 5000,
            max_failure_ratio_permille: 0,
            order: UpdateOrder::StopFirst,
        }
    }
}

/// Where a service's update stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateState {
    /// Tasks of the old spec are being replaced.
    Updating,
    /// Stopped after failures; the next update resumes.
    Paused,
    /// Every task runs the new spec.
    Completed,
    /// Tasks are being put back to the previous spec.
    RollbackStarted,
    /// The rollback stopped after failures.
    RollbackPaused,
    /// Every task runs the previous spec again.
    RollbackCompleted,
}

impl UpdateState {
    /// True while the orchestrator replaces tasks.
    pub fn is_active(self) -> bool {
        matches!(self, UpdateState::Updating | UpdateState::RollbackStarted)
    }

    /// True for a rollback, whatever its progress.
    pub fn is_rollback(self) -> bool {
        matches!(
            self,
            UpdateState::RollbackStarted
                | UpdateState::RollbackPaused
                | UpdateState::RollbackCompleted
        )
    }
}

/// The progress of a service's last update, as `service inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateStatus {
    /// Where it stands.
    pub state: UpdateState,
    /// Why, for people.
    pub message: String,
    /// When the update (or rollback) started, in ms since the UNIX epoch.
    pub started_ms: u64,
}

/// A health check (`--health-cmd`): a command run in each task's
/// namespaces; exit 0 is healthy. A task with a check enters its service's
/// load balancer only once healthy, and one found unhealthy is stopped and
/// replaced, as Swarm does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthCheck {
    /// The command and its arguments (`--health-cmd` runs `/bin/sh -c`).
    pub command: Vec<String>,
    /// Time between checks.
    pub interval_ms: u64,
    /// The longest a check may take.
    pub timeout_ms: u64,
    /// Failures in a row that make a task unhealthy.
    pub retries: u32,
    /// Grace after the start during which failures do not count.
    pub start_period_ms: u64,
}

impl Default for HealthCheck {
    fn default() -> HealthCheck {
        HealthCheck {
            command: Vec::new(),
            interval_ms: 30_000,
            timeout_ms: 30_000,
            retries: 3,
            start_period_ms: 0,
        }
    }
}

/// What a task's health check last said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskHealth {
    /// Its check passed.
    Healthy,
    /// Its check failed `retries` times in a row.
    Unhealthy,
}
