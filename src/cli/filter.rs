//! `-f KEY=VALUE` on the listings, applied as docker applies them: the
//! values given for one key are alternatives, different keys must all
//! hold. Flags are checked before the daemon is asked, so a wrong filter
//! lists nothing; the daemon's answer is then filtered here.

use std::collections::BTreeMap;

use shoal_control::swarm::{NodeView, TaskView};

/// Filters of task listings (`service ps`, `node ps`, `stack ps`).
const TASK_KEYS: &[&str] = &["desired-state", "id", "name", "node"];
/// Filters of `node ls`.
const NODE_KEYS: &[&str] = &["id", "membership", "name", "node.label", "role"];
/// Filters docker has for tasks that shoal does not apply.
const TASK_KEYS_NOT_HERE: &[&str] = &["label", "runtime", "service"];
/// Filters docker has for nodes that shoal does not apply (engine labels).
const NODE_KEYS_NOT_HERE: &[&str] = &["label"];

/// Swarm's task states, the values docker takes for `desired-state`.
const TASK_STATES: &[&str] = &[
    "new",
    "pending",
    "assigned",
    "accepted",
    "preparing",
    "ready",
    "starting",
    "running",
    "complete",
    "shutdown",
    "failed",
    "rejected",
    "remove",
    "orphaned",
];

/// `-f` flags by key, as given.
#[derive(Debug, Default)]
struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    /// Splits each flag at its first `=`; keys are case-insensitive and
    /// must be among `keys`.
    fn parse(flags: &[String], keys: &[&str], not_here: &[&str]) -> Result<Filters, String> {
        let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for flag in flags {
            let Some((key, value)) = flag.split_once('=') else {
                return Err("bad format of filter (expected name=value)".into());
            };
            let key = key.trim().to_ascii_lowercase();
            let list = keys.join(", ");
            if not_here.contains(&key.as_str()) {
                return Err(format!(
                    "filter '{key}' is docker's but shoal does not apply it; these are: {list}"
                ));
            }
            if !keys.contains(&key.as_str()) {
                return Err(format!(
                    "invalid filter '{key}'; the filters here are: {list}"
                ));
            }
            let values = by_key.entry(key).or_default();
            // An empty value filters nothing, as in docker.
            let value = value.trim();
            if !value.is_empty() {
                values.push(value.to_owned());
            }
        }
        Ok(Filters(by_key))
    }

    /// The values of `key` (none if not given).
    fn values(&self, key: &str) -> &[String] {
        self.0.get(key).map_or(&[], Vec::as_slice)
    }

    /// True if `key` is not given, or one of its values passes `test`.
    fn any(&self, key: &str, test: impl Fn(&str) -> bool) -> bool {
        let values = self.values(key);
        values.is_empty() || values.iter().any(|v| test(v))
    }

    /// Checks that each value of `key` is one of `allowed` (lowercased),
    /// with docker's message otherwise.
    fn check(&mut self, key: &str, allowed: &[&str]) -> Result<(), String> {
        for v in self.0.get_mut(key).into_iter().flatten() {
            *v = v.to_ascii_lowercase();
            if !allowed.contains(&v.as_str()) {
                return Err(format!(
                    "Invalid {key} filter: '{v}'; give one of {}",
                    allowed.join(", ")
                ));
            }
        }
        Ok(())
    }
}

/// The filters of a task listing.
#[derive(Debug, Default)]
pub struct TaskFilter(Filters);

impl TaskFilter {
    /// Parses `-f` flags.
    pub fn parse(flags: &[String]) -> Result<TaskFilter, String> {
        let mut f = Filters::parse(flags, TASK_KEYS, TASK_KEYS_NOT_HERE)?;
        f.check("desired-state", TASK_STATES)?;
        Ok(TaskFilter(f))
    }

    /// True if a `node=self` filter needs this node's id, given by
    /// [`TaskFilter::resolve_self`].
    pub fn names_self(&self) -> bool {
        self.0.values("node").iter().any(|v| v == "self")
    }

    /// Reads `node=self` as this node, `id`.
    pub fn resolve_self(&mut self, id: &str) {
        for v in self.0.0.get_mut("node").into_iter().flatten() {
            if v == "self" {
                *v = id.to_owned();
            }
        }
    }

    /// Whether `t` is listed. `name` matches a prefix of docker's task name
    /// (`SERVICE.SLOT.ID`), `id` a prefix of the id, `node` the node's id,
    /// id prefix or hostname.
    pub fn keeps(&self, t: &TaskView) -> bool {
        let f = &self.0;
        let desired = t.desired.to_string();
        let full_name = format!("{}.{}", t.name, t.id);
        f.any("desired-state", |v| v == desired)
            && f.any("id", |v| t.id.as_str().starts_with(v))
            && f.any("name", |v| full_name.starts_with(v))
            && f.any("node", |v| {
                t.node.as_deref() == Some(v)
                    || t.node_id
                        .as_ref()
                        .is_some_and(|n| n.as_str().starts_with(v))
            })
    }
}

/// The filters of `node ls`.
#[derive(Debug, Default)]
pub struct NodeFilter(Filters);

impl NodeFilter {
    /// Parses `-f` flags.
    pub fn parse(flags: &[String]) -> Result<NodeFilter, String> {
        let mut f = Filters::parse(flags, NODE_KEYS, NODE_KEYS_NOT_HERE)?;
        f.check("role", &["manager", "worker"])?;
        f.check("membership", &["accepted", "pending"])?;
        Ok(NodeFilter(f))
    }

    /// Whether `n` is listed. `name` matches a prefix of the hostname, `id`
    /// of the id; every `node.label` must hold (`KEY` or `KEY=VALUE`), as
    /// docker requires. Nodes in the state are all accepted.
    pub fn keeps(&self, n: &NodeView) -> bool {
        let f = &self.0;
        let role = n.role.to_string();
        f.any("id", |v| n.id.as_str().starts_with(v))
            && f.any("name", |v| n.hostname.starts_with(v))
            && f.any("role", |v| v == role)
            && f.any("membership", |v| v == "accepted")
            && f.values("node.label")
                .iter()
                .all(|l| match l.split_once('=') {
                    Some((k, v)) => n.labels.get(k).is_some_and(|have| have == v),
                    None => n.labels.contains_key(l.as_str()),
                })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn unknown_keys_and_values_are_refused_in_dockers_words() {
        let e = TaskFilter::parse(&flags(&["foo=bar"])).unwrap_err();
        assert!(e.starts_with("invalid filter 'foo'"), "{e}");
        let e = TaskFilter::parse(&flags(&["desired-state=sleeping"])).unwrap_err();
        assert!(
            e.starts_with("Invalid desired-state filter: 'sleeping'"),
            "{e}"
        );
        let e = NodeFilter::parse(&flags(&["role=boss"])).unwrap_err();
        assert!(e.starts_with("Invalid role filter: 'boss'"), "{e}");
        let e = NodeFilter::parse(&flags(&["role"])).unwrap_err();
        assert_eq!(e, "bad format of filter (expected name=value)");
        let e = TaskFilter::parse(&flags(&["label=a"])).unwrap_err();
        assert!(e.contains("'label' is docker's"), "{e}");
        assert!(TaskFilter::parse(&flags(&["Desired-State=RUNNING"])).is_ok());
    }

    #[test]
    fn same_key_is_any_of_and_keys_are_all_of() {
        let f =
            Filters::parse(&flags(&["id=a", "id=b", "name=x", "node="]), TASK_KEYS, &[]).unwrap();
        assert!(f.any("id", |v| v == "b"));
        assert!(!f.any("id", |v| v == "c"));
        assert!(f.any("node", |_| false), "an empty value filters nothing");
        assert!(f.any("desired-state", |_| false), "an absent key neither");
    }
}
