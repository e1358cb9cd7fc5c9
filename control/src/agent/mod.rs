//! The node agent: runs this node's tasks and feeds its data plane.
//!
//! Every node (managers too) runs one while it is a member. It follows the
//! cluster state and, each round:
//! - [`plan`] (pure) decides which tasks to start, stop, report on and
//!   clean up;
//! - a task to start gets its network namespace, then the data plane
//!   applies the node's [`tables`] (which wire that namespace), and only
//!   then the [`executor`] runs its command, so the task's interface and
//!   resolver are there before its first instruction;
//! - progress goes to the managers through a [`Reporter`], one report at
//!   a time and never backwards;
//! - finished tasks leave the tables before their namespace is removed.
//!
//! The tables follow the state at once: a task enters its service's load
//! balancer when it runs and leaves it when it stops, fails, or its node
//! is declared down, on every node.

pub mod container;
pub mod executor;
pub mod logs;
pub mod plan;
pub mod tables;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_dataplane::dns::resolv_conf;
use shoal_dataplane::tables::Tables;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use self::container::{ContainerLaunch, Runtime};
use self::executor::{Event, Executor, Launch};
use self::plan::{Exit, Local};
use crate::ids::{NodeId, TaskId};
use crate::image::{Image, ImageConfig, ImageStore};
use crate::signal::Signal;
use crate::state::{ClusterState, ServiceMode, Task, TaskUpdate};

/// Where the agent's tables go: the node's data-plane engine.
#[async_trait::async_trait]
pub trait DataPlane: Send + Sync {
    /// Installs `tables`, or removes everything for `None`.
    async fn apply(&self, tables: Option<&Tables>) -> Result<(), String>;
}

/// Where the agent's reports go: the managers.
#[async_trait::async_trait]
pub trait Reporter: Send + Sync {
    /// Records a task's progress in the cluster state.
    async fn report(&self, task: &TaskId, update: TaskUpdate) -> Result<(), String>;
}

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// This node.
    pub node: NodeId,
    /// Where task logs live, one directory per task.
    pub dir: PathBuf,
    /// How long a task has to exit after its stop signal, unless its
    /// service says (`--stop-grace-period`); also the longest wait on the
    /// way out.
    pub stop_grace: Duration,
    /// Where image tasks' images come from.
    pub images: Arc<ImageStore>,
    /// What runs image tasks.
    pub runtime: Runtime,
}

/// Docker's default stop timeout.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);

/// How often the agent looks again without news (retries, log cleanup).
const TICK: Duration = Duration::from_secs(1);

/// How long a report is trusted to be on its way before it is sent again.
const REPORT_RETRY: Duration = Duration::from_secs(5);

/// A running agent.
pub struct Agent {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Agent {
    /// Starts following `state`.
    pub fn start(
        config: AgentConfig,
        state: watch::Receiver<Arc<ClusterState>>,
        dataplane: Arc<dyn DataPlane>,
        reporter: Arc<dyn Reporter>,
    ) -> std::io::Result<Agent> {
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(&config.dir)?;
        // The cgroup mounts first: the sweep's runtime removes the
        // leftover containers' cgroups through them.
        match shoal_dataplane::sys::mount::restore_cgroups() {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                "agent: mounted the node's {n} cgroup mounts again in the daemon's own mount \
                 namespace (its /sys had none), for image tasks"
            ),
            Err(e) => tracing::warn!("agent: image tasks may fail to start: {e}"),
        }
        executor::sweep(&config.dir);
        container::sweep(&config.dir, &config.runtime);
        let (events_tx, events) = mpsc::unbounded_channel();
        let (pulled_tx, pulled) = mpsc::unbounded_channel();
        let executor = Executor::start(events_tx)?;
        let (stop, stop_rx) = watch::channel(false);
        let (reports_tx, reports_rx) = mpsc::unbounded_channel();
        tokio::spawn(send_reports(reporter, reports_rx));
        let run = Run {
            config,
            executor,
            dataplane,
            reports: reports_tx,
            local: BTreeMap::new(),
            sent: BTreeMap::new(),
            health: BTreeMap::new(),
            unhealthy: BTreeSet::new(),
            applied: None,
            pulled: pulled_tx,
        };
        let task = tokio::spawn(run.run(state, events, pulled, stop_rx));
        Ok(Agent { stop, task })
    }

    /// Stops every task, clears the data plane and removes the tasks'
    /// namespaces.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

struct Run {
    config: AgentConfig,
    executor: Executor,
    dataplane: Arc<dyn DataPlane>,
    reports: mpsc::UnboundedSender<(TaskId, TaskUpdate)>,
    local: BTreeMap<TaskId, Local>,
    /// The last report sent per task (without its time), and when.
    sent: BTreeMap<TaskId, (TaskUpdate, Instant)>,
    /// What each running task's health check last said.
    health: BTreeMap<TaskId, executor::Health>,
    /// Tasks being stopped for failing their health check.
    unhealthy: BTreeSet<TaskId>,
    applied: Option<Tables>,
    /// Image pulls report here: the task, and its image or why not.
    pulled: mpsc::UnboundedSender<(TaskId, Result<Image, String>)>,
}

impl Run {
    async fn run(
        mut self,
        mut state: watch::Receiver<Arc<ClusterState>>,
        mut events: mpsc::UnboundedReceiver<Event>,
        mut pulled: mpsc::UnboundedReceiver<(TaskId, Result<Image, String>)>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                changed = state.changed() => if changed.is_err() { break },
                Some(event) = events.recv() => self.note(event),
                Some((task, image)) = pulled.recv() => {
                    let current = state.borrow().clone();
                    self.image_ready(&current, task, image);
                }
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            while let Ok(event) = events.try_recv() {
                self.note(event);
            }
            let current = state.borrow_and_update().clone();
            self.round(&current).await;
        }
        self.finish(events).await;
    }

    fn note(&mut self, event: Event) {
        match event {
            Event::Started(task) => {
                if let Some(l) = self.local.get_mut(&task)
                    && *l == Local::Prepared
                {
                    *l = Local::Running;
                }
            }
            Event::Exited(task, exit) => {
                // A task stopped on request may also have died by itself
                // meanwhile; on request wins only if it was asked.
                let exit = match (self.local.get(&task), exit) {
                    _ if self.unhealthy.remove(&task) => Exit::Unhealthy,
                    (Some(Local::Stopping), Exit::Code(_) | Exit::Signal(_)) => Exit::Stopped,
                    (_, exit) => exit,
                };
                self.local.insert(task, Local::Exited(exit));
            }
            Event::Health(task, health) => {
                tracing::info!("task {task}: {health:?}");
                if health == executor::Health::Unhealthy
                    && self.local.get(&task) == Some(&Local::Running)
                {
                    // Swarm stops an unhealthy task; the orchestrator
                    // replaces it.
                    self.executor.stop(task.clone());
                    self.local.insert(task.clone(), Local::Stopping);
                    self.unhealthy.insert(task.clone());
                }
                self.health.insert(task, health);
            }
        }
    }

    async fn round(&mut self, state: &ClusterState) {
        let me = self.config.node.clone();
        let mut decided = plan::plan(state, &me, &self.local);
        plan::add_health(&mut decided, state, &self.local, &self.health);

        for task in &decided.stop {
            match self.local.get(task) {
                Some(Local::Running) => {
                    self.executor.stop(task.clone());
                    self.local.insert(task.clone(), Local::Stopping);
                }
                Some(Local::Prepared) => {
                    self.local
                        .insert(task.clone(), Local::Exited(Exit::Stopped));
                }
                _ => {}
            }
        }
        let mut starting = Vec::new();
        for id in &decided.start {
            match executor::create_netns(id) {
                Ok(_) => {
                    self.local.insert(id.clone(), Local::Prepared);
                    starting.push(id.clone());
                }
                Err(e) => {
                    let why = format!("creating its network namespace: {e}");
                    self.local
                        .insert(id.clone(), Local::Exited(Exit::StartFailed(why)));
                }
            }
        }

        self.apply(state).await;

        for id in starting {
            let Some(task) = state.task(&id) else {
                continue;
            };
            // The image the task was made for; tasks from before tasks
            // recorded it run their service's.
            let spec = state.service(&task.service).map(|s| &s.spec);
            let image = task
                .image
                .clone()
                .or_else(|| spec.and_then(|s| s.image.clone()));
            if let Some(image) = image {
                // Pulled in the background with the service's credentials
                // as they are now; the task starts when its image is here
                // (`image_ready`).
                let credentials = spec.and_then(|s| s.registry_auth.clone());
                let (images, done) = (self.config.images.clone(), self.pulled.clone());
                tokio::spawn(async move {
                    let got = images
                        .pull(&image, credentials.as_ref())
                        .await
                        .map_err(|e| e.to_string());
                    let _ = done.send((id, got));
                });
                continue;
            }
            match self.launch(state, task, None) {
                Some(launch) => self.executor.run(launch),
                None => {
                    let why = "its service is gone".to_owned();
                    self.local.insert(id, Local::Exited(Exit::StartFailed(why)));
                }
            }
        }

        let now = Instant::now();
        let at_ms = crate::clock::now_ms();
        for (task, update) in decided.report {
            // The same report is sent again only once the last one had
            // time to arrive and still shows nothing in the state.
            if let Some((sent, at)) = self.sent.get(&task)
                && *sent == update
                && now.duration_since(*at) < REPORT_RETRY
            {
                continue;
            }
            self.sent.insert(task.clone(), (update.clone(), now));
            let stamped = TaskUpdate {
                at_ms: Some(at_ms),
                ..update
            };
            let _ = self.reports.send((task, stamped));
        }

        if !decided.forget.is_empty() {
            // Their endpoints left the tables applied above.
            for task in &decided.forget {
                executor::remove_netns(task);
                self.local.remove(task);
                self.sent.remove(task);
                self.health.remove(task);
            }
        }
        self.sent.retain(|t, _| state.task(t).is_some());
        self.collect_logs(state);
    }

    /// Applies this node's tables if they changed.
    async fn apply(&mut self, state: &ClusterState) {
        let local = &self.local;
        let wired = |id: &TaskId| {
            matches!(
                local.get(id),
                Some(Local::Prepared | Local::Running | Local::Stopping)
            )
            .then(|| executor::netns_name(id))
        };
        let Some(tables) = tables::tables_for(state, &self.config.node, &wired) else {
            return;
        };
        if self.applied.as_ref() == Some(&tables) {
            return;
        }
        if let Err(problems) = tables.validate() {
            let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
            tracing::error!(
                "agent: the cluster state gives invalid tables, not applied: {}",
                lines.join("; ")
            );
            return;
        }
        match self.dataplane.apply(Some(&tables)).await {
            Ok(()) => self.applied = Some(tables),
            Err(e) => tracing::error!("agent: applying the tables: {e}"),
        }
    }

    /// A task's image is here (or could not be had): it starts, unless it
    /// was stopped meanwhile.
    fn image_ready(&mut self, state: &ClusterState, id: TaskId, image: Result<Image, String>) {
        if self.local.get(&id) != Some(&Local::Prepared) {
            return;
        }
        let launch = match image {
            Ok(image) => state
                .task(&id)
                .and_then(|task| self.launch(state, task, Some(&image)))
                .ok_or_else(|| "its service is gone".to_owned()),
            Err(why) => Err(why),
        };
        match launch {
            Ok(launch) => self.executor.run(launch),
            Err(why) => {
                tracing::warn!("task {id} could not start: {why}");
                self.local.insert(id, Local::Exited(Exit::StartFailed(why)));
            }
        }
    }

    fn launch(&self, state: &ClusterState, task: &Task, image: Option<&Image>) -> Option<Launch> {
        let service = state.service(&task.service)?;
        let netns = executor::netns_name(&task.id);
        let spec = &service.spec;
        let service_health = spec
            .healthcheck
            .as_ref()
            .filter(|h| !h.command.is_empty())
            .map(|h| executor::HealthCheck {
                argv: h.command.clone(),
                interval: Duration::from_millis(h.interval_ms),
                timeout: Duration::from_millis(h.timeout_ms),
                retries: h.retries,
                start_period: Duration::from_millis(h.start_period_ms),
            });
        let mut stop = executor::StopPolicy {
            signal: crate::signal::SIGTERM,
            grace: spec
                .stop_grace_ms
                .map_or(self.config.stop_grace, Duration::from_millis),
        };
        let (argv, env, health, container) = match image {
            None => (spec.command.clone(), spec.env.clone(), service_health, None),
            Some(image) => {
                if let Some(signal) = spec
                    .stop_signal
                    .as_deref()
                    .or(image.config.stop_signal.as_deref())
                {
                    match Signal::parse(signal) {
                        Ok(s) => stop.signal = s.0,
                        Err(e) => {
                            tracing::warn!("task {}: stop signal: {e}; using SIGTERM", task.id)
                        }
                    }
                }
                let args = (!spec.command.is_empty()).then_some(&spec.command[..]);
                let env = image.config.env.iter().chain(&spec.env).cloned().collect();
                let health = service_health.or_else(|| image_health(&image.config));
                let container = ContainerLaunch {
                    image_rootfs: image.rootfs.clone(),
                    dir: self.config.dir.join(task.id.as_str()),
                    user: image.config.user.clone(),
                    working_dir: image.config.working_dir.clone(),
                    runtime: self.config.runtime.clone(),
                };
                (
                    image.config.command(spec.entrypoint.as_deref(), args),
                    env,
                    health,
                    Some(container),
                )
            }
        };
        Some(Launch {
            task: task.id.clone(),
            argv,
            env,
            hostname: task_name(state, task),
            netns: shoal_dataplane::sys::netns::path_of(&netns),
            resolv_conf: resolv_conf::path_for(&netns),
            log: executor::log_path(&self.config.dir, &task.id),
            health,
            container,
            stop,
        })
    }

    /// Removes the log directories of tasks the state no longer lists.
    fn collect_logs(&self, state: &ClusterState) {
        let Ok(entries) = std::fs::read_dir(&self.config.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|s| TaskId::new(s).ok()) else {
                continue;
            };
            if state.task(&id).is_none() && !self.local.contains_key(&id) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    /// Stops everything on the way out.
    async fn finish(mut self, mut events: mpsc::UnboundedReceiver<Event>) {
        let running = self
            .local
            .values()
            .filter(|l| matches!(l, Local::Running | Local::Stopping))
            .count();
        if running > 0 {
            tracing::info!("agent: stopping {running} tasks");
        }
        let executor = self.executor;
        let grace = self.config.stop_grace;
        let _ = tokio::task::spawn_blocking(move || executor.shutdown(grace)).await;
        while events.try_recv().is_ok() {}
        if let Err(e) = self.dataplane.apply(None).await {
            tracing::warn!("agent: clearing the data plane: {e}");
        }
        for task in self.local.keys() {
            executor::remove_netns(task);
        }
        self.local.clear();
    }
}

/// Sends reports one at a time, in order.
async fn send_reports(
    reporter: Arc<dyn Reporter>,
    mut reports: mpsc::UnboundedReceiver<(TaskId, TaskUpdate)>,
) {
    while let Some((task, update)) = reports.recv().await {
        if let Err(e) = reporter.report(&task, update).await {
            tracing::debug!("agent: reporting task {task}: {e}");
        }
    }
}

/// A task's name, as `docker service ps` shows it and its hostname is:
/// `SERVICE.SLOT` (replicated) or `SERVICE.NODE` (global), then the id.
pub fn task_name(state: &ClusterState, task: &Task) -> String {
    format!("{}.{}", short_name(state, task), task.id)
}

/// `SERVICE.SLOT` or `SERVICE.NODE`.
pub fn short_name(state: &ClusterState, task: &Task) -> String {
    let service = state
        .service(&task.service)
        .map_or_else(|| task.service.to_string(), |s| s.spec.name.clone());
    let global = state
        .service(&task.service)
        .is_some_and(|s| s.spec.mode == ServiceMode::Global);
    match (task.slot, &task.node) {
        (Some(slot), _) if !global => format!("{service}.{slot}"),
        (_, Some(node)) => format!("{service}.{node}"),
        (Some(slot), None) => format!("{service}.{slot}"),
        (None, None) => service,
    }
}

/// Docker's defaults for an image's HEALTHCHECK fields left out.
const IMAGE_HEALTH_INTERVAL: Duration = Duration::from_secs(30);
const IMAGE_HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
const IMAGE_HEALTH_RETRIES: u32 = 3;

/// The image's HEALTHCHECK as a check the executor runs: `CMD` runs its
/// arguments, `CMD-SHELL` runs them with `/bin/sh -c`, `NONE` has none.
fn image_health(config: &ImageConfig) -> Option<executor::HealthCheck> {
    let h = config.healthcheck.as_ref()?;
    let argv = match h.test.split_first() {
        Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => rest.to_vec(),
        Some((kind, rest)) if kind == "CMD-SHELL" && !rest.is_empty() => {
            vec!["/bin/sh".into(), "-c".into(), rest.join(" ")]
        }
        _ => return None,
    };
    Some(executor::HealthCheck {
        argv,
        interval: h.interval.unwrap_or(IMAGE_HEALTH_INTERVAL),
        timeout: h.timeout.unwrap_or(IMAGE_HEALTH_TIMEOUT),
        retries: h.retries.unwrap_or(IMAGE_HEALTH_RETRIES),
        start_period: h.start_period.unwrap_or_default(),
    })
}
