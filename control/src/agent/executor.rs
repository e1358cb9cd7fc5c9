//! The process executor: a task is its service's command, run in a
//! network namespace of its own (which the data plane wires like an
//! embed-mode endpoint) and a UTS namespace with the task's name as
//! hostname, its output appended to a log file.
//!
//! One thread owns every child: it starts them, polls them for exit and
//! stops them (the stop signal, SIGTERM by default, to the process
//! group, SIGKILL after the grace period). Children die with that thread
//! (`PR_SET_PDEATHSIG`), so a daemon killed with -9 leaves no task processes behind; its namespaces
//! are removed by the next start ([`sweep`]).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shoal_dataplane::sys::netns;
use shoal_dataplane::sys::process::{Isolation, signal_group, spawn_isolated, spawn_supervised};
use tokio::sync::mpsc::UnboundedSender;

use super::container::{self, ContainerLaunch};
use super::plan::Exit;
use crate::ids::TaskId;

/// How often the executor looks for exited children.
const POLL: Duration = Duration::from_millis(50);

/// Linux's signal numbers, for [`signal_group`].
const SIGKILL: i32 = 9;

/// Where task namespaces are named from: `shoal-<task id>`.
const NETNS_PREFIX: &str = "shoal-";

/// The name of a task's network namespace.
pub fn netns_name(task: &TaskId) -> String {
    format!("{NETNS_PREFIX}{task}")
}

/// The log file of a task under the agent's directory.
pub fn log_path(dir: &Path, task: &TaskId) -> PathBuf {
    dir.join(task.as_str()).join("log")
}

/// Everything needed to run one task.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The task.
    pub task: TaskId,
    /// Its command and arguments.
    pub argv: Vec<String>,
    /// Its environment, `K=V`, on top of a minimal one.
    pub env: Vec<String>,
    /// Its hostname.
    pub hostname: String,
    /// Its network namespace, wired already.
    pub netns: PathBuf,
    /// The resolver file to mount over `/etc/resolv.conf`.
    pub resolv_conf: Option<PathBuf>,
    /// Its log file (stdout and stderr, appended).
    pub log: PathBuf,
    /// Its health check, if its service has one.
    pub health: Option<HealthCheck>,
    /// For an image task: its image and runtime; `None` runs `argv` on the
    /// node's own filesystem.
    pub container: Option<ContainerLaunch>,
    /// How it is asked to stop.
    pub stop: StopPolicy,
}

/// How a task is stopped: `signal` to its process group, then SIGKILL
/// after `grace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopPolicy {
    /// The signal's number (SIGTERM unless the service or image says).
    pub signal: i32,
    /// How long it has before SIGKILL.
    pub grace: Duration,
}

/// A health check: a command run in the task's namespaces; exit 0 is
/// healthy. Docker's semantics: the first run `interval` after the start,
/// a run longer than `timeout` fails, `retries` failures in a row make the
/// task unhealthy, and failures during `start_period` do not count (a
/// success there makes it healthy at once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// The command and its arguments.
    pub argv: Vec<String>,
    /// Time between the end of one run and the start of the next.
    pub interval: Duration,
    /// The longest a run may take.
    pub timeout: Duration,
    /// Failures in a row that make the task unhealthy.
    pub retries: u32,
    /// Grace after the start during which failures do not count.
    pub start_period: Duration,
}

pub use crate::state::TaskHealth as Health;

/// What the executor tells the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The task's process started.
    Started(TaskId),
    /// The task's process ended (or never started).
    Exited(TaskId, Exit),
    /// The task's health changed.
    Health(TaskId, Health),
}

enum Order {
    Run(Box<Launch>),
    Stop(TaskId),
    Quit(Duration),
}

/// The executor thread's handle.
pub struct Executor {
    orders: mpsc::Sender<Order>,
    thread: Option<JoinHandle<()>>,
}

impl Executor {
    /// Starts the thread; events go to `events`.
    pub fn start(events: UnboundedSender<Event>) -> io::Result<Executor> {
        let (orders, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("executor".into())
            .spawn(move || Children::default().run(&rx, &events))?;
        Ok(Executor {
            orders,
            thread: Some(thread),
        })
    }

    /// Runs a task.
    pub fn run(&self, launch: Launch) {
        let _ = self.orders.send(Order::Run(Box::new(launch)));
    }

    /// Stops a task as its [`StopPolicy`] says.
    pub fn stop(&self, task: TaskId) {
        let _ = self.orders.send(Order::Stop(task));
    }

    /// Stops every task, each as its policy says but with at most
    /// `longest` before SIGKILL, and waits until they have exited.
    pub fn shutdown(mut self, longest: Duration) {
        let _ = self.orders.send(Order::Quit(longest));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        let _ = self.orders.send(Order::Quit(Duration::ZERO));
    }
}

struct Proc {
    child: Child,
    /// An image task's container, cleaned up when it ends.
    container: Option<ContainerLaunch>,
    /// How to stop it.
    stop: StopPolicy,
    /// When to send SIGKILL, once asked to stop.
    kill_at: Option<Instant>,
    probe: Option<Probe>,
}

/// A task's health check in progress.
struct Probe {
    check: HealthCheck,
    launch: Box<Launch>,
    started: Instant,
    next_at: Instant,
    running: Option<(Child, Instant)>,
    failures: u32,
    said: Option<Health>,
}

#[derive(Default)]
struct Children {
    procs: BTreeMap<TaskId, Proc>,
    quitting: bool,
}

impl Children {
    fn run(mut self, orders: &mpsc::Receiver<Order>, events: &UnboundedSender<Event>) {
        loop {
            match orders.recv_timeout(POLL) {
                Ok(order) => self.order(order, events),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.order(Order::Quit(Duration::ZERO), events);
                }
            }
            while let Ok(order) = orders.try_recv() {
                self.order(order, events);
            }
            self.reap(events);
            if self.quitting && self.procs.is_empty() {
                return;
            }
        }
    }

    fn order(&mut self, order: Order, events: &UnboundedSender<Event>) {
        match order {
            Order::Run(launch) => {
                if self.quitting {
                    return;
                }
                let task = launch.task.clone();
                match spawn(&launch) {
                    Ok(child) => {
                        tracing::info!(
                            "task {} started: pid {} `{}`",
                            task,
                            child.id(),
                            launch.argv.join(" ")
                        );
                        let now = Instant::now();
                        let probe = launch.health.clone().map(|check| Probe {
                            launch: launch.clone(),
                            started: now,
                            next_at: now + check.interval,
                            check,
                            running: None,
                            failures: 0,
                            said: None,
                        });
                        self.procs.insert(
                            task.clone(),
                            Proc {
                                child,
                                stop: launch.stop,
                                kill_at: None,
                                probe,
                                container: launch.container.clone(),
                            },
                        );
                        let _ = events.send(Event::Started(task));
                    }
                    Err(e) => {
                        if let Some(c) = &launch.container {
                            container::cleanup(&task, c);
                        }
                        tracing::warn!("task {task} could not start: {e}");
                        let _ = events.send(Event::Exited(task, Exit::StartFailed(e.to_string())));
                    }
                }
            }
            Order::Stop(task) => {
                if let Some(p) = self.procs.get_mut(&task) {
                    p.stop(p.stop.grace);
                }
            }
            Order::Quit(longest) => {
                self.quitting = true;
                for p in self.procs.values_mut() {
                    p.stop(p.stop.grace.min(longest));
                }
            }
        }
    }

    fn reap(&mut self, events: &UnboundedSender<Event>) {
        let now = Instant::now();
        let mut gone = Vec::new();
        for (task, p) in &mut self.procs {
            match p.child.try_wait() {
                Ok(Some(status)) => {
                    // Whatever the task left behind in its group goes too.
                    let _ = signal_group(p.child.id(), SIGKILL);
                    let exit = if p.kill_at.is_some() {
                        Exit::Stopped
                    } else {
                        exit_of(status)
                    };
                    gone.push((task.clone(), exit));
                }
                Ok(None) => {
                    if p.kill_at.is_some_and(|at| now >= at) {
                        let _ = signal_group(p.child.id(), SIGKILL);
                    }
                    if p.kill_at.is_none()
                        && let Some(probe) = &mut p.probe
                        && let Some(health) = probe.step(now)
                    {
                        let _ = events.send(Event::Health(task.clone(), health));
                    }
                }
                Err(e) => {
                    tracing::warn!("task {task}: waiting for its process: {e}");
                    gone.push((task.clone(), UNKNOWN_EXIT));
                }
            }
        }
        for (task, exit) in gone {
            if let Some(mut p) = self.procs.remove(&task) {
                if let Some((mut check, _)) = p.probe.as_mut().and_then(|p| p.running.take()) {
                    let _ = signal_group(check.id(), SIGKILL);
                    let _ = check.wait();
                }
                if let Some(c) = &p.container {
                    container::cleanup(&task, c);
                }
            }
            tracing::info!("task {task} ended: {exit:?}");
            let _ = events.send(Event::Exited(task, exit));
        }
    }
}

impl Probe {
    /// Advances the check; the new health when it changes.
    fn step(&mut self, now: Instant) -> Option<Health> {
        let passed = match &mut self.running {
            Some((child, deadline)) => match child.try_wait() {
                Ok(Some(status)) => Some(status.success()),
                Ok(None) if now >= *deadline => {
                    let _ = signal_group(child.id(), SIGKILL);
                    let _ = child.wait();
                    Some(false)
                }
                Ok(None) => None,
                Err(_) => Some(false),
            },
            None => {
                if now >= self.next_at {
                    self.running = spawn_check(&self.check, &self.launch)
                        .ok()
                        .map(|c| (c, now + self.check.timeout));
                    if self.running.is_none() {
                        return self.judge(false, now);
                    }
                }
                None
            }
        }?;
        if let Some((mut child, _)) = self.running.take() {
            let _ = signal_group(child.id(), SIGKILL);
            let _ = child.wait();
        }
        self.judge(passed, now)
    }

    fn judge(&mut self, passed: bool, now: Instant) -> Option<Health> {
        self.next_at = now + self.check.interval;
        let health = if passed {
            self.failures = 0;
            Health::Healthy
        } else {
            if now < self.started + self.check.start_period {
                return None;
            }
            self.failures += 1;
            if self.failures < self.check.retries.max(1) {
                return None;
            }
            Health::Unhealthy
        };
        if self.said == Some(health) {
            return None;
        }
        self.said = Some(health);
        Some(health)
    }
}

fn isolation(launch: &Launch) -> Isolation {
    Isolation {
        netns: launch.netns.clone(),
        hostname: launch.hostname.clone(),
        resolv_conf: launch.resolv_conf.clone(),
    }
}

/// Runs one health check, its output discarded: in the task's
/// namespaces, or inside its container.
fn spawn_check(check: &HealthCheck, launch: &Launch) -> io::Result<Child> {
    if let Some(c) = &launch.container {
        if check.argv.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the health check has no command",
            ));
        }
        let mut command = container::exec_command(&launch.task, c, &check.argv);
        command.stdout(Stdio::null()).stderr(Stdio::null());
        return spawn_supervised(&mut command);
    }
    let mut command = base_command(&check.argv, "the health check has no command")?;
    command.stdout(Stdio::null()).stderr(Stdio::null());
    spawn_isolated(&mut command, &isolation(launch))
}

impl Proc {
    fn stop(&mut self, grace: Duration) {
        if self.kill_at.is_some() {
            return;
        }
        let pid = self.child.id();
        if grace.is_zero() {
            let _ = signal_group(pid, SIGKILL);
        } else {
            let _ = signal_group(pid, self.stop.signal);
        }
        self.kill_at = Some(Instant::now() + grace);
    }
}

fn exit_of(status: std::process::ExitStatus) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => Exit::Code(code),
        (None, Some(signal)) => Exit::Signal(signal),
        (None, None) => UNKNOWN_EXIT,
    }
}

/// How a process ended when its status cannot be read.
const UNKNOWN_EXIT: Exit = Exit::Code(-1);

/// The standard search path tasks get when the daemon has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `argv` as a command with the minimal environment every task process
/// gets (the daemon's `PATH`, `/` as working directory, no stdin).
fn base_command(argv: &[String], empty: &str) -> io::Result<Command> {
    let Some((program, args)) = argv.split_first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, empty));
    };
    let path = std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.into());
    let mut command = Command::new(resolve(program, &path)?);
    command
        .args(args)
        .env_clear()
        .env("PATH", &path)
        .current_dir("/")
        .stdin(Stdio::null());
    Ok(command)
}

fn spawn(launch: &Launch) -> io::Result<Child> {
    if let Some(parent) = launch.log.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    if let Some(c) = &launch.container {
        if launch.argv.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the image and the service give no command",
            ));
        }
        container::prepare(launch, c)?;
        let log = open_log(&launch.log)?;
        let mut command = container::command(launch, c);
        command.stdout(log.try_clone()?).stderr(log);
        return spawn_supervised(&mut command);
    }
    let mut command = base_command(&launch.argv, "the service has no command")?;
    let log = open_log(&launch.log)?;
    command
        .env("HOME", "/root")
        .env("HOSTNAME", &launch.hostname)
        .stdout(log.try_clone()?)
        .stderr(log);
    for kv in &launch.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        command.env(k, v);
    }
    spawn_isolated(&mut command, &isolation(launch))
}

fn open_log(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("log file {}: {e}", path.display())))
}

/// Finds `program` on `path`. `shoal` itself is this very binary when it
/// is not installed on the path, so `-- shoal whoami` works out of a build
/// directory too.
fn resolve(program: &str, path: &str) -> io::Result<PathBuf> {
    if program.contains('/') {
        return Ok(PathBuf::from(program));
    }
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(program);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    if program == "shoal" {
        return std::env::current_exe();
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("`{program}`: executable file not found in $PATH"),
    ))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Creates a task's network namespace.
pub fn create_netns(task: &TaskId) -> io::Result<PathBuf> {
    netns::create(&netns_name(task))
}

/// Removes a task's network namespace; gone already is fine.
pub fn remove_netns(task: &TaskId) {
    if let Err(e) = netns::remove(&netns_name(task)) {
        tracing::warn!("removing the namespace of task {task}: {e}");
    }
}

/// Removes what a previous run left under `dir`: the namespaces of its
/// tasks (their processes died with it). Log directories stay for
/// `service logs` until their tasks leave the state.
pub fn sweep(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if let Some(task) = name.to_str().and_then(|s| TaskId::new(s).ok())
            && netns::exists(&netns_name(&task))
        {
            tracing::info!("removing the namespace of task {task}, left by a previous run");
            remove_netns(&task);
        }
    }
}
