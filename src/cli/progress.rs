//! Convergence progress for `service create | scale | update | rollback`,
//! in docker's words: `overall progress: 2 out of 3 tasks` (`rolling back
//! update: ...` during a rollback), one line per slot (per node for a
//! global service) with the state of its task, then `verify: Service
//! converged`.
//!
//! The control plane records no progress per slot, so it is read from
//! the task listing, as docker's CLI reads it: only tasks of the
//! service's current spec version count, so a slot is done when its
//! running task has that version, and a rolling update shows its slots
//! turning over `--update-parallelism` at a time while the others stay
//! blank. [`Progress::observe`] turns one snapshot (the service, its
//! tasks, the time since the command started) into a [`Step`] and does no
//! I/O; [`show`] polls the daemon and draws the frames: in place on a
//! terminal, and as plain lines (each line once, when it changes)
//! otherwise.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use shoal_control::state::{
    DesiredState, ServiceMode, TaskHealth, TaskState, UpdateState, UpdateStatus,
};
use shoal_control::swarm::{ServiceView, TaskView};

use crate::client::Daemon;

/// How long progress waits for a service to converge.
const CONVERGE_WAIT: Duration = Duration::from_secs(120);
/// Docker draws no line per task beyond this many.
const MAX_BARS: u64 = 20;
/// The width of the longest state docker shows, which pads the others.
const STATE_WIDTH: usize = 9;
/// Docker's 9 steps from `new` to `running`; the bar is 50 wide.
const MAX_STEP: u64 = 9;
/// Errors are cut to fit a narrow terminal, as docker cuts them.
const ERROR_WIDTH: usize = 75;

/// One line of a frame: `ID: ACTION`, with a bar on a terminal when
/// `step` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Row {
    id: String,
    action: String,
    step: Option<u64>,
}

impl Row {
    fn new(id: impl Into<String>, action: impl Into<String>) -> Row {
        Row {
            id: id.into(),
            action: action.into(),
            step: None,
        }
    }

    /// The row on a terminal: the state padded and its bar, as docker's
    /// progress output draws it.
    fn tty(&self) -> String {
        match self.step {
            Some(step) => {
                let filled = usize::try_from(step.min(MAX_STEP) * 100 / MAX_STEP / 2).unwrap_or(50);
                format!(
                    "{}: {:<STATE_WIDTH$} [{}>{}]",
                    self.id,
                    self.action,
                    "=".repeat(filled),
                    " ".repeat(50 - filled)
                )
            }
            None => format!("{}: {}", self.id, self.action),
        }
    }

    /// The row as a plain line; `None` for a blank one.
    fn plain(&self) -> Option<String> {
        (!self.action.is_empty()).then(|| format!("{}: {}", self.id, self.action))
    }
}

/// What one look at the service shows.
pub(super) type Frame = Vec<Row>;

/// What to do after one look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    /// Show the frame and look again.
    Wait(Frame),
    /// Show the frame; the service converged.
    Done(Frame),
    /// The update or rollback stopped; the error to report.
    Fail(String),
}

/// What progress remembers between looks.
pub(super) struct Progress {
    /// The `rollback: ...` line, once there is one.
    rollback: Option<String>,
    /// When (ms since the start) every task was first seen current and
    /// running, since the last time one was not.
    converged_at: Option<u64>,
}

impl Progress {
    /// Progress of a command; `rollback` for `service rollback`.
    pub(super) fn new(rollback: bool) -> Progress {
        Progress {
            rollback: rollback.then(|| "manually requested rollback".to_owned()),
            converged_at: None,
        }
    }

    /// One look: the service and its tasks `now_ms` after the start.
    pub(super) fn observe(&mut self, view: &ServiceView, tasks: &[TaskView], now_ms: u64) -> Step {
        let status = view.update_status.as_ref();
        match status.map(|u| u.state) {
            Some(UpdateState::Paused) => {
                return Step::Fail(paused("update", status));
            }
            Some(UpdateState::RollbackPaused) => {
                return Step::Fail(paused("rollback", status));
            }
            Some(UpdateState::RollbackStarted) if self.rollback.is_none() => {
                self.rollback = status.map(|u| u.message.clone());
            }
            _ => {}
        }
        let current: Vec<&TaskView> = tasks
            .iter()
            .filter(|t| t.spec_version == view.spec_version)
            .collect();
        let checked = view.spec.healthcheck.is_some();
        let serving = |t: &TaskView| {
            t.desired == DesiredState::Running
                && t.state == TaskState::Running
                && (!checked || t.health == Some(TaskHealth::Healthy))
        };
        let mut rows = Vec::new();
        rows.extend(self.rollback.iter().map(|m| Row::new("rollback", m)));
        let (running, wanted, tasks_rows) = match view.spec.mode {
            ServiceMode::Replicated { replicas } => {
                let mut running = 0;
                let mut lines = Vec::new();
                for slot in 1..=replicas {
                    let task = best(current.iter().copied().filter(|t| t.slot == Some(slot)));
                    running += u64::from(task.is_some_and(serving));
                    if replicas <= MAX_BARS {
                        lines.push(task_row(format!("{slot}/{replicas}"), task));
                    }
                }
                (running, replicas, lines)
            }
            ServiceMode::Global => {
                // The nodes that run the service now, whatever the
                // version: each shows its current task, once it has one.
                let mut by_node: BTreeMap<&str, Vec<&TaskView>> = BTreeMap::new();
                for t in tasks.iter().filter(|t| t.desired == DesiredState::Running) {
                    by_node.entry(node_name(t)).or_default();
                }
                for t in &current {
                    if let Some(on) = by_node.get_mut(node_name(t)) {
                        on.push(t);
                    }
                }
                let wanted = by_node.len() as u64;
                let mut running = 0;
                let mut lines = Vec::new();
                for (node, tasks) in by_node {
                    let task = best(tasks.into_iter());
                    running += u64::from(task.is_some_and(serving));
                    if wanted <= MAX_BARS {
                        lines.push(task_row(node.to_owned(), task));
                    }
                }
                (running, wanted, lines)
            }
        };
        let rolling = if self.rollback.is_some() {
            "rolling back update: "
        } else {
            ""
        };
        let overall = format!("{rolling}{running} out of {wanted} tasks");
        rows.push(Row::new("overall progress", overall));
        rows.extend(tasks_rows);

        // Converged as docker sees it: every wanted task current and
        // running. Done once nothing else is left: no other live task, none
        // still stopping, and the update (whose monitor period docker
        // waits out too) marked complete.
        let settled = running == wanted;
        let live = tasks
            .iter()
            .filter(|t| t.desired == DesiredState::Running)
            .count() as u64;
        let stopping = tasks
            .iter()
            .any(|t| t.desired == DesiredState::Shutdown && !t.state.is_terminal());
        let updating = status.is_some_and(|u| u.state.is_active());
        if settled && live == wanted && !stopping && !updating {
            rows.push(Row::new("verify", "Service converged"));
            return Step::Done(rows);
        }
        match (settled, self.converged_at) {
            (true, None) => self.converged_at = Some(now_ms),
            (false, Some(_)) => {
                self.converged_at = None;
                rows.push(Row::new("verify", "Detected task failure"));
            }
            _ => {}
        }
        if let (Some(since), true) = (self.converged_at, updating) {
            let monitor = match status.map(|u| u.state) {
                Some(UpdateState::RollbackStarted) => view.spec.rollback.monitor_ms,
                _ => view.spec.update.monitor_ms,
            };
            let left = monitor.saturating_sub(now_ms.saturating_sub(since));
            let wait = format!(
                "Waiting {} seconds to verify that tasks are stable...",
                left / 1000 + 1
            );
            rows.push(Row::new("verify", wait));
        }
        Step::Wait(rows)
    }
}

/// A global task's node, by hostname.
fn node_name(t: &TaskView) -> &str {
    t.node
        .as_deref()
        .or(t.node_id.as_ref().map(|n| n.as_str()))
        .unwrap_or("?")
}

/// Docker's error when an update or a rollback paused.
fn paused(what: &str, status: Option<&UpdateStatus>) -> String {
    let message = status.map_or("", |u| u.message.as_str());
    format!("service {what} paused: {message}")
}

/// The task a slot or node shows, as docker picks it: meant to run over
/// told to stop, then the one least far along.
fn best<'t>(tasks: impl Iterator<Item = &'t TaskView>) -> Option<&'t TaskView> {
    tasks.min_by_key(|t| (t.desired, t.state))
}

/// A slot's or node's line: its task's error, or its state and bar while
/// it is meant to run and has not ended; blank otherwise (no current task
/// yet: an update has not reached it).
fn task_row(id: String, task: Option<&TaskView>) -> Row {
    let Some(t) = task else {
        return Row::new(id, "");
    };
    if let Some(e) = t.error.as_deref().filter(|_| t.state != TaskState::Running) {
        return Row::new(id, cut_error(e));
    }
    if t.desired == DesiredState::Running && !t.state.is_terminal() {
        return Row {
            id,
            action: t.state.to_string(),
            step: Some(step(t.state)),
        };
    }
    Row::new(id, "")
}

/// How far along `state` is, of docker's 9 steps (shoal has no
/// allocated, accepted, preparing or ready).
fn step(state: TaskState) -> u64 {
    match state {
        TaskState::New => 1,
        TaskState::Pending => 3,
        TaskState::Assigned => 4,
        TaskState::Starting => 8,
        _ => MAX_STEP,
    }
}

/// An error on one line and at most 75 characters.
fn cut_error(e: &str) -> String {
    let one_line = e.replace('\n', " ");
    if one_line.chars().count() <= ERROR_WIDTH {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(ERROR_WIDTH - 1).collect();
    cut.push('…');
    cut
}

/// Draws frames on stdout.
pub(super) enum Screen {
    /// A terminal: each frame redrawn over the one before.
    Tty {
        /// Lines of the last frame.
        drawn: usize,
    },
    /// Anything else: each row's line printed when it changes.
    Plain {
        /// What was last printed for each row id.
        printed: BTreeMap<String, String>,
    },
}

impl Screen {
    fn new(tty: bool) -> Screen {
        if tty {
            Screen::Tty { drawn: 0 }
        } else {
            Screen::Plain {
                printed: BTreeMap::new(),
            }
        }
    }

    /// The text that shows `frame` after what was shown before.
    pub(super) fn draw(&mut self, frame: &Frame) -> String {
        match self {
            Screen::Tty { drawn } => {
                let mut out = String::new();
                if *drawn > 0 {
                    // Back to the first line of the last frame.
                    out.push_str(&format!("\x1b[{drawn}A"));
                }
                for row in frame {
                    out.push_str("\r\x1b[2K");
                    out.push_str(&row.tty());
                    out.push('\n');
                }
                // Clear what is left of a longer last frame.
                out.push_str("\x1b[J");
                *drawn = frame.len();
                out
            }
            Screen::Plain { printed } => {
                let mut out = String::new();
                for row in frame {
                    let Some(line) = row.plain() else {
                        continue;
                    };
                    if printed.get(&row.id) != Some(&line) {
                        out.push_str(&line);
                        out.push('\n');
                        printed.insert(row.id.clone(), line);
                    }
                }
                out
            }
        }
    }
}

/// Shows the progress of service `key` until it converges: an error if
/// its update or rollback pauses, or it has not converged after two
/// minutes. `rollback` for `service rollback`.
pub(super) fn show(daemon: &Daemon, key: &str, rollback: bool) -> Result<()> {
    let started = Instant::now();
    let mut progress = Progress::new(rollback);
    let mut screen = Screen::new(std::io::stdout().is_terminal());
    let mut stdout = std::io::stdout();
    loop {
        let view: ServiceView = daemon.get(&format!("/services/{key}"))?;
        let tasks: Vec<TaskView> = daemon.get(&format!("/services/{}/tasks", view.id))?;
        let now_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match progress.observe(&view, &tasks, now_ms) {
            Step::Wait(frame) => {
                stdout.write_all(screen.draw(&frame).as_bytes())?;
                stdout.flush()?;
            }
            Step::Done(frame) => {
                stdout.write_all(screen.draw(&frame).as_bytes())?;
                stdout.flush()?;
                return Ok(());
            }
            Step::Fail(why) => bail!("{why}"),
        }
        if started.elapsed() > CONVERGE_WAIT {
            bail!(
                "service {} has not converged after {}s; `shoal service ps {}` shows why",
                view.name,
                CONVERGE_WAIT.as_secs(),
                view.name
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests;
