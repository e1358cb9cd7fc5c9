//! `shoal service create | ls | ps | inspect | scale | rm | logs`, on a
//! manager, with docker's options, columns and convergence progress.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use shoal_control::state::PublishMode;
use shoal_control::swarm::{
    Policies, ServiceChange, ServiceOptions, ServiceView, TaskView, UpdateOptions,
};

use super::progress;
use super::table::{self, Format};
use crate::client::Daemon;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Create a service: COMMAND runs in each task's own network namespace.
    Create(Box<CreateArgs>),
    /// List services.
    Ls {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Only the service ids.
        #[arg(short, long, conflicts_with = "format")]
        quiet: bool,
    },
    /// List the tasks of services.
    Ps {
        #[command(flatten)]
        ps: super::tasks::PsArgs,
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Show services in detail (JSON).
    Inspect {
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Set the number of replicas: `scale web=5 api=2`.
    Scale {
        /// Exit at once instead of showing progress until converged.
        #[arg(short, long)]
        detach: bool,
        #[arg(required = true, value_name = "SERVICE=REPLICAS")]
        scales: Vec<String>,
    },
    /// Change a service; tasks are replaced by its rolling-update settings.
    Update(Box<UpdateArgs>),
    /// Go back to the service's previous spec.
    Rollback {
        /// Exit at once instead of showing progress until converged.
        #[arg(short, long)]
        detach: bool,
        service: String,
    },
    /// Remove services; their tasks stop.
    Rm {
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Show the output of a service's tasks, or of one task.
    Logs {
        /// Keep following new output.
        #[arg(short, long)]
        follow: bool,
        /// Only this many lines from the end of each task's log.
        #[arg(long, value_name = "N")]
        tail: Option<String>,
        /// Leave out the `name.slot.id@node |` prefix.
        #[arg(long)]
        no_task_ids: bool,
        /// A service, or one task by id, unique id prefix or NAME.SLOT.ID.
        #[arg(value_name = "SERVICE|TASK")]
        service: String,
    },
}

#[derive(clap::Args)]
struct CreateArgs {
    /// The service's name.
    #[arg(long)]
    name: String,
    /// Number of tasks (replicated mode).
    #[arg(long, value_parser = parse_replicas, allow_negative_numbers = true)]
    replicas: Option<u64>,
    /// `replicated` or `global` (one task per eligible node).
    #[arg(long, default_value = "replicated", value_parser = ["replicated", "global"])]
    mode: String,
    /// Overlay network to attach to (repeatable).
    #[arg(long = "network", value_name = "NETWORK")]
    networks: Vec<String>,
    /// Publish a port: PUBLISHED:TARGET[/udp], or
    /// published=P,target=T,mode=ingress|host,protocol=tcp|udp (repeatable).
    #[arg(short = 'p', long = "publish", value_name = "PORT")]
    publish: Vec<String>,
    /// Placement constraint, e.g. node.labels.zone==a (repeatable).
    #[arg(long = "constraint", value_name = "EXPR")]
    constraints: Vec<String>,
    /// Placement preference, spread=node.labels.KEY: tasks spread evenly
    /// over the label's values, then over the nodes of each (repeatable,
    /// highest first).
    #[arg(long = "placement-pref", value_name = "PREF")]
    placement_prefs: Vec<String>,
    /// The most tasks one node may run.
    #[arg(long, value_name = "N", default_value_t = 0)]
    max_replicas: u64,
    /// `vip` (default) or `dnsrr`.
    #[arg(long, value_parser = ["vip", "dnsrr"])]
    endpoint_mode: Option<String>,
    /// Environment variable KEY=VALUE (repeatable).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Service label KEY=VALUE (repeatable).
    #[arg(short, long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Replace the image's ENTRYPOINT (and its CMD): a command line, split
    /// as a shell would.
    #[arg(long, value_name = "CMD", value_parser = parse_entrypoint)]
    entrypoint: Option<Vec<String>>,
    /// Send the credentials `shoal login` keeps for the image's registry:
    /// the nodes pull with them.
    #[arg(long)]
    with_registry_auth: bool,
    #[command(flatten)]
    policies: PolicyArgs,
    /// Exit at once instead of showing progress until converged.
    #[arg(short, long)]
    detach: bool,
    /// IMAGE [COMMAND] [ARG...], as docker takes them; or, after `--`, a
    /// command run on the nodes themselves (no image).
    #[arg(
        required = true,
        trailing_var_arg = true,
        value_name = "IMAGE [COMMAND] [ARG...]"
    )]
    command: Vec<String>,
}

#[derive(clap::Args)]
struct UpdateArgs {
    /// Number of tasks.
    #[arg(long, value_parser = parse_replicas, allow_negative_numbers = true)]
    replicas: Option<u64>,
    /// Add or change an environment variable KEY=VALUE (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    env_add: Vec<String>,
    /// Remove an environment variable (repeatable).
    #[arg(long, value_name = "KEY")]
    env_rm: Vec<String>,
    /// Add a placement constraint (repeatable).
    #[arg(long, value_name = "EXPR")]
    constraint_add: Vec<String>,
    /// Remove a placement constraint (repeatable).
    #[arg(long, value_name = "EXPR")]
    constraint_rm: Vec<String>,
    /// Add a placement preference, spread=node.labels.KEY (repeatable).
    #[arg(long, value_name = "PREF")]
    placement_pref_add: Vec<String>,
    /// Remove a placement preference (repeatable).
    #[arg(long, value_name = "PREF")]
    placement_pref_rm: Vec<String>,
    /// Publish a port, as for create (repeatable).
    #[arg(long, value_name = "PORT")]
    publish_add: Vec<String>,
    /// Stop publishing PUBLISHED[/udp] (repeatable).
    #[arg(long, value_name = "PORT")]
    publish_rm: Vec<String>,
    /// The most tasks one node may run (0: no limit).
    #[arg(long, value_name = "N")]
    max_replicas: Option<u64>,
    #[command(flatten)]
    policies: PolicyArgs,
    /// Replace the tasks even if nothing changed (e.g. to spread them
    /// over nodes that joined since).
    #[arg(long)]
    force: bool,
    /// Roll the tasks to a new image (pinned to its digest as on create).
    #[arg(long, value_name = "IMAGE")]
    image: Option<String>,
    /// Replace the image's ENTRYPOINT; `""` goes back to the image's.
    #[arg(long, value_name = "CMD", value_parser = parse_entrypoint)]
    entrypoint: Option<Vec<String>>,
    /// Send the credentials `shoal login` keeps for the image's registry
    /// (now, for the next pulls; running tasks stay).
    #[arg(long)]
    with_registry_auth: bool,
    /// Exit at once instead of showing progress until converged.
    #[arg(short, long)]
    detach: bool,
    service: String,
    /// A new command and its arguments (after `--`).
    #[arg(allow_hyphen_values = true, last = true)]
    command: Vec<String>,
}

/// Restart, update and rollback settings, as docker names them.
#[derive(clap::Args)]
struct PolicyArgs {
    /// Restart tasks that end: any (default), on-failure or none.
    #[arg(long, value_parser = ["any", "on-failure", "none"])]
    restart_condition: Option<String>,
    /// Wait between a task's end and its replacement (default 5s).
    #[arg(long, value_name = "DURATION", value_parser = super::parse_millis)]
    restart_delay: Option<u64>,
    /// Replacements per slot before giving up (default 0: no limit).
    #[arg(long, value_name = "N")]
    restart_max_attempts: Option<u64>,
    /// The window the attempts are counted in (default: for ever).
    #[arg(long, value_name = "DURATION", value_parser = super::parse_millis)]
    restart_window: Option<u64>,
    /// Tasks updated at a time (default 1; 0: all at once).
    #[arg(long, value_name = "N")]
    update_parallelism: Option<u64>,
    /// Wait between update batches (default 0s).
    #[arg(long, value_name = "DURATION", value_parser = super::parse_millis)]
    update_delay: Option<u64>,
    /// When an updated task fails: pause (default), continue or rollback.
    #[arg(long, value_parser = ["pause", "continue", "rollback"])]
    update_failure_action: Option<String>,
    /// How long an updated task must run to count as a success (default 5s).
    #[arg(long, value_name = "DURATION", value_parser = super::parse_millis)]
    update_monitor: Option<u64>,
    /// stop-first (default) or start-first.
    #[arg(long, value_parser = ["stop-first", "start-first"])]
    update_order: Option<String>,
    /// Tasks rolled back at a time (default 1).
    #[arg(long, value_name = "N")]
    rollback_parallelism: Option<u64>,
    /// Wait between rollback batches (default 0s).
    #[arg(long, value_name = "DURATION", value_parser = super::parse_millis)]
    rollback_delay: Option<u64>,
    /// When a rolled-back task fails: pause (default) or continue.
    #[arg(long, value_parser = ["pause", "continue"])]
    rollback_failure_action: Option<String>,
    /// How long a rolled-back task must run to count (default 5s).
    #[arg(long, value_name = "DURATION", value_parser = super::parse_millis)]
    rollback_monitor: Option<u64>,
    /// stop-first (default) or start-first.
    #[arg(long, value_parser = ["stop-first", "start-first"])]
    rollback_order: Option<String>,
    /// Health check: a shell command run in each task's namespaces; exit 0
    /// is healthy. Tasks serve only once healthy; unhealthy ones are
    /// replaced.
    #[arg(long, value_name = "CMD")]
    health_cmd: Option<String>,
    /// Time between checks (default 30s).
    #[arg(long, value_name = "DURATION", value_parser = super::parse_millis)]
    health_interval: Option<u64>,
    /// The longest a check may take (default 30s).
    #[arg(long, value_name = "DURATION", value_parser = super::parse_millis)]
    health_timeout: Option<u64>,
    /// Failures in a row that make a task unhealthy (default 3).
    #[arg(long, value_name = "N")]
    health_retries: Option<u32>,
    /// Grace after a task's start during which failures do not count.
    #[arg(long, value_name = "DURATION", value_parser = super::parse_millis)]
    health_start_period: Option<u64>,
    /// Remove the health check.
    #[arg(long)]
    no_healthcheck: bool,
    /// The signal that asks a task to stop (default: the image's
    /// STOPSIGNAL, else SIGTERM).
    #[arg(long, value_name = "SIGNAL")]
    stop_signal: Option<String>,
    /// How long a task has to stop before it is killed (default 10s).
    #[arg(long, value_name = "DURATION", value_parser = super::parse_millis)]
    stop_grace_period: Option<u64>,
}

impl PolicyArgs {
    fn into_policies(self) -> Policies {
        Policies {
            restart_condition: self.restart_condition,
            restart_delay_ms: self.restart_delay,
            restart_max_attempts: self.restart_max_attempts,
            restart_window_ms: self.restart_window,
            update: UpdateOptions {
                parallelism: self.update_parallelism,
                delay_ms: self.update_delay,
                failure_action: self.update_failure_action,
                monitor_ms: self.update_monitor,
                order: self.update_order,
            },
            rollback: UpdateOptions {
                parallelism: self.rollback_parallelism,
                delay_ms: self.rollback_delay,
                failure_action: self.rollback_failure_action,
                monitor_ms: self.rollback_monitor,
                order: self.rollback_order,
            },
            health_cmd: self.health_cmd,
            health_interval_ms: self.health_interval,
            health_timeout_ms: self.health_timeout,
            health_retries: self.health_retries,
            health_start_period_ms: self.health_start_period,
            no_healthcheck: self.no_healthcheck,
            stop_signal: self.stop_signal,
            stop_grace_ms: self.stop_grace_period,
        }
    }
}

/// Replicas as docker takes them, with a clear word for negative ones.
/// `KEY=VALUE`, or `KEY` for an empty value, as docker takes labels.
pub(super) fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').unwrap_or((s, ""));
    if k.is_empty() {
        return Err(format!("`{s}` is not KEY=VALUE"));
    }
    Ok((k.to_owned(), v.to_owned()))
}

/// `--entrypoint`: a command line split as a shell would (empty: none).
fn parse_entrypoint(s: &str) -> Result<Vec<String>, String> {
    shoal_control::stack::split_command(s)
}

fn parse_replicas(s: &str) -> Result<u64, String> {
    if s.trim_start().starts_with('-') {
        return Err(format!("replicas must be 0 or more, not {s}"));
    }
    s.parse::<u64>()
        .map_err(|_| format!("`{s}` is not a number of replicas"))
}

#[derive(Serialize, Deserialize)]
struct Scale {
    replicas: u64,
}

pub fn run(daemon: &Daemon, args: Args) -> Result<()> {
    match args.command {
        Command::Create(a) => {
            let raw: Vec<String> = std::env::args().collect();
            let (image, command) = image_and_command(&raw, a.command);
            let registry_auth = match (&image, a.with_registry_auth) {
                (_, false) => None,
                (Some(image), true) => Some(super::login::credentials_for(image)?),
                (None, true) => {
                    return Err(super::usage(
                        "--with-registry-auth is for services that run an image",
                    ));
                }
            };
            let global = a.mode == "global";
            let detach = a.detach;
            let view: ServiceView = daemon.post(
                "/services",
                &ServiceOptions {
                    name: a.name,
                    replicas: a.replicas,
                    global,
                    networks: a.networks,
                    publish: a.publish,
                    endpoint_mode: a.endpoint_mode,
                    constraints: a.constraints,
                    preferences: a.placement_prefs,
                    max_replicas: a.max_replicas,
                    env: a.env,
                    image,
                    entrypoint: a.entrypoint,
                    registry_auth,
                    command,
                    policies: a.policies.into_policies(),
                    labels: a.labels.into_iter().collect(),
                },
            )?;
            println!("{}", view.id);
            if !detach {
                progress::show(daemon, view.id.as_str(), false)?;
            }
        }
        Command::Ls { format, quiet } => {
            print_services(&daemon.get::<Vec<ServiceView>>("/services")?, format, quiet)?
        }
        Command::Ps { ps, services } => {
            let paths = services
                .iter()
                .map(|key| Ok(format!("/services/{}/tasks", path_part(key)?)))
                .collect::<Result<Vec<_>>>()?;
            super::tasks::list(daemon, &ps, || {
                let mut tasks = Vec::new();
                for path in &paths {
                    tasks.extend(daemon.get::<Vec<TaskView>>(path)?);
                }
                Ok(tasks)
            })?;
        }
        Command::Inspect { services } => {
            let mut views = Vec::new();
            for key in &services {
                views.push(daemon.get::<ServiceView>(&format!("/services/{}", path_part(key)?))?);
            }
            table::json(&views)?;
        }
        Command::Scale { detach, scales } => {
            let mut parsed = Vec::new();
            for s in &scales {
                let Some((name, n)) = s.split_once('=') else {
                    return Err(super::usage(format!(
                        "invalid scale `{s}`: want SERVICE=REPLICAS, e.g. web=5"
                    )));
                };
                let replicas =
                    parse_replicas(n).map_err(|e| super::usage(format!("{name}: {e}")))?;
                parsed.push((path_part(name)?.to_owned(), replicas));
            }
            for (name, replicas) in &parsed {
                let () = daemon.post(
                    &format!("/services/{name}/scale"),
                    &Scale {
                        replicas: *replicas,
                    },
                )?;
                println!("{name} scaled to {replicas}");
            }
            if !detach {
                for (name, _) in &parsed {
                    progress::show(daemon, name, false)?;
                }
            }
        }
        Command::Update(a) => {
            let name = path_part(&a.service)?.to_owned();
            let registry_auth = if a.with_registry_auth {
                let image = match &a.image {
                    Some(image) => Some(image.clone()),
                    None => {
                        daemon
                            .get::<ServiceView>(&format!("/services/{name}"))?
                            .spec
                            .image
                    }
                };
                let Some(image) = image else {
                    bail!("{name}: --with-registry-auth is for services that run an image");
                };
                Some(super::login::credentials_for(&image)?)
            } else {
                None
            };
            let change = ServiceChange {
                replicas: a.replicas,
                command: (!a.command.is_empty()).then_some(a.command),
                image: a.image,
                entrypoint: a.entrypoint,
                registry_auth,
                env_add: a.env_add,
                env_rm: a.env_rm,
                constraint_add: a.constraint_add,
                constraint_rm: a.constraint_rm,
                preference_add: a.placement_pref_add,
                preference_rm: a.placement_pref_rm,
                publish_add: a.publish_add,
                publish_rm: a.publish_rm,
                max_replicas: a.max_replicas,
                force: a.force,
                policies: a.policies.into_policies(),
            };
            let () = daemon.post(&format!("/services/{name}/update"), &change)?;
            println!("{name}");
            if !a.detach {
                progress::show(daemon, &name, false)?;
            }
        }
        Command::Rollback { detach, service } => {
            let name = path_part(&service)?.to_owned();
            let () = daemon.post(
                &format!("/services/{name}/rollback"),
                &serde_json::json!({}),
            )?;
            println!("{name}");
            if !detach {
                progress::show(daemon, &name, true)?;
            }
        }
        Command::Rm { services } => {
            for key in &services {
                let _: String = daemon.delete(&format!("/services/{}", path_part(key)?))?;
                println!("{key}");
            }
        }
        Command::Logs {
            follow,
            tail,
            no_task_ids,
            service,
        } => super::logs::run(daemon, path_part(&service)?, follow, tail, !no_task_ids)?,
    }
    Ok(())
}

/// Splits `service create`'s words: docker's `IMAGE [COMMAND] [ARG...]`,
/// or, when they follow a `--` (`service create [OPTIONS] -- COMMAND
/// [ARG...]`), a command for the host-command executor and no image. A
/// `--` right after the image is dropped.
fn image_and_command(raw: &[String], words: Vec<String>) -> (Option<String>, Vec<String>) {
    let n = words.len();
    let host = raw.len() > n && raw[raw.len() - n..] == words[..] && raw[raw.len() - n - 1] == "--";
    if host {
        return (None, words);
    }
    let mut words = words.into_iter();
    let image = words.next();
    let mut command: Vec<String> = words.collect();
    if command.first().is_some_and(|w| w == "--") {
        command.remove(0);
    }
    (image, command)
}

/// What a service runs, as `service ls` shows it: the image without its
/// digest, as docker shows it, or `-- COMMAND` for a host command.
fn runs(spec: &shoal_control::state::ServiceSpec) -> String {
    match &spec.image {
        Some(image) => image.split('@').next().unwrap_or(image).to_owned(),
        None => format!("-- {}", spec.command.join(" ")),
    }
}

/// `service ls` and `stack services`; `quiet` lists only ids.
pub(super) fn print_services(list: &[ServiceView], format: Format, quiet: bool) -> Result<()> {
    if quiet {
        table::quiet(list.iter().map(|s| table::short_id(s.id.as_str())));
        return Ok(());
    }
    if format == Format::Json {
        return table::json(&list);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            vec![
                table::short_id(s.id.as_str()).to_owned(),
                s.name.clone(),
                s.mode.clone(),
                format!("{}/{}", s.running, s.desired),
                runs(&s.spec),
                ports(s),
            ]
        })
        .collect();
    table::print(&["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"], &rows);
    Ok(())
}

/// `*:80->80/tcp` for each published port, as docker shows them.
fn ports(s: &ServiceView) -> String {
    s.spec
        .ports
        .iter()
        .map(|p| {
            let published = p.published.map(|p| p.to_string()).unwrap_or_default();
            let host = if p.mode == PublishMode::Host {
                " (host)"
            } else {
                ""
            };
            format!("*:{published}->{}/{}{host}", p.target, p.protocol)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn path_part(key: &str) -> Result<&str> {
    super::path_part(key, "service name or id")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn create_takes_dockers_image_form_and_a_host_command_after_dashes() {
        let split = |raw: &str, positional: &str| image_and_command(&words(raw), words(positional));
        assert_eq!(
            split("shoal service create --name web nginx", "nginx"),
            (Some("nginx".into()), vec![])
        );
        assert_eq!(
            split(
                "shoal service create nginx nginx -g off",
                "nginx nginx -g off"
            ),
            (Some("nginx".into()), words("nginx -g off"))
        );
        assert_eq!(
            split(
                "shoal service create --name w -- shoal whoami --port 80",
                "shoal whoami --port 80"
            ),
            (None, words("shoal whoami --port 80"))
        );
        assert_eq!(
            split(
                "shoal service create busybox -- sh -c x",
                "busybox -- sh -c x"
            ),
            (Some("busybox".into()), words("sh -c x"))
        );
    }
}
