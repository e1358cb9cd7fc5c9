//! A service's `ports:` into `--publish` values: the short form
//! (`"8000:8080"`, `"8080"`, `"53:53/udp"`, `"9000-9001:8000-8001"`, a
//! bare integer) and the long form (`target`, `published`, `protocol`,
//! `mode`). Each value is checked with [`parse_publish`], the parser
//! `service create` uses, so the managers accept what the plan holds.

use super::check::{Check, Keys, index, join};
use super::words::cut;
use super::yaml::{Node, Value};
use crate::state::PortConfig;
use crate::swarm::parse_publish;

const LONG: Keys = Keys {
    read: &["target", "published", "protocol", "mode"],
    ignored: &[],
    refused: &[],
};

/// Ranges longer than this are refused: each port is a rule on every node.
const MAX_RANGE: u32 = 1024;

/// One published port: the `--publish` value, what it parses to, and
/// where it was written.
pub(super) struct Port<'n> {
    pub publish: String,
    pub config: PortConfig,
    pub node: &'n Node,
    pub path: String,
}

/// The `ports:` list of a service.
pub(super) fn ports<'n>(check: &mut Check, node: &'n Node, path: &str) -> Vec<Port<'n>> {
    let Some(items) = check.list(node, path, "a list of ports") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = index(path, i);
        let values = match &item.value {
            Value::Int(_) => check
                .uint(item, &path, u64::from(u16::MAX))
                .and_then(|p| short(check, item, &path, &p.to_string())),
            Value::Str(_) => check
                .string(item, &path)
                .and_then(|s| short(check, item, &path, &s)),
            Value::Map(_) => long(check, item, &path).map(|v| vec![v]),
            _ => {
                check.type_error(
                    item,
                    &path,
                    "a port such as \"8080:80\" or a map with target",
                );
                None
            }
        };
        for publish in values.into_iter().flatten() {
            match parse_publish(&publish) {
                Ok(config) => out.push(Port {
                    publish,
                    config,
                    node: item,
                    path: path.clone(),
                }),
                Err(e) => check.error(item, &path, e),
            }
        }
    }
    out
}

/// `[PUBLISHED:]TARGET[/PROTOCOL]`, either side a port or a range.
fn short(check: &mut Check, node: &Node, path: &str, spec: &str) -> Option<Vec<String>> {
    match short_values(spec) {
        Ok(v) => Some(v),
        Err(why) => {
            check.error(node, path, format!("invalid port `{}`: {why}", cut(spec)));
            None
        }
    }
}

fn short_values(spec: &str) -> Result<Vec<String>, String> {
    let (ports, protocol) = match spec.rsplit_once('/') {
        Some((p, proto @ ("tcp" | "udp"))) => (p, Some(proto)),
        Some((_, other)) => {
            return Err(format!("protocol `{}` is not tcp or udp", cut(other)));
        }
        None => (spec, None),
    };
    let suffix = protocol.map_or(String::new(), |p| format!("/{p}"));
    let parts: Vec<&str> = ports.split(':').collect();
    let pairs: Vec<(Option<u16>, u16)> = match parts.as_slice() {
        [target] => range(target)?.map(|t| (None, t)).collect(),
        [published, target] => {
            let (published, target) = (range(published)?, range(target)?);
            if published.len() != target.len() {
                return Err(format!(
                    "the published range has {} ports and the target range {}; give ranges of \
                     the same length, or one port on each side",
                    published.len(),
                    target.len()
                ));
            }
            published.zip(target).map(|(p, t)| (Some(p), t)).collect()
        }
        _ => {
            return Err(
                "an address before the ports is not supported: shoal publishes a port on every \
                 node's addresses; write PUBLISHED:TARGET"
                    .into(),
            );
        }
    };
    Ok(pairs
        .into_iter()
        .map(|(p, t)| match p {
            Some(p) => format!("{p}:{t}{suffix}"),
            None => format!("{t}{suffix}"),
        })
        .collect())
}

/// `N` or `A-B`.
fn range(s: &str) -> Result<std::ops::RangeInclusive<u16>, String> {
    let port = |v: &str| match v.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("`{}` is not a port (1-65535)", cut(v))),
        Ok(p) => Ok(p),
    };
    let Some((a, b)) = s.split_once('-') else {
        let p = port(s)?;
        return Ok(p..=p);
    };
    let (a, b) = (port(a)?, port(b)?);
    if a > b {
        return Err(format!("range `{}` ends before it starts", cut(s)));
    }
    if u32::from(b - a) >= MAX_RANGE {
        return Err(format!(
            "range `{}` has {} ports; the most is {MAX_RANGE}",
            cut(s),
            u32::from(b - a) + 1
        ));
    }
    Ok(a..=b)
}

/// `{ target, published, protocol, mode }` into
/// `published=P,target=T,protocol=X,mode=M`.
fn long(check: &mut Check, node: &Node, path: &str) -> Option<String> {
    let fields = check.fields(node, path, &LONG)?;
    let mark = check.mark();
    let mut port = |key: &str| {
        let v = fields.given(key)?;
        let path = join(path, key);
        let p = match &v.value {
            Value::Str(s) => match s.parse::<u16>() {
                Ok(p) => Some(p),
                Err(_) => {
                    let message = format!("`{}` is not a port (1-65535)", cut(s));
                    check.error(v, &path, message);
                    None
                }
            },
            _ => check
                .uint(v, &path, u64::from(u16::MAX))
                .and_then(|p| u16::try_from(p).ok()),
        }?;
        if p == 0 {
            check.error(v, &path, "0 is not a port (1-65535)");
            return None;
        }
        Some(p)
    };
    let target = port("target");
    let published = port("published");
    let protocol = fields
        .given("protocol")
        .and_then(|v| check.choice(v, &join(path, "protocol"), &["tcp", "udp"]));
    let mode = fields
        .given("mode")
        .and_then(|v| check.choice(v, &join(path, "mode"), &["ingress", "host"]));
    if fields.given("target").is_none() {
        check.error(
            node,
            path,
            "a port needs a `target`: the port the task listens on",
        );
    }
    if check.failed_since(mark) {
        return None;
    }
    let mut publish = String::new();
    if let Some(p) = published {
        publish.push_str(&format!("published={p},"));
    }
    publish.push_str(&format!(
        "target={},protocol={},mode={}",
        target?,
        protocol.as_deref().unwrap_or("tcp"),
        mode.as_deref().unwrap_or("ingress")
    ));
    Some(publish)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_forms() {
        let v = |s: &str| short_values(s).unwrap();
        assert_eq!(v("8080:80"), ["8080:80"]);
        assert_eq!(v("80"), ["80"]);
        assert_eq!(v("53:53/udp"), ["53:53/udp"]);
        assert_eq!(
            v("9000-9002:8000-8002"),
            ["9000:8000", "9001:8001", "9002:8002"]
        );
        assert_eq!(v("3000-3001/tcp"), ["3000/tcp", "3001/tcp"]);
    }

    #[test]
    fn short_form_errors() {
        for (s, says) in [
            ("127.0.0.1:80:80", "address before the ports"),
            ("[::1]:80:80", "address before the ports"),
            ("0:80", "`0` is not a port"),
            ("80:70000", "`70000` is not a port"),
            ("x", "`x` is not a port"),
            ("", "`` is not a port"),
            ("80/sctp", "protocol `sctp`"),
            ("8000-8010:80", "same length"),
            ("90-80", "ends before"),
            ("1-65535", "the most is 1024"),
        ] {
            let e = short_values(s).unwrap_err();
            assert!(e.contains(says), "{s}: {e}");
        }
    }
}
