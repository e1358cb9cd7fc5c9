//! The whole file: the top-level keys, then what only the whole file can
//! tell: that every network a service names is declared, which networks
//! the stack uses (the implicit `default` among them), and that no two
//! ports collide.

use std::collections::BTreeMap;

use super::check::{Check, Keys, join};
use super::network::{Declared, network};
use super::service::{Parsed, service};
use super::words::cut;
use super::yaml::{Node, Value};
use super::{StackNetwork, StackPlan, StackService};
use crate::state::{Protocol, PublishMode};
use crate::swarm::NetworkOptions;

const TOP: Keys = Keys {
    read: &["version", "services", "networks"],
    ignored: &[],
    refused: &[
        (
            "volumes",
            "a task runs on the host and sees the host's files; shoal has no volumes",
        ),
        ("secrets", "shoal has no secrets yet"),
        ("configs", "shoal has no configs yet"),
    ],
};

/// The network of services that name none.
const DEFAULT: &str = "default";

/// Reads the document into a plan; the plan is complete only if `check`
/// recorded no error.
pub(super) fn document(check: &mut Check, root: &Node, stack: &str) -> StackPlan {
    let mut plan = StackPlan {
        stack: stack.to_owned(),
        networks: Vec::new(),
        services: Vec::new(),
        warnings: Vec::new(),
    };
    if root.value == Value::Null {
        check.error(
            root,
            "",
            "the file is empty; a compose file lists `services:`",
        );
        return plan;
    }
    let Some(fields) = check.fields(root, "", &TOP) else {
        return plan;
    };
    if let Some(v) = fields.given("version") {
        version(check, v);
    }
    let declared: Vec<Declared> = fields
        .given("networks")
        .and_then(|v| check.entries(v, "networks", "a map of networks"))
        .unwrap_or_default()
        .into_iter()
        .map(|(short, key, v)| network(check, stack, &short, key, v))
        .collect();
    let Some(services_node) = fields.given("services") else {
        check.error(
            root,
            "",
            "the file has no `services:`; a stack is its services",
        );
        return plan;
    };
    let entries = check
        .entries(services_node, "services", "a map of services")
        .unwrap_or_default();
    if entries.is_empty() {
        check.error(services_node, "services", "the file lists no services");
    }
    let services: Vec<Parsed> = entries
        .into_iter()
        .filter_map(|(short, key, v)| service(check, stack, &short, key, v))
        .collect();
    let mut used = vec![false; declared.len()];
    let mut implicit_default = false;
    for s in &services {
        let mut names = Vec::new();
        if s.networks.is_empty() {
            match declared.iter().position(|d| d.short == DEFAULT) {
                Some(i) => {
                    used[i] = true;
                    names.push(declared[i].options.name.clone());
                }
                None => {
                    implicit_default = true;
                    names.push(format!("{stack}_{DEFAULT}"));
                }
            }
        }
        for r in &s.networks {
            match declared.iter().position(|d| d.short == r.short) {
                Some(i) => {
                    used[i] = true;
                    names.push(declared[i].options.name.clone());
                }
                None => {
                    let message = format!(
                        "service {}: network `{}` is not declared in the top-level networks; \
                         declare it there (with `external: true` if it exists already)",
                        s.short,
                        cut(&r.short)
                    );
                    check.error(r.node, &r.path, message);
                }
            }
        }
        plan.services.push(StackService {
            short: s.short.clone(),
            options: crate::swarm::ServiceOptions {
                networks: names,
                ..s.options.clone()
            },
        });
    }
    for (d, used) in declared.into_iter().zip(used) {
        if used {
            plan.networks.push(StackNetwork {
                short: d.short,
                external: d.external,
                options: d.options,
            });
        } else {
            let message = format!(
                "network `{}` is declared but no service uses it; it is not created",
                d.short
            );
            check.warn(d.key, &join("networks", &d.short), message);
        }
    }
    if implicit_default {
        let name = format!("{stack}_{DEFAULT}");
        if let Err(why) = super::words::check_network_name(&name) {
            check.error_outside(format!(
                "the stack's default network: {why}; shorten the stack name"
            ));
        }
        plan.networks.push(StackNetwork {
            short: DEFAULT.to_owned(),
            external: false,
            options: NetworkOptions {
                name,
                ..NetworkOptions::default()
            },
        });
    }
    check_ports(check, &services);
    plan
}

/// `version`: absent, or a 3.x version.
fn version(check: &mut Check, node: &Node) {
    let Some(text) = check.scalar_text(node) else {
        check.type_error(node, "version", "a version string such as \"3.8\"");
        return;
    };
    let ok = match text.strip_prefix('3') {
        Some("") | Some(".x") => true,
        Some(minor) => minor
            .strip_prefix('.')
            .is_some_and(|m| !m.is_empty() && m.chars().all(|c| c.is_ascii_digit())),
        None => false,
    };
    if !ok {
        let message = format!(
            "compose file version `{}` is not supported: shoal stack deploy reads version 3 \
             files (`version: \"3\"` to `\"3.9\"`)",
            cut(&text)
        );
        check.error(node, "version", message);
    }
}

/// Published ports that would collide: an ingress port answers on every
/// node, so it collides with any other use of its number; a host port
/// only with itself in the same service, whose tasks may share a node.
fn check_ports(check: &mut Check, services: &[Parsed]) {
    type Key = (Protocol, u16);
    let mut ingress: BTreeMap<Key, (&str, u64)> = BTreeMap::new();
    let mut host: BTreeMap<Key, (&str, u64)> = BTreeMap::new();
    let mut host_in: BTreeMap<(Key, &str), u64> = BTreeMap::new();
    for s in services {
        let short = s.short.as_str();
        let first_ingress = s
            .ports
            .iter()
            .find(|p| p.config.mode == PublishMode::Ingress);
        if let (Some(dnsrr), Some(p)) = (s.dnsrr, first_ingress) {
            let message = format!(
                "ports published in ingress mode need endpoint_mode vip; publish port {} with \
                 `mode: host`, or use vip",
                p.config.target
            );
            let path = join(&join("services", short), "deploy.endpoint_mode");
            check.error(dnsrr, &path, message);
        }
        for p in &s.ports {
            let Some(published) = p.config.published else {
                continue;
            };
            let key = (p.config.protocol, published);
            let line = p.node.at.line();
            let taken = match p.config.mode {
                PublishMode::Ingress => ingress.get(&key).or(host.get(&key)).copied(),
                PublishMode::Host => ingress
                    .get(&key)
                    .copied()
                    .or(host_in.get(&(key, short)).map(|l| (short, *l))),
            };
            if let Some((other, other_line)) = taken {
                let message = format!(
                    "port {published}/{} is already published by service `{other}` (line \
                     {other_line})",
                    p.config.protocol
                );
                check.error(p.node, &p.path, message);
                continue;
            }
            match p.config.mode {
                PublishMode::Ingress => {
                    ingress.insert(key, (short, line));
                }
                PublishMode::Host => {
                    host.entry(key).or_insert((short, line));
                    host_in.insert((key, short), line);
                }
            }
        }
    }
}
