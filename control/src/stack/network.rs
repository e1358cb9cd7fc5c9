//! One entry of the top-level `networks:` into [`NetworkOptions`]: an
//! overlay network the stack creates (`driver`, `attachable`, one
//! `ipam.config` subnet, `driver_opts`), or an `external` one that must
//! already exist.

use ipnet::Ipv4Net;

use super::check::{Check, Keys, index, join};
use super::words::{self, cut};
use super::yaml::{Node, Value};
use crate::state::ipam::MAX_PREFIX_LEN;
use crate::swarm::NetworkOptions;

const NETWORK: Keys = Keys {
    read: &[
        "external",
        "name",
        "driver",
        "attachable",
        "ipam",
        "driver_opts",
        "labels",
    ],
    ignored: &[],
    refused: &[(
        "internal",
        "shoal has no internal networks; every overlay network can reach the outside through \
         its node",
    )],
};

const EXTERNAL: Keys = Keys {
    read: &["name"],
    ignored: &[],
    refused: &[],
};

const IPAM: Keys = Keys {
    read: &["driver", "config"],
    ignored: &[],
    refused: &[],
};

const IPAM_CONFIG: Keys = Keys {
    read: &["subnet"],
    ignored: &[],
    refused: &[],
};

/// Keys an external network cannot have: the stack does not create it.
const NOT_FOR_EXTERNAL: [&str; 5] = ["driver", "attachable", "ipam", "driver_opts", "labels"];

/// A declared network.
pub(super) struct Declared<'n> {
    pub short: String,
    pub key: &'n Node,
    pub external: bool,
    pub options: NetworkOptions,
}

/// Reads network `short` (its key node `key`, its value `node`). A
/// network with errors is still declared, so that services naming it
/// are not also told it is missing; the errors keep it out of any plan.
pub(super) fn network<'n>(
    check: &mut Check,
    stack: &str,
    short: &str,
    key: &'n Node,
    node: &'n Node,
) -> Declared<'n> {
    let declared = Declared {
        short: short.to_owned(),
        key,
        external: false,
        options: NetworkOptions::default(),
    };
    let path = join("networks", short);
    if let Err(why) = words::check_network_name(short) {
        check.error(key, &path, why);
    }
    let Some(fields) = check.fields(node, &path, &NETWORK) else {
        return declared;
    };
    let mut external = false;
    let mut external_name = None;
    if let Some(v) = fields.given("external") {
        let p = join(&path, "external");
        if let Value::Map(_) = v.value {
            // Compose 3.0-3.3: `external: { name: N }`.
            external = true;
            external_name = check
                .fields(v, &p, &EXTERNAL)
                .and_then(|inner| inner.given("name"))
                .and_then(|n| check.string(n, &join(&p, "name")));
        } else {
            external = check.bool(v, &p).unwrap_or(false);
        }
    }
    let mut name = None;
    if let Some(v) = fields.given("name") {
        let p = join(&path, "name");
        if external_name.is_some() {
            check.error(
                v,
                &p,
                "the name is given twice: here and in `external.name`",
            );
        } else if let Some(n) = check.string(v, &p) {
            match words::check_network_name(&n) {
                Ok(()) => name = Some(n),
                Err(why) => check.error(v, &p, why),
            }
        }
    }
    let name = name.or(external_name);
    if external {
        for key in NOT_FOR_EXTERNAL {
            if let Some(v) = fields.given(key) {
                let message = format!(
                    "an external network is made outside the stack, so the stack cannot set \
                     its `{key}`; drop `{key}`, or `external`"
                );
                check.error(v, &join(&path, key), message);
            }
        }
        return Declared {
            external,
            options: NetworkOptions {
                name: name.unwrap_or_else(|| short.to_owned()),
                ..NetworkOptions::default()
            },
            ..declared
        };
    }
    let driver = fields.given("driver").and_then(|v| {
        let p = join(&path, "driver");
        let d = check.string(v, &p)?;
        if d == "overlay" {
            return Some(d);
        }
        let message = format!(
            "network driver `{}` is not available; shoal makes `overlay` networks",
            cut(&d)
        );
        check.error(v, &p, message);
        None
    });
    let attachable = fields
        .given("attachable")
        .and_then(|v| check.bool(v, &join(&path, "attachable")))
        .unwrap_or(false);
    let subnet = fields
        .given("ipam")
        .and_then(|v| ipam(check, v, &join(&path, "ipam")));
    let options = fields
        .given("driver_opts")
        .map(|v| driver_opts(check, v, &join(&path, "driver_opts")))
        .unwrap_or_default();
    let labels = fields
        .given("labels")
        .map(|v| super::service::labels(check, v, &join(&path, "labels")))
        .unwrap_or_default();
    let full = name.unwrap_or_else(|| format!("{stack}_{short}"));
    if words::check_network_name(short).is_ok()
        && let Err(why) = words::check_network_name(&full)
    {
        check.error(
            key,
            &path,
            format!("{why} (the stack's name and the network's, joined)"),
        );
    }
    Declared {
        options: NetworkOptions {
            name: full,
            driver,
            subnet,
            attachable,
            options,
            labels,
        },
        ..declared
    }
}

/// `ipam: { driver: default, config: [ { subnet: CIDR } ] }`.
fn ipam(check: &mut Check, node: &Node, path: &str) -> Option<Ipv4Net> {
    let fields = check.fields(node, path, &IPAM)?;
    if let Some(v) = fields.given("driver") {
        check.choice(v, &join(path, "driver"), &["default"]);
    }
    let config_path = join(path, "config");
    let configs = check.list(fields.given("config")?, &config_path, "a list of subnets")?;
    if let Some(extra) = configs.get(1) {
        let message = "shoal gives a network one subnet; list one `subnet`";
        check.error(extra, &index(&config_path, 1), message);
        return None;
    }
    let path = index(&config_path, 0);
    let config = check.fields(configs.first()?, &path, &IPAM_CONFIG)?;
    let v = config.given("subnet")?;
    let path = join(&path, "subnet");
    let text = check.string(v, &path)?;
    let subnet = match text.parse::<Ipv4Net>() {
        Ok(s) => s,
        Err(_) => {
            let message = format!("`{}` is not an IPv4 subnet such as 10.0.9.0/24", cut(&text));
            check.error(v, &path, message);
            return None;
        }
    };
    if subnet.trunc() != subnet {
        let message = format!(
            "subnet `{subnet}` has host bits set; did you mean `{}`?",
            subnet.trunc()
        );
        check.error(v, &path, message);
        return None;
    }
    if subnet.prefix_len() > MAX_PREFIX_LEN {
        let message =
            format!("subnet `{subnet}` is too small; the longest prefix is /{MAX_PREFIX_LEN}");
        check.error(v, &path, message);
        return None;
    }
    Some(subnet)
}

/// `driver_opts:` into `--opt` values. `network create` knows only
/// `encrypted`; other options are refused here, where they can be located.
fn driver_opts(check: &mut Check, node: &Node, path: &str) -> Vec<String> {
    let Some(entries) = check.entries(node, path, "a map of driver options") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, k, v) in entries {
        let p = join(path, &key);
        if key != "encrypted" {
            let message = format!(
                "driver option `{}` is unknown; the only option is `encrypted`",
                cut(&key)
            );
            check.error(k, &p, message);
            continue;
        }
        let value = match v.value {
            Value::Null => Some(String::new()),
            _ => check.text(v, &p, "a string"),
        };
        match value.as_deref() {
            Some("" | "true") => out.push("encrypted".to_owned()),
            Some("false") => {}
            Some(other) => {
                let message = format!("`{}` is not true or false", cut(other));
                check.error(v, &p, message);
            }
            None => {}
        }
    }
    out
}
