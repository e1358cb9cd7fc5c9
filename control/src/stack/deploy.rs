//! A service's `deploy:` into [`ServiceOptions`]: mode and replicas,
//! endpoint mode, placement, and the update, rollback and restart
//! policies, each value checked where it is written.

use super::check::{Check, Keys, index, join};
use super::service::RESOURCES;
use super::yaml::{Node, Value};
use crate::scheduler::{Constraint, parse_preference};
use crate::swarm::{Policies, ServiceOptions, UpdateOptions};

const DEPLOY: Keys = Keys {
    read: &[
        "mode",
        "replicas",
        "endpoint_mode",
        "placement",
        "update_config",
        "rollback_config",
        "restart_policy",
        "labels",
    ],
    ignored: &[],
    refused: &[("resources", RESOURCES)],
};

const PLACEMENT: Keys = Keys {
    read: &["constraints", "preferences", "max_replicas_per_node"],
    ignored: &[],
    refused: &[],
};

const PREFERENCE: Keys = Keys {
    read: &["spread"],
    ignored: &[],
    refused: &[],
};

const UPDATE: Keys = Keys {
    read: &[
        "parallelism",
        "delay",
        "failure_action",
        "monitor",
        "max_failure_ratio",
        "order",
    ],
    ignored: &[],
    refused: &[],
};

const RESTART: Keys = Keys {
    read: &["condition", "delay", "max_attempts", "window"],
    ignored: &[],
    refused: &[],
};

/// `deploy:` into `options`; the `endpoint_mode` node when it is dnsrr.
pub(super) fn deploy<'n>(
    check: &mut Check,
    node: &'n Node,
    path: &str,
    options: &mut ServiceOptions,
) -> Option<&'n Node> {
    let fields = check.fields(node, path, &DEPLOY)?;
    if let Some(v) = fields.given("mode") {
        let mode = check.choice(v, &join(path, "mode"), &["replicated", "global"]);
        options.global = mode.as_deref() == Some("global");
    }
    if let Some(v) = fields.given("replicas") {
        let p = join(path, "replicas");
        if options.global {
            check.error(
                v,
                &p,
                "replicas is for replicated services; a global service runs one task on every \
                 eligible node",
            );
        } else {
            options.replicas = check.uint(v, &p, u64::MAX);
        }
    }
    if let Some(v) = fields.given("labels") {
        options.labels = super::service::labels(check, v, &join(path, "labels"));
    }
    let mut dnsrr = None;
    if let Some(v) = fields.given("endpoint_mode") {
        options.endpoint_mode = check.choice(v, &join(path, "endpoint_mode"), &["vip", "dnsrr"]);
        if options.endpoint_mode.as_deref() == Some("dnsrr") {
            dnsrr = Some(v);
        }
    }
    if let Some(v) = fields.given("placement") {
        placement(check, v, &join(path, "placement"), options);
    }
    let policies = &mut options.policies;
    if let Some(v) = fields.given("update_config") {
        let p = join(path, "update_config");
        policies.update = update(check, v, &p, &["pause", "continue", "rollback"]);
    }
    if let Some(v) = fields.given("rollback_config") {
        let p = join(path, "rollback_config");
        policies.rollback = update(check, v, &p, &["pause", "continue"]);
    }
    if let Some(v) = fields.given("restart_policy") {
        restart(check, v, &join(path, "restart_policy"), policies);
    }
    dnsrr
}

fn placement(check: &mut Check, node: &Node, path: &str, options: &mut ServiceOptions) {
    let Some(fields) = check.fields(node, path, &PLACEMENT) else {
        return;
    };
    if let Some(v) = fields.given("constraints") {
        let p = join(path, "constraints");
        let items = check.strings(v, &p).unwrap_or_default();
        for (i, (c, item)) in items.into_iter().enumerate() {
            match Constraint::parse(&c) {
                Ok(_) => options.constraints.push(c),
                Err(e) => check.error(item, &index(&p, i), e.to_string()),
            }
        }
    }
    if let Some(v) = fields.given("preferences") {
        preferences(check, v, &join(path, "preferences"), options);
    }
    if let Some(v) = fields.given("max_replicas_per_node") {
        let p = join(path, "max_replicas_per_node");
        if options.global {
            check.error(
                v,
                &p,
                "max_replicas_per_node is for replicated services; a global service runs one \
                 task per node",
            );
        } else if let Some(m) = check.uint(v, &p, u64::MAX) {
            options.max_replicas = m;
        }
    }
}

/// `preferences: [{ spread: node.labels.zone }, ...]`, highest first.
fn preferences(check: &mut Check, node: &Node, path: &str, options: &mut ServiceOptions) {
    let expected = "a list of preferences, e.g. [{ spread: node.labels.zone }]";
    let Some(items) = check.list(node, path, expected) else {
        return;
    };
    for (i, item) in items.iter().enumerate() {
        let p = index(path, i);
        let mark = check.mark();
        let Some(fields) = check.fields(item, &p, &PREFERENCE) else {
            continue;
        };
        let Some(v) = fields.given("spread") else {
            if !check.failed_since(mark) {
                check.error(item, &p, "a preference needs `spread: node.labels.KEY`");
            }
            continue;
        };
        let p = join(&p, "spread");
        let Some(over) = check.string(v, &p) else {
            continue;
        };
        let text = format!("spread={over}");
        match parse_preference(&text) {
            Ok(_) => options.preferences.push(text),
            Err(e) => check.error(v, &p, e.problem.to_string()),
        }
    }
}

/// `update_config` or `rollback_config`.
fn update(check: &mut Check, node: &Node, path: &str, actions: &[&str]) -> UpdateOptions {
    let mut out = UpdateOptions::default();
    let Some(fields) = check.fields(node, path, &UPDATE) else {
        return out;
    };
    if let Some(v) = fields.given("parallelism") {
        out.parallelism = check.uint(v, &join(path, "parallelism"), u64::MAX);
    }
    if let Some(v) = fields.given("delay") {
        out.delay_ms = check.duration_ms(v, &join(path, "delay"));
    }
    if let Some(v) = fields.given("failure_action") {
        out.failure_action = check.choice(v, &join(path, "failure_action"), actions);
    }
    if let Some(v) = fields.given("monitor") {
        out.monitor_ms = check.duration_ms(v, &join(path, "monitor"));
    }
    if let Some(v) = fields.given("order") {
        let choices = ["stop-first", "start-first"];
        out.order = check.choice(v, &join(path, "order"), &choices);
    }
    if let Some(v) = fields.given("max_failure_ratio") {
        let p = join(path, "max_failure_ratio");
        let ratio = match v.value {
            Value::Int(i) => Some(i as f64),
            Value::Float(x) => Some(x),
            _ => {
                check.type_error(v, &p, "a number from 0 to 1");
                None
            }
        };
        match ratio {
            Some(0.0) => {}
            Some(r) if (0.0..=1.0).contains(&r) => check.warn(
                v,
                &p,
                "ignoring max_failure_ratio: shoal applies failure_action at the first failed \
                 task, as with 0",
            ),
            Some(_) => check.error(v, &p, "max_failure_ratio is a number from 0 to 1"),
            None => {}
        }
    }
    out
}

fn restart(check: &mut Check, node: &Node, path: &str, policies: &mut Policies) {
    let Some(fields) = check.fields(node, path, &RESTART) else {
        return;
    };
    if let Some(v) = fields.given("condition") {
        let choices = ["none", "on-failure", "any"];
        policies.restart_condition = check.choice(v, &join(path, "condition"), &choices);
    }
    if let Some(v) = fields.given("delay") {
        policies.restart_delay_ms = check.duration_ms(v, &join(path, "delay"));
    }
    if let Some(v) = fields.given("max_attempts") {
        policies.restart_max_attempts = check.uint(v, &join(path, "max_attempts"), u64::MAX);
    }
    if let Some(v) = fields.given("window") {
        policies.restart_window_ms = check.duration_ms(v, &join(path, "window"));
    }
}
