//! `shoal service create | ls | ps | inspect | scale | rm` and
//! `shoal node ps` on a manager: services in the replicated state, found by
//! id, id prefix or name, and their tasks as `docker service ps` shows
//! them.
//!
//! Everything a spec names is checked before anything is written (networks
//! exist, constraints parse, ports are well-formed), and the state checks
//! the rest (names, ports in use, addresses) when the one command that
//! creates or changes the service applies: nothing is ever half-created.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::SwarmError;
use super::member::Member;
use super::view::{find_by_key, find_node};
use crate::agent::short_name;
use crate::ids::{NodeId, ServiceId, TaskId};
use crate::image::RegistryCredentials;
use crate::scheduler::{Constraint, parse_preference};
use crate::signal::Signal;
use crate::state::{
    ClusterState, Command, DesiredState, EndpointMode, FailureAction, HealthCheck,
    PlacementPreference, PortConfig, Protocol, PublishMode, RestartCondition, Service, ServiceMode,
    ServiceSpec, Task, TaskState, UpdateConfig, UpdateOrder, UpdateStatus,
};

/// `shoal service create`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceOptions {
    /// Its name.
    pub name: String,
    /// Replicas; `None` with `global` false means 1.
    pub replicas: Option<u64>,
    /// One task per eligible node.
    pub global: bool,
    /// Network names or ids.
    pub networks: Vec<String>,
    /// `-p`/`--publish` values as the user wrote them.
    pub publish: Vec<String>,
    /// `vip` or `dnsrr`.
    pub endpoint_mode: Option<String>,
    /// Placement constraints.
    pub constraints: Vec<String>,
    /// `--placement-pref` values as the user wrote them
    /// (`spread=node.labels.zone`), highest first.
    pub preferences: Vec<String>,
    /// The most tasks per node; 0 for no limit.
    pub max_replicas: u64,
    /// `K=V` environment variables.
    pub env: Vec<String>,
    /// The image the tasks run (`IMAGE` of `service create IMAGE [COMMAND]
    /// [ARG...]`); `None` runs `command` on the node itself.
    #[serde(default)]
    pub image: Option<String>,
    /// `--entrypoint`: replaces the image's ENTRYPOINT (and drops its CMD).
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// `--with-registry-auth`: what the image is pulled with, as the CLI
    /// found them for its registry; `None` pulls anonymously.
    #[serde(default)]
    pub registry_auth: Option<RegistryCredentials>,
    /// The command and its arguments; with an image, the arguments that
    /// replace its CMD.
    pub command: Vec<String>,
    /// Restart, update and rollback settings.
    pub policies: Policies,
    /// `--label K=V`.
    pub labels: BTreeMap<String, String>,
}

/// `--restart-*`, `--update-*` and `--rollback-*` options; `None` leaves
/// a setting as it is (docker's default on create).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Policies {
    /// `any`, `on-failure` or `none`.
    pub restart_condition: Option<String>,
    /// Wait between a task's end and its replacement.
    pub restart_delay_ms: Option<u64>,
    /// Replacements per slot before giving up; 0 for no limit.
    pub restart_max_attempts: Option<u64>,
    /// The window the attempts are counted in; 0 for ever.
    pub restart_window_ms: Option<u64>,
    /// The update settings.
    pub update: UpdateOptions,
    /// The rollback settings.
    pub rollback: UpdateOptions,
    /// `--health-cmd`: a shell command; exit 0 is healthy.
    pub health_cmd: Option<String>,
    /// Time between checks.
    pub health_interval_ms: Option<u64>,
    /// The longest a check may take.
    pub health_timeout_ms: Option<u64>,
    /// Failures in a row that make a task unhealthy.
    pub health_retries: Option<u32>,
    /// Grace after a task's start.
    pub health_start_period_ms: Option<u64>,
    /// Remove the health check.
    pub no_healthcheck: bool,
    /// `--stop-signal`.
    pub stop_signal: Option<String>,
    /// `--stop-grace-period`.
    pub stop_grace_ms: Option<u64>,
}

/// `--update-*` or `--rollback-*` options.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct UpdateOptions {
    /// Tasks replaced at a time; 0 for all at once.
    pub parallelism: Option<u64>,
    /// Wait between batches.
    pub delay_ms: Option<u64>,
    /// `pause`, `continue` or `rollback`.
    pub failure_action: Option<String>,
    /// How long a new task must run before it counts as a success.
    pub monitor_ms: Option<u64>,
    /// `stop-first` or `start-first`.
    pub order: Option<String>,
}

impl Policies {
    /// Applies the settings given to `spec`.
    fn apply(&self, spec: &mut ServiceSpec) -> Result<(), String> {
        if let Some(c) = &self.restart_condition {
            spec.restart.condition = match c.as_str() {
                "any" => RestartCondition::Any,
                "on-failure" => RestartCondition::OnFailure,
                "none" => RestartCondition::None,
                other => {
                    return Err(format!(
                        "restart condition `{other}` is not any, on-failure or none"
                    ));
                }
            };
        }
        if let Some(v) = self.restart_delay_ms {
            spec.restart.delay_ms = v;
        }
        if let Some(v) = self.restart_max_attempts {
            spec.restart.max_attempts = v;
        }
        if let Some(v) = self.restart_window_ms {
            spec.restart.window_ms = v;
        }
        self.update.apply(&mut spec.update, "update")?;
        self.rollback.apply(&mut spec.rollback, "rollback")?;
        if let Some(s) = &self.stop_signal {
            let signal = Signal::parse(s).map_err(|e| format!("--stop-signal: {e}"))?;
            spec.stop_signal = Some(signal.name());
        }
        if let Some(ms) = self.stop_grace_ms {
            spec.stop_grace_ms = Some(ms);
        }
        self.apply_health(spec)
    }

    fn apply_health(&self, spec: &mut ServiceSpec) -> Result<(), String> {
        let tuned = self.health_interval_ms.is_some()
            || self.health_timeout_ms.is_some()
            || self.health_retries.is_some()
            || self.health_start_period_ms.is_some();
        if self.no_healthcheck {
            if self.health_cmd.is_some() || tuned {
                return Err("--no-healthcheck conflicts with the other --health-* options".into());
            }
            spec.healthcheck = None;
            return Ok(());
        }
        if let Some(cmd) = &self.health_cmd {
            if cmd.trim().is_empty() {
                return Err("--health-cmd is empty".into());
            }
            let check = spec.healthcheck.get_or_insert_with(HealthCheck::default);
            check.command = vec!["/bin/sh".into(), "-c".into(), cmd.clone()];
        }
        let Some(check) = spec.healthcheck.as_mut() else {
            if tuned {
                return Err("the --health-* options need a --health-cmd".into());
            }
            return Ok(());
        };
        if let Some(v) = self.health_interval_ms {
            if v == 0 {
                return Err("--health-interval must be more than 0".into());
            }
            check.interval_ms = v;
        }
        if let Some(v) = self.health_timeout_ms {
            if v == 0 {
                return Err("--health-timeout must be more than 0".into());
            }
            check.timeout_ms = v;
        }
        if let Some(v) = self.health_retries {
            check.retries = v.max(1);
        }
        if let Some(v) = self.health_start_period_ms {
            check.start_period_ms = v;
        }
        Ok(())
    }
}

impl UpdateOptions {
    fn apply(&self, config: &mut UpdateConfig, what: &str) -> Result<(), String> {
        if let Some(v) = self.parallelism {
            config.parallelism = v;
        }
        if let Some(v) = self.delay_ms {
            config.delay_ms = v;
        }
        if let Some(v) = self.monitor_ms {
            config.monitor_ms = v;
        }
        if let Some(a) = &self.failure_action {
            config.failure_action = match a.as_str() {
                "pause" => FailureAction::Pause,
                "continue" => FailureAction::Continue,
                "rollback" if what == "update" => FailureAction::Rollback,
                other => {
                    return Err(format!(
                        "--{what}-failure-action `{other}` is not {}",
                        if what == "update" {
                            "pause, continue or rollback"
                        } else {
                            "pause or continue"
                        }
                    ));
                }
            };
        }
        if let Some(o) = &self.order {
            config.order = match o.as_str() {
                "stop-first" => UpdateOrder::StopFirst,
                "start-first" => UpdateOrder::StartFirst,
                other => {
                    return Err(format!(
                        "--{what}-order `{other}` is not stop-first or start-first"
                    ));
                }
            };
        }
        Ok(())
    }
}

/// `shoal service update`: changes to a service's spec; empty fields
/// leave things as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceChange {
    /// New replica count.
    pub replicas: Option<u64>,
    /// New command and arguments.
    pub command: Option<Vec<String>>,
    /// New image (`--image`).
    pub image: Option<String>,
    /// New `--entrypoint`; an empty one goes back to the image's.
    pub entrypoint: Option<Vec<String>>,
    /// `--with-registry-auth`: new credentials for the image's registry;
    /// `None` keeps those the service has, as docker does.
    pub registry_auth: Option<RegistryCredentials>,
    /// `K=V` to add or change.
    pub env_add: Vec<String>,
    /// Variable names to remove.
    pub env_rm: Vec<String>,
    /// Constraints to add.
    pub constraint_add: Vec<String>,
    /// Constraints to remove.
    pub constraint_rm: Vec<String>,
    /// `--placement-pref-add`: preferences to append.
    pub preference_add: Vec<String>,
    /// `--placement-pref-rm`: preferences to remove.
    pub preference_rm: Vec<String>,
    /// Ports to publish, as for create.
    pub publish_add: Vec<String>,
    /// Published ports to remove, `PUBLISHED[/PROTO]`.
    pub publish_rm: Vec<String>,
    /// New per-node limit.
    pub max_replicas: Option<u64>,
    /// Replace the tasks even if nothing else changes.
    pub force: bool,
    /// Restart, update and rollback settings.
    pub policies: Policies,
}

impl ServiceChange {
    /// The spec `spec` becomes.
    fn apply(&self, spec: &ServiceSpec) -> Result<ServiceSpec, String> {
        let mut spec = spec.clone();
        if let Some(r) = self.replicas {
            if spec.mode == ServiceMode::Global {
                return Err("--replicas is for replicated services; this one is global".into());
            }
            spec.mode = ServiceMode::Replicated { replicas: r };
        }
        if let Some(image) = &self.image {
            if spec.image.is_none() {
                return Err(
                    "this service runs a host command, not an image; remove it and create it \
                     again with an image"
                        .into(),
                );
            }
            spec.image = Some(image.trim().to_owned());
        }
        if let Some(e) = &self.entrypoint {
            if spec.image.is_none() {
                return Err(NO_ENTRYPOINT.into());
            }
            spec.entrypoint = (!e.is_empty()).then(|| e.clone());
        }
        if let Some(c) = &self.registry_auth {
            if spec.image.is_none() {
                return Err(NO_REGISTRY.into());
            }
            spec.registry_auth = Some(c.clone());
        }
        if let Some(c) = &self.command {
            if c.is_empty() && spec.image.is_none() {
                return Err("the new command is empty".into());
            }
            spec.command = c.clone();
        }
        for name in &self.env_rm {
            spec.env
                .retain(|kv| kv.split_once('=').map_or(kv.as_str(), |(k, _)| k) != name);
        }
        for kv in &self.env_add {
            let key = kv.split_once('=').map_or(kv.as_str(), |(k, _)| k);
            if key.is_empty() {
                return Err(format!("--env-add `{kv}` is not KEY=VALUE"));
            }
            spec.env
                .retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
            spec.env.push(kv.clone());
        }
        spec.constraints.retain(|c| !self.constraint_rm.contains(c));
        for c in &self.constraint_add {
            if !spec.constraints.contains(c) {
                spec.constraints.push(c.clone());
            }
        }
        Constraint::parse_all(&spec.constraints).map_err(|e| e.to_string())?;
        // As docker: removals match on what is spread over, then additions
        // go last (so rm and add of one preference moves it to the end).
        for text in &self.preference_rm {
            let gone = parse_preference(text).map_err(|e| e.to_string())?;
            spec.preferences.retain(|p| *p != gone);
        }
        for p in parse_preferences(&self.preference_add)? {
            if !spec.preferences.contains(&p) {
                spec.preferences.push(p);
            }
        }
        for rm in &self.publish_rm {
            let (port, proto) = match rm.split_once('/') {
                Some((p, "udp")) => (p, Protocol::Udp),
                Some((p, "tcp")) | Some((p, "")) => (p, Protocol::Tcp),
                None => (rm.as_str(), Protocol::Tcp),
                Some((_, other)) => return Err(format!("protocol `{other}` is not tcp or udp")),
            };
            let port: u16 = port
                .parse()
                .map_err(|_| format!("--publish-rm `{rm}` is not a port"))?;
            let before = spec.ports.len();
            spec.ports
                .retain(|p| !(p.published == Some(port) && p.protocol == proto));
            if spec.ports.len() == before {
                return Err(format!("the service publishes no port {port}/{proto}"));
            }
        }
        for p in &self.publish_add {
            spec.ports.push(parse_publish(p)?);
        }
        if let Some(m) = self.max_replicas {
            spec.max_replicas = m;
        }
        if self.force {
            spec.force_update = spec.force_update.wrapping_add(1);
        }
        self.policies.apply(&mut spec)?;
        Ok(spec)
    }
}

/// A service as listed and inspected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceView {
    /// Its id.
    pub id: ServiceId,
    /// Its name.
    pub name: String,
    /// `replicated` or `global`.
    pub mode: String,
    /// Running tasks.
    pub running: u64,
    /// Tasks wanted.
    pub desired: u64,
    /// The spec.
    pub spec: ServiceSpec,
    /// Network names of `spec.networks`, in order.
    pub networks: Vec<String>,
    /// Its VIPs by network name.
    pub vips: BTreeMap<String, Ipv4Addr>,
    /// Its version.
    pub version: u64,
    /// The version of its tasks' spec.
    pub spec_version: u64,
    /// How its last update went.
    pub update_status: Option<UpdateStatus>,
    /// Whether `service rollback` has a spec to go back to.
    pub can_roll_back: bool,
}

/// A task as `service ps` and `node ps` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskView {
    /// Its id.
    pub id: TaskId,
    /// `SERVICE.SLOT` or `SERVICE.NODE`.
    pub name: String,
    /// Its service's id.
    pub service: ServiceId,
    /// Its slot.
    pub slot: Option<u64>,
    /// Its node's id.
    pub node_id: Option<NodeId>,
    /// Its node's hostname.
    pub node: Option<String>,
    /// What it should do.
    pub desired: DesiredState,
    /// What it does.
    pub state: TaskState,
    /// Why it failed, or why it is not placed.
    pub error: Option<String>,
    /// What its health check last said.
    pub health: Option<crate::state::TaskHealth>,
    /// Its addresses by network name.
    pub addresses: BTreeMap<String, Ipv4Addr>,
    /// The service's spec version it runs.
    pub spec_version: u64,
    /// The image it runs, pinned (`None` for a host command).
    #[serde(default)]
    pub image: Option<String>,
    /// When its state last changed, in ms since the UNIX epoch.
    pub status_ms: u64,
}

impl TaskView {
    pub(super) fn of(state: &ClusterState, t: &Task) -> TaskView {
        TaskView {
            id: t.id.clone(),
            name: short_name(state, t),
            service: t.service.clone(),
            slot: t.slot,
            node_id: t.node.clone(),
            node: t
                .node
                .as_ref()
                .and_then(|n| state.node(n))
                .map(|n| n.hostname.clone()),
            desired: t.desired,
            state: t.state,
            error: t.error.clone(),
            health: t.health,
            addresses: t
                .addresses
                .iter()
                .filter_map(|(n, a)| Some((state.network(n)?.name.clone(), *a)))
                .collect(),
            spec_version: t.spec_version,
            image: t.image.clone(),
            status_ms: t.status_ms,
        }
    }
}

impl ServiceView {
    pub(super) fn of(state: &ClusterState, s: &Service) -> ServiceView {
        let tasks = || state.tasks().values().filter(|t| t.service == s.id);
        let running = tasks()
            .filter(|t| t.desired == DesiredState::Running && t.state == TaskState::Running)
            .count() as u64;
        let desired = match s.spec.mode {
            ServiceMode::Replicated { replicas } => replicas,
            ServiceMode::Global => tasks().filter(|t| t.is_live()).count() as u64,
        };
        let name_of = |id| state.network(id).map(|n| n.name.clone());
        ServiceView {
            id: s.id.clone(),
            name: s.spec.name.clone(),
            mode: match s.spec.mode {
                ServiceMode::Replicated { .. } => "replicated".into(),
                ServiceMode::Global => "global".into(),
            },
            running,
            desired,
            spec: ServiceSpec {
                // Nodes need the password to pull; nobody needs to read it
                // back.
                registry_auth: s.spec.registry_auth.as_ref().map(|c| c.redacted()),
                ..s.spec.clone()
            },
            networks: s.spec.networks.iter().filter_map(name_of).collect(),
            vips: s
                .vips
                .iter()
                .filter_map(|(n, a)| Some((name_of(n)?, *a)))
                .collect(),
            version: s.version,
            spec_version: s.spec_version,
            update_status: s.update_status.clone(),
            can_roll_back: s.previous_spec.is_some(),
        }
    }
}

/// Parses a `-p`/`--publish` value: `PUB:TARGET[/PROTO]`, `TARGET[/PROTO]`
/// (the state picks the published port), or the long form
/// `published=P,target=T,protocol=udp,mode=host`.
pub fn parse_publish(s: &str) -> Result<PortConfig, String> {
    let bad = |why: &str| format!("invalid publish `{s}`: {why}");
    let port = |v: &str, what: &str| -> Result<u16, String> {
        match v.parse::<u16>() {
            Ok(0) | Err(_) => Err(bad(&format!("{what} port `{v}` is not a port (1-65535)"))),
            Ok(p) => Ok(p),
        }
    };
    let protocol = |v: &str| match v {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        other => Err(bad(&format!("protocol `{other}` is not tcp or udp"))),
    };
    if s.contains('=') {
        let mut config = PortConfig {
            protocol: Protocol::Tcp,
            target: 0,
            published: None,
            mode: PublishMode::Ingress,
        };
        for field in s.split(',') {
            let (k, v) = field
                .split_once('=')
                .ok_or_else(|| bad(&format!("`{field}` is not key=value")))?;
            match k {
                "published" => config.published = Some(port(v, "published")?),
                "target" => config.target = port(v, "target")?,
                "protocol" => config.protocol = protocol(v)?,
                "mode" => {
                    config.mode = match v {
                        "ingress" => PublishMode::Ingress,
                        "host" => PublishMode::Host,
                        other => {
                            return Err(bad(&format!("mode `{other}` is not ingress or host")));
                        }
                    }
                }
                other => {
                    return Err(bad(&format!(
                        "unknown key `{other}` (published, target, protocol, mode)"
                    )));
                }
            }
        }
        if config.target == 0 {
            return Err(bad("target= is missing"));
        }
        return Ok(config);
    }
    let (ports, proto) = match s.split_once('/') {
        Some((p, proto)) => (p, protocol(proto)?),
        None => (s, Protocol::Tcp),
    };
    let (published, target) = match ports.split_once(':') {
        Some((p, t)) => (Some(port(p, "published")?), port(t, "target")?),
        None => (None, port(ports, "target")?),
    };
    Ok(PortConfig {
        protocol: proto,
        target,
        published,
        mode: PublishMode::Ingress,
    })
}

/// `--placement-pref` values, each checked; every bad one is named.
fn parse_preferences(texts: &[String]) -> Result<Vec<PlacementPreference>, String> {
    let (good, bad): (Vec<_>, Vec<_>) = texts
        .iter()
        .map(|t| parse_preference(t))
        .partition(Result::is_ok);
    if bad.is_empty() {
        return Ok(good.into_iter().filter_map(Result::ok).collect());
    }
    let errors: Vec<String> = bad
        .into_iter()
        .filter_map(Result::err)
        .map(|e| e.to_string())
        .collect();
    Err(errors.join("\n"))
}

/// A service by id, name or unique id prefix.
pub(super) fn find<'a>(state: &'a ClusterState, key: &str) -> Result<&'a Service, SwarmError> {
    find_by_key(
        state.services().values(),
        key,
        "service",
        |s| s.id.as_str(),
        |s| s.spec.name.as_str(),
    )
    .map_err(SwarmError::Refused)
}

const NO_REGISTRY: &str =
    "--with-registry-auth is for services that run an image; this one runs a host command";

const NO_ENTRYPOINT: &str = "--entrypoint replaces an image's entrypoint, and this service runs a host command: put the \
     program first in its command";

/// Checks options against the state and makes the spec.
pub(super) fn spec_of(state: &ClusterState, o: ServiceOptions) -> Result<ServiceSpec, SwarmError> {
    let refuse = |m: String| SwarmError::Refused(m);
    if o.command.is_empty() && o.image.is_none() {
        return Err(refuse(
            "a service needs an image or a command: `shoal service create [OPTIONS] IMAGE \
             [COMMAND] [ARG...]`, or `shoal service create [OPTIONS] -- COMMAND [ARG...]` to run \
             a command on the nodes themselves"
                .into(),
        ));
    }
    if let Some(image) = &o.image {
        crate::image::check_reference(image).map_err(|e| refuse(e.to_string()))?;
    } else if o.entrypoint.is_some() {
        return Err(refuse(NO_ENTRYPOINT.into()));
    } else if o.registry_auth.is_some() {
        return Err(refuse(NO_REGISTRY.into()));
    }
    let mode = match (o.global, o.replicas) {
        (true, Some(_)) => {
            return Err(refuse(
                "--replicas is for replicated services; a global service runs one task per node"
                    .into(),
            ));
        }
        (true, None) => ServiceMode::Global,
        (false, r) => ServiceMode::Replicated {
            replicas: r.unwrap_or(1),
        },
    };
    let mut networks = Vec::new();
    for key in &o.networks {
        let n = find_by_key(
            state.networks().values(),
            key,
            "network",
            |n| n.id.as_str(),
            |n| n.name.as_str(),
        )
        .map_err(refuse)?;
        networks.push(n.id.clone());
    }
    Constraint::parse_all(&o.constraints).map_err(|e| refuse(e.to_string()))?;
    let preferences = parse_preferences(&o.preferences).map_err(refuse)?;
    let ports = o
        .publish
        .iter()
        .map(|p| parse_publish(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(refuse)?;
    let endpoint_mode = match o.endpoint_mode.as_deref() {
        None | Some("vip") => EndpointMode::Vip,
        Some("dnsrr") => EndpointMode::Dnsrr,
        Some(other) => {
            return Err(refuse(format!(
                "endpoint mode `{other}` is not vip or dnsrr"
            )));
        }
    };
    for kv in &o.env {
        if kv.is_empty() || kv.starts_with('=') {
            return Err(refuse(format!("--env `{kv}` is not KEY=VALUE")));
        }
    }
    let mut spec = ServiceSpec {
        name: o.name,
        mode,
        image: o.image.map(|i| i.trim().to_owned()),
        registry_auth: o.registry_auth,
        entrypoint: o.entrypoint.filter(|e| !e.is_empty()),
        command: o.command,
        env: o.env,
        networks,
        ports,
        endpoint_mode,
        constraints: o.constraints,
        preferences,
        max_replicas: o.max_replicas,
        labels: o.labels,
        ..ServiceSpec::default()
    };
    o.policies.apply(&mut spec).map_err(refuse)?;
    Ok(spec)
}

impl Member {
    /// `service create`.
    pub(super) async fn create_service(
        &self,
        o: ServiceOptions,
    ) -> Result<ServiceView, SwarmError> {
        let state = self.read().await?;
        let mut spec = spec_of(&state, o)?;
        spec.image = self
            .pin(spec.image.take(), spec.registry_auth.as_ref())
            .await;
        let id = ServiceId::generate()?;
        self.write(Command::CreateService {
            id: id.clone(),
            spec,
        })
        .await?;
        self.service(id.as_str()).await
    }

    /// `image` pinned to the digest its registry gives it now, so that
    /// every node runs the same image; as given when the registry cannot
    /// say (each node then pulls the tag itself, as docker does, and a
    /// registry that refuses shows in the tasks' errors).
    pub(super) async fn pin(
        &self,
        image: Option<String>,
        credentials: Option<&RegistryCredentials>,
    ) -> Option<String> {
        let image = image?;
        match self.images.resolve(&image, credentials).await {
            Ok(digest) => Some(crate::image::pinned(&image, &digest)),
            Err(e) => {
                tracing::warn!(
                    "image {image} could not be pinned to a digest ({e}); each node pulls it \
                     itself"
                );
                Some(image)
            }
        }
    }

    /// `service ls`.
    pub(super) async fn services(&self) -> Result<Vec<ServiceView>, SwarmError> {
        let state = self.read().await?;
        let mut v: Vec<ServiceView> = state
            .services()
            .values()
            .map(|s| ServiceView::of(&state, s))
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    /// `service inspect`.
    pub(super) async fn service(&self, key: &str) -> Result<ServiceView, SwarmError> {
        let state = self.read().await?;
        find(&state, key).map(|s| ServiceView::of(&state, s))
    }

    /// `service ps`: the service's tasks, slot by slot, newest first.
    pub(super) async fn service_tasks(&self, key: &str) -> Result<Vec<TaskView>, SwarmError> {
        let state = self.read().await?;
        let service = find(&state, key)?;
        let mut tasks: Vec<TaskView> = state
            .tasks()
            .values()
            .filter(|t| t.service == service.id)
            .map(|t| TaskView::of(&state, t))
            .collect();
        sort_tasks(&mut tasks);
        Ok(tasks)
    }

    /// `node ps`: the tasks placed on a node.
    pub(super) async fn node_tasks(&self, key: &str) -> Result<Vec<TaskView>, SwarmError> {
        let state = self.read().await?;
        let key = if key == "self" {
            self.node_id.as_str()
        } else {
            key
        };
        let node = find_node(&state, key).map_err(SwarmError::Refused)?;
        let mut tasks: Vec<TaskView> = state
            .tasks()
            .values()
            .filter(|t| t.node.as_ref() == Some(&node.id))
            .map(|t| TaskView::of(&state, t))
            .collect();
        sort_tasks(&mut tasks);
        Ok(tasks)
    }

    /// `service scale NAME=N`.
    pub(super) async fn scale_service(&self, key: &str, replicas: u64) -> Result<(), SwarmError> {
        let state = self.read().await?;
        let service = find(&state, key)?;
        if service.spec.mode == ServiceMode::Global {
            return Err(SwarmError::Refused(format!(
                "{}: scale can only be used with replicated mode; `{}` is a global service",
                service.spec.name, service.spec.name
            )));
        }
        let mut spec = service.spec.clone();
        spec.mode = ServiceMode::Replicated { replicas };
        self.write(Command::UpdateService {
            id: service.id.clone(),
            version: service.version,
            spec,
            rollback: false,
            at_ms: crate::clock::now_ms(),
        })
        .await
        .map(drop)
    }

    /// `service update`.
    pub(super) async fn update_service(
        &self,
        key: &str,
        change: ServiceChange,
    ) -> Result<(), SwarmError> {
        let state = self.read().await?;
        let service = find(&state, key)?;
        let mut spec = change
            .apply(&service.spec)
            .map_err(|e| SwarmError::Refused(format!("{}: {e}", service.spec.name)))?;
        if let Some(image) = &change.image {
            crate::image::check_reference(image).map_err(|e| SwarmError::Refused(e.to_string()))?;
            spec.image = self
                .pin(Some(image.clone()), spec.registry_auth.as_ref())
                .await;
        }
        self.write(Command::UpdateService {
            id: service.id.clone(),
            version: service.version,
            spec,
            rollback: false,
            at_ms: crate::clock::now_ms(),
        })
        .await
        .map(drop)
    }

    /// `service rollback`: back to the spec before the last update.
    pub(super) async fn rollback_service(&self, key: &str) -> Result<(), SwarmError> {
        let state = self.read().await?;
        let service = find(&state, key)?;
        let Some(previous) = service.previous_spec.clone() else {
            return Err(SwarmError::Refused(format!(
                "service {} has no previous spec to roll back to",
                service.spec.name
            )));
        };
        self.write(Command::UpdateService {
            id: service.id.clone(),
            version: service.version,
            spec: previous,
            rollback: true,
            at_ms: crate::clock::now_ms(),
        })
        .await
        .map(drop)
    }

    /// `service rm`.
    pub(super) async fn remove_service(&self, key: &str) -> Result<ServiceId, SwarmError> {
        let state = self.read().await?;
        let id = find(&state, key)?.id.clone();
        self.write(Command::RemoveService { id: id.clone() })
            .await
            .map(|_| id)
    }
}

/// Live tasks first, then by name and newest state.
pub(super) fn sort_tasks(tasks: &mut [TaskView]) {
    tasks.sort_by(|a, b| {
        (a.desired, &a.name, a.slot)
            .cmp(&(b.desired, &b.name, b.slot))
            .then(a.state.cmp(&b.state))
            .then(a.id.cmp(&b.id))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_short_and_long_forms() {
        let p = parse_publish("8080:80").unwrap();
        assert_eq!(
            (p.published, p.target, p.protocol),
            (Some(8080), 80, Protocol::Tcp)
        );
        let p = parse_publish("53:53/udp").unwrap();
        assert_eq!(p.protocol, Protocol::Udp);
        let p = parse_publish("80").unwrap();
        assert_eq!((p.published, p.target), (None, 80));
        let p = parse_publish("published=8080,target=80,mode=host,protocol=udp").unwrap();
        assert_eq!(
            (p.published, p.target, p.mode, p.protocol),
            (Some(8080), 80, PublishMode::Host, Protocol::Udp)
        );
    }

    #[test]
    fn publish_errors_say_what_is_wrong() {
        for (bad, says) in [
            ("x:80", "published port `x`"),
            ("80:0", "target port `0`"),
            ("80:80/sctp", "protocol `sctp`"),
            ("published=80", "target= is missing"),
            ("target=80,mode=bridge", "mode `bridge`"),
            ("target=80,color=red", "unknown key `color`"),
            ("70000:80", "published port `70000`"),
        ] {
            let e = parse_publish(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn health_options_set_change_and_remove_the_check() {
        let mut spec = ServiceSpec::default();
        let tuned = Policies {
            health_interval_ms: Some(100),
            ..Policies::default()
        };
        assert!(
            tuned
                .apply(&mut spec)
                .unwrap_err()
                .contains("need a --health-cmd")
        );
        let set = Policies {
            health_cmd: Some("curl -f localhost".into()),
            health_retries: Some(2),
            ..Policies::default()
        };
        set.apply(&mut spec).unwrap();
        let check = spec.healthcheck.clone().unwrap();
        assert_eq!(check.command, ["/bin/sh", "-c", "curl -f localhost"]);
        assert_eq!((check.retries, check.interval_ms), (2, 30_000));
        tuned.apply(&mut spec).unwrap();
        assert_eq!(spec.healthcheck.as_ref().unwrap().interval_ms, 100);
        let off = Policies {
            no_healthcheck: true,
            ..Policies::default()
        };
        off.apply(&mut spec).unwrap();
        assert!(spec.healthcheck.is_none());
        let both = Policies {
            no_healthcheck: true,
            health_cmd: Some("true".into()),
            ..Policies::default()
        };
        assert!(both.apply(&mut spec).is_err());
    }

    #[test]
    fn create_options_carry_the_policies_into_the_spec() {
        let state = ClusterState::new();
        let spec = spec_of(
            &state,
            ServiceOptions {
                name: "web".into(),
                command: vec!["true".into()],
                policies: Policies {
                    restart_condition: Some("on-failure".into()),
                    health_cmd: Some("true".into()),
                    update: UpdateOptions {
                        monitor_ms: Some(1000),
                        ..UpdateOptions::default()
                    },
                    ..Policies::default()
                },
                ..ServiceOptions::default()
            },
        )
        .unwrap();
        assert_eq!(spec.restart.condition, RestartCondition::OnFailure);
        assert_eq!(spec.update.monitor_ms, 1000);
        assert!(spec.healthcheck.is_some());
    }

    #[test]
    fn placement_preferences_are_checked_on_create_and_edited_as_docker_does() {
        let state = ClusterState::new();
        let options = |prefs: &[&str]| ServiceOptions {
            name: "web".into(),
            command: vec!["true".into()],
            preferences: prefs.iter().map(|p| p.to_string()).collect(),
            ..ServiceOptions::default()
        };
        let spec = spec_of(&state, options(&["spread=node.labels.zone"])).unwrap();
        let zone = PlacementPreference::Spread("node.labels.zone".into());
        assert_eq!(spec.preferences, std::slice::from_ref(&zone));
        let err = spec_of(
            &state,
            options(&["spread=node.labels.zone", "foo", "spread="]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`foo`: not STRATEGY=ARG") && err.contains("`spread=`: nothing"),
            "{err}"
        );

        let rack = PlacementPreference::Spread("node.labels.rack".into());
        let change = |add: &[&str], rm: &[&str]| ServiceChange {
            preference_add: add.iter().map(|p| p.to_string()).collect(),
            preference_rm: rm.iter().map(|p| p.to_string()).collect(),
            ..ServiceChange::default()
        };
        let added = change(&["spread=node.labels.rack", "spread=node.labels.zone"], &[])
            .apply(&spec)
            .unwrap();
        assert_eq!(added.preferences, [zone.clone(), rack.clone()]);
        assert!(
            !added.changes_tasks(&spec),
            "preferences steer new tasks only"
        );
        let moved = change(&["spread=node.labels.zone"], &["spread=node.labels.zone"])
            .apply(&added)
            .unwrap();
        assert_eq!(moved.preferences, [rack.clone(), zone]);
        let gone = change(&[], &["spread=node.labels.zone", "spread=node.labels.none"])
            .apply(&moved)
            .unwrap();
        assert_eq!(gone.preferences, [rack]);
        for (add, rm) in [(&["spread=node.id"][..], &[][..]), (&[], &["zone"])] {
            let err = change(add, rm).apply(&spec).unwrap_err();
            assert!(err.contains("placement preference"), "{err}");
        }
    }

    fn alice(password: &str) -> RegistryCredentials {
        RegistryCredentials {
            username: "alice".into(),
            password: password.into(),
        }
    }

    #[test]
    fn credentials_reach_the_state_and_are_never_shown() {
        let mut state = ClusterState::new();
        let options = |image: Option<&str>| ServiceOptions {
            name: "web".into(),
            image: image.map(str::to_owned),
            command: vec!["true".into()],
            registry_auth: Some(alice("hunter2")),
            ..ServiceOptions::default()
        };
        let err = spec_of(&state, options(None)).unwrap_err();
        assert!(err.to_string().contains("--with-registry-auth"), "{err}");
        let spec = spec_of(&state, options(Some("198.18.0.1:5000/app:1"))).unwrap();
        assert_eq!(spec.registry_auth, Some(alice("hunter2")));
        let id = ServiceId::generate().unwrap();
        state
            .apply(Command::CreateService {
                id: id.clone(),
                spec,
            })
            .unwrap();
        let service = state.service(&id).unwrap();
        assert_eq!(service.spec.registry_auth, Some(alice("hunter2")));

        let view = ServiceView::of(&state, service);
        assert_eq!(view.spec.registry_auth, Some(alice("")));
        let shown = serde_json::to_string(&vec![view]).unwrap();
        assert!(
            shown.contains(r#""registry_auth":{"username":"alice"}"#),
            "{shown}"
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!format!("{service:?}").contains("hunter2"));
    }

    #[test]
    fn an_update_refreshes_credentials_only_when_given() {
        let spec = ServiceSpec {
            image: Some("app:1".into()),
            registry_auth: Some(alice("old")),
            ..ServiceSpec::default()
        };
        let kept = ServiceChange {
            replicas: Some(3),
            ..ServiceChange::default()
        };
        assert_eq!(kept.apply(&spec).unwrap().registry_auth, Some(alice("old")));
        let refreshed = ServiceChange {
            registry_auth: Some(alice("new")),
            ..ServiceChange::default()
        };
        let new = refreshed.apply(&spec).unwrap();
        assert_eq!(new.registry_auth, Some(alice("new")));
        assert!(!new.changes_tasks(&spec));
        let host = ServiceSpec {
            command: vec!["true".into()],
            ..ServiceSpec::default()
        };
        assert!(refreshed.apply(&host).unwrap_err().contains("host command"));
    }
}
