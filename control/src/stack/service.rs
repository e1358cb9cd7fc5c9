//! One entry of `services:` into [`ServiceOptions`], filled as the `service
//! create` flags would fill them: the command (`entrypoint` then
//! `command`), environment and ports here, `deploy` and `healthcheck` in
//! their own modules. The networks it names are returned as written; the
//! document resolves them.

use std::collections::BTreeMap;

use super::check::{Check, Fields, Keys, index, join};
use super::deploy::deploy;
use super::health::healthcheck;
use super::ports::{Port, ports};
use super::words::{self, cut};
use super::yaml::{Node, Value};
use crate::signal::Signal;
use crate::swarm::ServiceOptions;

const SERVICE: Keys = Keys {
    read: &[
        "command",
        "entrypoint",
        "deploy",
        "environment",
        "healthcheck",
        "image",
        "networks",
        "ports",
        "stop_grace_period",
        "stop_signal",
    ],
    // What docker stack deploy ignores too, and labels.
    ignored: &[
        "build",
        "cgroup_parent",
        "cgroupns_mode",
        "container_name",
        "depends_on",
        "devices",
        "domainname",
        "expose",
        "external_links",
        "ipc",
        "labels",
        "links",
        "mac_address",
        "network_mode",
        "pid",
        "privileged",
        "restart",
        "security_opt",
        "shm_size",
        "userns_mode",
    ],
    refused: &[
        ("cap_add", CAPS),
        ("cap_drop", CAPS),
        ("configs", "shoal has no configs yet"),
        ("cpu_quota", RESOURCES),
        ("cpu_shares", RESOURCES),
        ("cpuset", RESOURCES),
        ("credential_spec", "it is for Windows containers"),
        (
            "dns",
            "tasks resolve through shoal's embedded DNS, which forwards to the node's resolvers",
        ),
        (
            "dns_search",
            "tasks resolve through shoal's embedded DNS, which forwards to the node's resolvers",
        ),
        (
            "env_file",
            "shoal reads no file but the compose file; list the variables under `environment`",
        ),
        ("extends", "docker stack deploy refuses it too"),
        ("extra_hosts", "shoal does not change a task's /etc/hosts"),
        (
            "hostname",
            "a task's hostname is its task name, such as `web_api.1`",
        ),
        (
            "init",
            "shoal runs the command itself, without an init process",
        ),
        ("isolation", "it is for Windows containers"),
        (
            "logging",
            "shoal keeps a task's output itself (`shoal service logs`) and has no log drivers",
        ),
        ("mem_limit", RESOURCES),
        ("memswap_limit", RESOURCES),
        ("read_only", FILES),
        ("secrets", "shoal has no secrets yet"),
        ("stdin_open", "tasks have no standard input or terminal"),
        ("sysctls", "shoal does not set a task's sysctls"),
        ("tmpfs", FILES),
        ("tty", "tasks have no standard input or terminal"),
        ("ulimits", "shoal does not set a task's resource limits"),
        (
            "user",
            "image tasks run as the image's user, host commands as the daemon's",
        ),
        ("volume_driver", FILES),
        ("volumes", FILES),
        ("volumes_from", FILES),
        (
            "working_dir",
            "a task starts in its image's working directory (`/` for a host command); change \
             directory in the command (`sh -c 'cd /srv && ...'`)",
        ),
    ],
};

const CAPS: &str = "tasks run with the daemon's capabilities";
const FILES: &str =
    "shoal has no volumes yet: a host command sees the node's files, an image task its image's";
pub(super) const RESOURCES: &str = "shoal does not limit CPU or memory yet";

const NETWORK_ENTRY: Keys = Keys {
    read: &[],
    ignored: &["aliases"],
    refused: &[
        ("ipv4_address", "shoal assigns task addresses itself"),
        ("ipv6_address", "shoal assigns task addresses itself"),
    ],
};

/// A service as read, before its networks are resolved.
pub(super) struct Parsed<'n> {
    pub short: String,
    /// Everything but `networks`.
    pub options: ServiceOptions,
    /// The networks it names; empty for the default network.
    pub networks: Vec<NetworkRef<'n>>,
    pub ports: Vec<Port<'n>>,
    /// `deploy.endpoint_mode` when it is `dnsrr`.
    pub dnsrr: Option<&'n Node>,
}

/// A network a service names.
pub(super) struct NetworkRef<'n> {
    pub short: String,
    pub node: &'n Node,
    pub path: String,
}

/// Reads service `short` of `stack` (its key node `key`, its value
/// `node`); `None` when it is not a map. A service with errors is still
/// returned, so that the document checks its networks and ports too; the
/// errors keep it out of any plan.
pub(super) fn service<'n>(
    check: &mut Check,
    stack: &str,
    short: &str,
    key: &'n Node,
    node: &'n Node,
) -> Option<Parsed<'n>> {
    let path = join("services", short);
    let name = format!("{stack}_{short}");
    if let Err(why) = words::check_service_name(short, &name) {
        check.error(key, &path, why);
    }
    let fields = check.fields(node, &path, &SERVICE)?;
    let program = program(check, &fields, key, &path);
    let env = fields
        .given("environment")
        .map(|v| environment(check, v, &join(&path, "environment")))
        .unwrap_or_default();
    let ports = fields
        .given("ports")
        .map(|v| ports(check, v, &join(&path, "ports")))
        .unwrap_or_default();
    let networks = fields
        .given("networks")
        .map(|v| networks(check, v, &join(&path, "networks")))
        .unwrap_or_default();
    let mut options = ServiceOptions {
        name,
        env,
        image: program.image,
        entrypoint: program.entrypoint,
        command: program.command,
        publish: ports.iter().map(|p| p.publish.clone()).collect(),
        ..ServiceOptions::default()
    };
    let mut dnsrr = None;
    if let Some(v) = fields.given("deploy") {
        dnsrr = deploy(check, v, &join(&path, "deploy"), &mut options);
    }
    if let Some(v) = fields.given("healthcheck") {
        healthcheck(check, v, &join(&path, "healthcheck"), &mut options.policies);
    }
    if let Some(v) = fields.given("stop_signal") {
        let at = join(&path, "stop_signal");
        if let Some(text) = check.string(v, &at) {
            match Signal::parse(&text) {
                Ok(signal) => options.policies.stop_signal = Some(signal.name()),
                Err(why) => check.error(v, &at, why),
            }
        }
    }
    if let Some(v) = fields.given("stop_grace_period") {
        options.policies.stop_grace_ms = check.duration_ms(v, &join(&path, "stop_grace_period"));
    }
    Some(Parsed {
        short: short.to_owned(),
        options,
        networks,
        ports,
        dnsrr,
    })
}

/// What a service runs.
struct Program {
    image: Option<String>,
    entrypoint: Option<Vec<String>>,
    command: Vec<String>,
}

/// `image` with `entrypoint` and `command` overriding the image's as
/// docker does (`entrypoint` replaces its ENTRYPOINT and drops its CMD,
/// `command` replaces its CMD); without an image, `entrypoint` then
/// `command` run on the node itself.
fn program(check: &mut Check, fields: &Fields, key: &Node, path: &str) -> Program {
    let mut parts = [None, None];
    let mark = check.mark();
    for (i, part) in ["entrypoint", "command"].into_iter().enumerate() {
        if let Some(v) = fields.given(part) {
            parts[i] = command_words(check, v, &join(path, part));
        }
    }
    let [entrypoint, command] = parts;
    if let Some(at) = fields.given("image") {
        let at_path = join(path, "image");
        let image = check
            .string(at, &at_path)
            .filter(|image| match crate::image::check_reference(image) {
                Ok(()) => true,
                Err(e) => {
                    check.error(at, &at_path, e.to_string());
                    false
                }
            });
        return Program {
            image,
            // An empty entrypoint keeps the image's, as docker's does.
            entrypoint: entrypoint.filter(|e| !e.is_empty()),
            command: command.unwrap_or_default(),
        };
    }
    let words: Vec<String> = entrypoint.into_iter().chain(command).flatten().collect();
    if words.is_empty() && !check.failed_since(mark) {
        let given = ["command", "entrypoint"]
            .into_iter()
            .find_map(|k| fields.given(k).map(|v| (k, v)));
        match given {
            Some((part, at)) => check.error(at, &join(path, part), "the command is empty"),
            None => check.error(
                key,
                path,
                "the service needs an `image:` or a `command:` (a string or a list, run on the \
                 node itself, in the task's own namespaces)",
            ),
        }
    }
    Program {
        image: None,
        entrypoint: None,
        command: words,
    }
}

/// A command as a string (split as a shell would) or a list.
fn command_words(check: &mut Check, node: &Node, path: &str) -> Option<Vec<String>> {
    match &node.value {
        Value::Str(_) => {
            let line = check.string(node, path)?;
            match words::split_command(&line) {
                Ok(w) => Some(w),
                Err(why) => {
                    check.error(node, path, format!("cannot split the command: {why}"));
                    None
                }
            }
        }
        Value::Seq(items) => {
            let mut out = Vec::new();
            let mark = check.mark();
            for (i, item) in items.iter().enumerate() {
                if let Some(w) = check.text(item, &index(path, i), "a string") {
                    out.push(w);
                }
            }
            (!check.failed_since(mark)).then_some(out)
        }
        _ => {
            check.type_error(node, path, "a string or a list of strings");
            None
        }
    }
}

/// `environment:` as a list of `K=V` or a map; `K=V` strings out.
fn environment(check: &mut Check, node: &Node, path: &str) -> Vec<String> {
    key_values(check, node, path, false)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

/// `labels:` (of `deploy:` or a network) as a list of `K=V` or `K`, or a
/// map.
pub(super) fn labels(check: &mut Check, node: &Node, path: &str) -> BTreeMap<String, String> {
    key_values(check, node, path, true).into_iter().collect()
}

/// A list of `K=V` (and `K` alone when `bare` is allowed, for an empty
/// value) or a map of scalars; each key once.
fn key_values(check: &mut Check, node: &Node, path: &str, bare: bool) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    match &node.value {
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let p = index(path, i);
                let Some(kv) = check.string(item, &p) else {
                    continue;
                };
                let split = kv.split_once('=').or(bare.then_some((kv.as_str(), "")));
                let Some((k, v)) = split else {
                    let message = format!(
                        "`{}` has no value: docker would take it from the client's environment, \
                         which shoal does not see; write `{}=VALUE`",
                        cut(&kv),
                        cut(&kv)
                    );
                    check.error(item, &p, message);
                    continue;
                };
                if k.is_empty() {
                    check.error(item, &p, format!("`{}` has no name before `=`", cut(&kv)));
                } else if env.iter().any(|(e, _)| e == k) {
                    check.error(item, &p, format!("`{}` is set twice", cut(k)));
                } else {
                    env.push((k.to_owned(), v.to_owned()));
                }
            }
        }
        _ => {
            let Some(entries) = check.entries(node, path, "a list of K=V or a map") else {
                return Vec::new();
            };
            for (k, key, v) in entries {
                let p = join(path, &k);
                if k.is_empty() || k.contains('=') {
                    check.error(key, &p, format!("`{}` is not a variable name", cut(&k)));
                    continue;
                }
                let value = match v.value {
                    Value::Null => Some(String::new()),
                    _ => check.text(v, &p, "a string, number or boolean"),
                };
                if let Some(value) = value {
                    env.push((k, value));
                }
            }
        }
    }
    env
}

/// `networks:` as a list of names or a map of name to options.
fn networks<'n>(check: &mut Check, node: &'n Node, path: &str) -> Vec<NetworkRef<'n>> {
    let mut out: Vec<NetworkRef<'n>> = Vec::new();
    match &node.value {
        Value::Seq(_) => {
            for (i, (short, item)) in check
                .strings(node, path)
                .unwrap_or_default()
                .into_iter()
                .enumerate()
            {
                let p = index(path, i);
                if out.iter().any(|r| r.short == short) {
                    check.error(
                        item,
                        &p,
                        format!("network `{}` is listed twice", cut(&short)),
                    );
                    continue;
                }
                out.push(NetworkRef {
                    short,
                    node: item,
                    path: p,
                });
            }
        }
        _ => {
            for (short, key, v) in check
                .entries(node, path, "a list or map of network names")
                .unwrap_or_default()
            {
                let p = join(path, &short);
                check.fields(v, &p, &NETWORK_ENTRY);
                out.push(NetworkRef {
                    short,
                    node: key,
                    path: p,
                });
            }
        }
    }
    out
}
