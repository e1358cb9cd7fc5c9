//! A service's `healthcheck:` into the `--health-*` options: `test` as
//! `[CMD, ...]` (joined with shell quoting), `[CMD-SHELL, "..."]`, a
//! string, or `[NONE]`; `disable`; and the timings.

use super::check::{Check, Keys, index, join};
use super::words::{self, cut};
use super::yaml::{Node, Value};
use crate::swarm::Policies;

const HEALTHCHECK: Keys = Keys {
    read: &[
        "test",
        "interval",
        "timeout",
        "retries",
        "start_period",
        "disable",
    ],
    ignored: &[],
    refused: &[],
};

/// `healthcheck:` into the `--health-*` options.
pub(super) fn healthcheck(check: &mut Check, node: &Node, path: &str, policies: &mut Policies) {
    let Some(fields) = check.fields(node, path, &HEALTHCHECK) else {
        return;
    };
    let mut none = false;
    if let Some(v) = fields.given("test") {
        let p = join(path, "test");
        match health_test(check, v, &p) {
            Some(Some(cmd)) => policies.health_cmd = Some(cmd),
            Some(None) => none = true,
            None => {}
        }
    }
    if let Some(v) = fields.given("disable") {
        let p = join(path, "disable");
        if check.bool(v, &p) == Some(true) {
            if fields.given("test").is_some() && !none {
                check.error(v, &p, "`disable: true` and a `test` cannot both be set");
            }
            none = true;
        }
    }
    let positive = |check: &mut Check, key: &str| {
        let v = fields.given(key)?;
        let p = join(path, key);
        let ms = check.duration_ms(v, &p)?;
        if ms == 0 {
            check.error(v, &p, format!("{key} must be at least 1ms"));
            return None;
        }
        Some(ms)
    };
    policies.health_interval_ms = positive(check, "interval");
    policies.health_timeout_ms = positive(check, "timeout");
    if let Some(v) = fields.given("start_period") {
        policies.health_start_period_ms = check.duration_ms(v, &join(path, "start_period"));
    }
    if let Some(v) = fields.given("retries") {
        let retries = check.uint(v, &join(path, "retries"), u64::from(u32::MAX));
        policies.health_retries = retries.and_then(|r| u32::try_from(r).ok());
    }
    let tuning = ["interval", "timeout", "start_period", "retries"]
        .into_iter()
        .find_map(|k| fields.given(k).map(|v| (k, v)));
    if let Some((key, v)) = tuning {
        let p = join(path, key);
        if none {
            check.error(v, &p, "the health check is disabled, so it cannot be tuned");
        } else if fields.given("test").is_none() {
            check.error(
                v,
                &p,
                "a health check needs a `test`: shoal has no image to take one from",
            );
        }
    }
    if none {
        *policies = Policies {
            no_healthcheck: true,
            health_cmd: None,
            health_interval_ms: None,
            health_timeout_ms: None,
            health_retries: None,
            health_start_period_ms: None,
            ..std::mem::take(policies)
        };
    }
}

/// A health check's `test`: `Some(Some(shell command))`, `Some(None)`
/// for `[NONE]`, `None` on error.
fn health_test(check: &mut Check, node: &Node, path: &str) -> Option<Option<String>> {
    let shell = |check: &mut Check, node: &Node, path: &str| {
        let cmd = check.string(node, path)?;
        if cmd.trim().is_empty() {
            check.error(node, path, "the health check command is empty");
            return None;
        }
        Some(cmd)
    };
    if let Value::Str(_) = node.value {
        return shell(check, node, path).map(Some);
    }
    let items = check.strings(node, path)?;
    let Some(((kind, first), rest)) = items.split_first() else {
        check.error(
            node,
            path,
            "the test is empty; give [\"CMD\", ...], [\"CMD-SHELL\", \"...\"] or [\"NONE\"]",
        );
        return None;
    };
    match kind.as_str() {
        "NONE" => match rest.first() {
            None => Some(None),
            Some((_, extra)) => {
                check.error(extra, &index(path, 1), "[\"NONE\"] takes nothing after it");
                None
            }
        },
        "CMD-SHELL" => match rest {
            [(_, cmd)] => shell(check, cmd, &index(path, 1)).map(Some),
            _ => {
                let message = "[\"CMD-SHELL\", \"...\"] takes exactly one command string";
                check.error(node, path, message);
                None
            }
        },
        "CMD" if rest.is_empty() => {
            check.error(first, path, "[\"CMD\", ...] needs a program after CMD");
            None
        }
        "CMD" => {
            let words: Vec<String> = rest.iter().map(|(w, _)| w.clone()).collect();
            Some(Some(words::quote_command(&words)))
        }
        other => {
            let message = format!(
                "the test starts with `{}`; it must start with CMD, CMD-SHELL or NONE",
                cut(other)
            );
            check.error(first, &index(path, 0), message);
            None
        }
    }
}
