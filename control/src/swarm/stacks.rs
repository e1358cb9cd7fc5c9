//! `shoal stack deploy | ls | ps | services | rm` on a manager.
//!
//! A stack is the services and networks labelled
//! `com.docker.stack.namespace=NAME`, as Docker labels them. A deploy
//! checks the whole plan against a copy of the state, command by command,
//! and then writes every change in one [`Command::Batch`]: it lands
//! entirely or not at all. A redeploy creates what is new and updates
//! only the services whose spec changed; what the file no longer names
//! stays unless the deploy prunes.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::SwarmError;
use super::member::Member;
use super::services::{ServiceView, TaskView, sort_tasks};
use super::{networks, services};
use crate::ids::ServiceId;
use crate::stack::StackPlan;
use crate::state::{ClusterState, Command, PortConfig, ServiceSpec};

/// The label that says which stack a service or network belongs to.
pub const STACK_LABEL: &str = "com.docker.stack.namespace";

/// How long `stack rm` waits for a stack's tasks to stop before it
/// removes the stack's networks.
const NETWORK_WAIT: Duration = Duration::from_secs(60);

/// `shoal stack deploy`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StackDeploy {
    /// What the compose file asks for.
    pub plan: StackPlan,
    /// Remove the stack's services the file no longer names.
    #[serde(default)]
    pub prune: bool,
}

/// What a deploy or a removal did, one line per change, in Docker's words
/// (`Creating service web_api`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackReport {
    /// The changes, in order.
    pub steps: Vec<String>,
}

/// A stack as `stack ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackView {
    /// Its name.
    pub name: String,
    /// How many services it has.
    pub services: usize,
    /// How many networks it made.
    pub networks: usize,
}

/// Whether `labels` put something in stack `stack`.
fn in_stack(labels: &BTreeMap<String, String>, stack: &str) -> bool {
    labels.get(STACK_LABEL).is_some_and(|s| s == stack)
}

/// Stack names become prefixes of service and network names.
fn check_stack_name(name: &str) -> Result<(), SwarmError> {
    let ok = (1..=40).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
    ok.then_some(()).ok_or_else(|| {
        SwarmError::Refused(format!(
            "invalid stack name `{}`: use 1 to 40 letters, digits, `-` and `_`, starting with \
             a letter or digit (it prefixes the names of its services and networks)",
            name.chars().take(80).collect::<String>()
        ))
    })
}

/// `spec` with what the state holds for `existing` where `spec` leaves
/// it open, so that an unchanged file gives an unchanged spec: the
/// published ports the state picked, and the registry credentials when
/// the deploy sends none (docker keeps them too).
fn keep_picked(mut spec: ServiceSpec, existing: &ServiceSpec) -> ServiceSpec {
    if spec.registry_auth.is_none() {
        spec.registry_auth.clone_from(&existing.registry_auth);
    }
    let same = |a: &PortConfig, b: &PortConfig| {
        a.target == b.target && a.protocol == b.protocol && a.mode == b.mode
    };
    for port in spec.ports.iter_mut().filter(|p| p.published.is_none()) {
        if let Some(old) = existing.ports.iter().find(|old| same(old, port)) {
            port.published = old.published;
        }
    }
    spec
}

/// The commands a deploy writes and what they do, checked against a
/// copy of `state`.
fn deploy_commands(
    state: &ClusterState,
    deploy: StackDeploy,
    at_ms: u64,
) -> Result<(Vec<Command>, StackReport), SwarmError> {
    let StackDeploy { plan, prune } = deploy;
    let stack = plan.stack;
    check_stack_name(&stack)?;
    let refused = |m: String| SwarmError::Refused(m);
    let mut scratch = state.clone();
    let mut commands = Vec::new();
    let mut report = StackReport::default();
    let mut apply = |scratch: &mut ClusterState, cmd: Command, what: &str| {
        scratch
            .apply(cmd.clone())
            .map_err(|e| refused(format!("{what}: {e}")))?;
        commands.push(cmd);
        Ok::<_, SwarmError>(())
    };
    for n in plan.networks {
        let name = n.options.name.clone();
        match scratch.network_by_name(&name) {
            None if n.external => {
                return Err(refused(format!(
                    "network `{name}` is declared as external, but could not be found; \
                     create it first with `shoal network create {name}`"
                )));
            }
            Some(_) if n.external => {}
            Some(existing) if in_stack(&existing.labels, &stack) => {}
            Some(_) => {
                return Err(refused(format!(
                    "network `{name}` exists and is not part of stack `{stack}`"
                )));
            }
            None => {
                let mut options = n.options;
                options.labels.insert(STACK_LABEL.into(), stack.clone());
                let spec = networks::spec_of(options)
                    .map_err(|e| refused(format!("network {name}: {e}")))?;
                apply(
                    &mut scratch,
                    Command::CreateNetwork(spec),
                    &format!("network {name}"),
                )?;
                report.steps.push(format!("Creating network {name}"));
            }
        }
    }
    let mut named = Vec::new();
    for s in plan.services {
        let mut options = s.options;
        let name = options.name.clone();
        options.labels.insert(STACK_LABEL.into(), stack.clone());
        let mut spec = services::spec_of(&scratch, options)
            .map_err(|e| refused(format!("service {name}: {e}")))?;
        if s.short != name {
            spec.aliases = vec![s.short.clone()];
        }
        named.push(name.clone());
        let what = format!("service {name}");
        match scratch.service_by_name(&name) {
            None => {
                let id = ServiceId::generate()?;
                apply(&mut scratch, Command::CreateService { id, spec }, &what)?;
                report.steps.push(format!("Creating service {name}"));
            }
            Some(existing) if !in_stack(&existing.spec.labels, &stack) => {
                return Err(refused(format!(
                    "service `{name}` exists and is not part of stack `{stack}`"
                )));
            }
            Some(existing) => {
                let spec = keep_picked(spec, &existing.spec);
                if spec == existing.spec {
                    continue;
                }
                let id = existing.id.clone();
                let update = Command::UpdateService {
                    id: id.clone(),
                    version: existing.version,
                    spec,
                    rollback: false,
                    at_ms,
                };
                apply(&mut scratch, update, &what)?;
                report
                    .steps
                    .push(format!("Updating service {name} (id: {id})"));
            }
        }
    }
    if prune {
        let gone: Vec<(ServiceId, String)> = scratch
            .services()
            .values()
            .filter(|s| in_stack(&s.spec.labels, &stack) && !named.contains(&s.spec.name))
            .map(|s| (s.id.clone(), s.spec.name.clone()))
            .collect();
        for (id, name) in gone {
            apply(
                &mut scratch,
                Command::RemoveService { id },
                &format!("service {name}"),
            )?;
            report.steps.push(format!("Removing service {name}"));
        }
    }
    Ok((commands, report))
}

impl Member {
    /// `stack deploy`: everything or nothing.
    pub(super) async fn deploy_stack(
        &self,
        deploy: StackDeploy,
    ) -> Result<StackReport, SwarmError> {
        let mut deploy = deploy;
        let state = self.read().await?;
        // Images are pinned to the digests their tags have now, as for
        // `service create`, with the service's credentials (those it has
        // already when the deploy gives none).
        for s in &mut deploy.plan.services {
            let o = &mut s.options;
            let credentials = o.registry_auth.clone().or_else(|| {
                state
                    .service_by_name(&o.name)
                    .and_then(|existing| existing.spec.registry_auth.clone())
            });
            if o.image
                .as_deref()
                .is_some_and(|i| crate::image::check_reference(i).is_ok())
            {
                o.image = self.pin(o.image.take(), credentials.as_ref()).await;
            }
        }
        let (commands, report) = deploy_commands(&state, deploy, crate::clock::now_ms())?;
        if !commands.is_empty() {
            self.write(Command::Batch(commands)).await?;
        }
        Ok(report)
    }

    /// `stack ls`.
    pub(super) async fn stacks(&self) -> Result<Vec<StackView>, SwarmError> {
        let state = self.read().await?;
        let mut stacks: BTreeMap<String, StackView> = BTreeMap::new();
        for s in state.services().values() {
            if let Some(name) = s.spec.labels.get(STACK_LABEL) {
                stack_entry(&mut stacks, name).services += 1;
            }
        }
        for n in state.networks().values() {
            if let Some(name) = n.labels.get(STACK_LABEL) {
                stack_entry(&mut stacks, name).networks += 1;
            }
        }
        Ok(stacks.into_values().collect())
    }

    /// `stack services`.
    pub(super) async fn stack_services(&self, stack: &str) -> Result<Vec<ServiceView>, SwarmError> {
        let state = self.read().await?;
        let mut v: Vec<ServiceView> = state
            .services()
            .values()
            .filter(|s| in_stack(&s.spec.labels, stack))
            .map(|s| ServiceView::of(&state, s))
            .collect();
        if v.is_empty() {
            return Err(nothing_found(stack));
        }
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    /// `stack ps`.
    pub(super) async fn stack_tasks(&self, stack: &str) -> Result<Vec<TaskView>, SwarmError> {
        let state = self.read().await?;
        let ids: Vec<&ServiceId> = state
            .services()
            .values()
            .filter(|s| in_stack(&s.spec.labels, stack))
            .map(|s| &s.id)
            .collect();
        if ids.is_empty() {
            return Err(nothing_found(stack));
        }
        let mut tasks: Vec<TaskView> = state
            .tasks()
            .values()
            .filter(|t| ids.contains(&&t.service))
            .map(|t| TaskView::of(&state, t))
            .collect();
        sort_tasks(&mut tasks);
        Ok(tasks)
    }

    /// `stack rm`: the services at once, then the stack's networks once
    /// their tasks have stopped.
    pub(super) async fn remove_stack(&self, stack: &str) -> Result<StackReport, SwarmError> {
        let state = self.read().await?;
        let mut report = StackReport::default();
        let mut services: Vec<(&String, Command)> = state
            .services()
            .values()
            .filter(|s| in_stack(&s.spec.labels, stack))
            .map(|s| (&s.spec.name, Command::RemoveService { id: s.id.clone() }))
            .collect();
        let has_networks = state
            .networks()
            .values()
            .any(|n| in_stack(&n.labels, stack));
        if services.is_empty() && !has_networks {
            return Err(nothing_found(stack));
        }
        services.sort_by(|a, b| a.0.cmp(b.0));
        report.steps.extend(
            services
                .iter()
                .map(|(name, _)| format!("Removing service {name}")),
        );
        let commands: Vec<Command> = services.into_iter().map(|(_, c)| c).collect();
        if !commands.is_empty() {
            self.write(Command::Batch(commands)).await?;
        }
        let deadline = tokio::time::Instant::now() + NETWORK_WAIT;
        loop {
            let state = self.read().await?;
            let mut left: Vec<&crate::state::Network> = state
                .networks()
                .values()
                .filter(|n| in_stack(&n.labels, stack))
                .collect();
            left.sort_by(|a, b| a.name.cmp(&b.name));
            let free: Vec<&crate::state::Network> = left
                .iter()
                .copied()
                .filter(|n| {
                    let mut scratch = ClusterState::clone(&state);
                    scratch
                        .apply(Command::RemoveNetwork { id: n.id.clone() })
                        .is_ok()
                })
                .collect();
            for n in &free {
                self.write(Command::RemoveNetwork { id: n.id.clone() })
                    .await?;
                report.steps.push(format!("Removing network {}", n.name));
            }
            if free.len() == left.len() {
                return Ok(report);
            }
            if tokio::time::Instant::now() >= deadline {
                let busy: Vec<&str> = left
                    .iter()
                    .filter(|n| !free.iter().any(|f| f.id == n.id))
                    .map(|n| n.name.as_str())
                    .collect();
                return Err(SwarmError::Refused(format!(
                    "removed the services of stack `{stack}`, but network(s) {} still have \
                     tasks that have not stopped; run `shoal stack rm {stack}` again later",
                    busy.join(", ")
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn stack_entry<'a>(stacks: &'a mut BTreeMap<String, StackView>, name: &str) -> &'a mut StackView {
    stacks.entry(name.to_string()).or_insert_with(|| StackView {
        name: name.to_string(),
        services: 0,
        networks: 0,
    })
}

fn nothing_found(stack: &str) -> SwarmError {
    SwarmError::Refused(format!("nothing found in stack: {stack}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::role::Role;
    use crate::stack::{StackNetwork, StackService};
    use crate::swarm::{NetworkOptions, ServiceOptions};
    use crate::testkit::{apply, node};

    fn base() -> ClusterState {
        let mut s = ClusterState::new();
        apply(&mut s, Command::AddNode(node("n1", Role::Manager)));
        let ext = networks::spec_of(NetworkOptions {
            name: "hellonet".into(),
            ..NetworkOptions::default()
        })
        .expect("spec");
        apply(&mut s, Command::CreateNetwork(ext));
        let ingress = networks::ingress_spec().expect("spec");
        apply(&mut s, Command::CreateNetwork(ingress));
        s
    }

    fn service(stack: &str, short: &str, replicas: u64, nets: &[&str]) -> StackService {
        StackService {
            short: short.into(),
            options: ServiceOptions {
                name: format!("{stack}_{short}"),
                replicas: Some(replicas),
                networks: nets.iter().map(|n| n.to_string()).collect(),
                command: vec!["shoal".into(), "whoami".into()],
                publish: if short == "web" {
                    vec!["80".into()]
                } else {
                    vec![]
                },
                ..ServiceOptions::default()
            },
        }
    }

    fn plan(stack: &str, api_replicas: u64) -> StackDeploy {
        StackDeploy {
            plan: StackPlan {
                stack: stack.into(),
                networks: vec![
                    StackNetwork {
                        short: "hellonet".into(),
                        external: true,
                        options: NetworkOptions {
                            name: "hellonet".into(),
                            ..NetworkOptions::default()
                        },
                    },
                    StackNetwork {
                        short: "default".into(),
                        external: false,
                        options: NetworkOptions {
                            name: format!("{stack}_default"),
                            ..NetworkOptions::default()
                        },
                    },
                ],
                services: vec![
                    service(stack, "api", api_replicas, &["hellonet"]),
                    service(stack, "web", 2, &[&format!("{stack}_default"), "hellonet"]),
                ],
                warnings: vec![],
            },
            prune: false,
        }
    }

    /// Deploys `d` onto `state` as a manager would: the batch applies.
    fn deploy(state: &mut ClusterState, d: StackDeploy) -> Vec<String> {
        let (commands, report) = deploy_commands(state, d, 1).expect("deploys");
        if !commands.is_empty() {
            apply(state, Command::Batch(commands));
        }
        report.steps
    }

    #[test]
    fn first_deploy_creates_everything_labelled_with_aliases() {
        let mut s = base();
        let steps = deploy(&mut s, plan("hello", 3));
        assert_eq!(
            steps,
            [
                "Creating network hello_default",
                "Creating service hello_api",
                "Creating service hello_web"
            ]
        );
        let api = s.service_by_name("hello_api").expect("api");
        assert_eq!(api.spec.aliases, ["api"]);
        assert!(in_stack(&api.spec.labels, "hello"));
        let net = s.network_by_name("hello_default").expect("net");
        assert!(in_stack(&net.labels, "hello"));
        assert!(!in_stack(
            &s.network_by_name("hellonet").expect("ext").labels,
            "hello"
        ));
    }

    #[test]
    fn a_stack_network_with_driver_opts_encrypted_is_made_encrypted() {
        let mut s = base();
        let mut d = plan("hello", 3);
        // What `driver_opts: { encrypted: "" }` parses to.
        d.plan.networks[1].options.options = vec!["encrypted".into()];
        deploy(&mut s, d);
        let net = s.network_by_name("hello_default").expect("net");
        assert!(net.encrypted);
        assert!(!s.network_by_name("hellonet").expect("ext").encrypted);
    }

    #[test]
    fn redeploy_updates_only_what_changed() {
        let mut s = base();
        deploy(&mut s, plan("hello", 3));
        let web_before = s.service_by_name("hello_web").expect("web").clone();
        assert!(
            deploy(&mut s, plan("hello", 3)).is_empty(),
            "nothing changed"
        );
        let steps = deploy(&mut s, plan("hello", 5));
        let api = s.service_by_name("hello_api").expect("api");
        assert_eq!(
            steps,
            [format!("Updating service hello_api (id: {})", api.id)]
        );
        assert_eq!(
            api.spec.mode,
            crate::state::ServiceMode::Replicated { replicas: 5 }
        );
        // The web service kept its picked published port and its version.
        assert_eq!(s.service_by_name("hello_web"), Some(&web_before));
    }

    #[test]
    fn a_redeploy_without_credentials_keeps_those_the_service_has() {
        let mut s = base();
        let with = |password: Option<&str>| {
            let mut d = plan("hello", 3);
            let api = &mut d.plan.services[0].options;
            api.image = Some("registry:5000/team/api:1".into());
            api.command.clear();
            api.registry_auth = password.map(|p| crate::image::RegistryCredentials {
                username: "ci".into(),
                password: p.into(),
            });
            d
        };
        let api = |s: &ClusterState| s.service_by_name("hello_api").expect("api").clone();
        let password = |s: &ClusterState| api(s).spec.registry_auth.expect("kept").password;
        deploy(&mut s, with(Some("one")));
        assert_eq!(password(&s), "one");
        assert!(deploy(&mut s, with(None)).is_empty(), "nothing changed");
        assert_eq!(password(&s), "one");
        assert_eq!(deploy(&mut s, with(Some("two"))).len(), 1);
        assert_eq!(password(&s), "two");
        assert_eq!(api(&s).spec_version, 1, "no task replaced");
    }

    #[test]
    fn prune_removes_what_the_file_no_longer_names() {
        let mut s = base();
        deploy(&mut s, plan("hello", 3));
        let mut d = plan("hello", 3);
        d.plan.services.retain(|x| x.short == "api");
        assert!(deploy(&mut s, d.clone()).is_empty());
        d.prune = true;
        assert_eq!(deploy(&mut s, d), ["Removing service hello_web"]);
        assert!(s.service_by_name("hello_web").is_none());
    }

    #[test]
    fn a_bad_plan_changes_nothing() {
        let s = base();
        let check = |d: StackDeploy, want: &str| {
            let err = deploy_commands(&s, d, 1).expect_err("refused").to_string();
            assert!(err.contains(want), "{err:?} lacks {want:?}");
        };
        let mut d = plan("hello", 3);
        d.plan.networks[0].options.name = "nonet".into();
        check(
            d,
            "network `nonet` is declared as external, but could not be found",
        );
        let mut d = plan("hello", 3);
        d.plan.services[1].options.networks.push("ghost".into());
        check(d, "service hello_web:");
        let mut d = plan("hello", 3);
        d.plan.services[1].options.publish = vec!["80:80".into(), "80:81".into()];
        check(d, "service hello_web:");
        check(plan("bad name", 3), "invalid stack name");
        // Another stack's network or a service not in the stack is not taken over.
        let mut other = s.clone();
        deploy(&mut other, plan("hello", 3));
        let mut d = plan("bye", 3);
        d.plan.networks[1].options.name = "hello_default".into();
        let err = deploy_commands(&other, d, 1)
            .expect_err("refused")
            .to_string();
        assert!(err.contains("is not part of stack `bye`"), "{err}");
    }
}
