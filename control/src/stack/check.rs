//! Reading the YAML tree with located errors: typed reads of one node
//! ([`Check::string`], [`Check::uint`], [`Check::duration_ms`], ...) and
//! of mappings with a known set of keys ([`Check::fields`]). A read that
//! fails records an error at the node and returns `None`, so the caller
//! goes on with the rest of the file and every problem is reported.

use serde_saphyr::Location;

use super::yaml::{Node, SyntaxError, Value};
use super::{ComposeError, ComposeErrors, words};

/// The errors and warnings found so far in one file.
pub(super) struct Check<'t> {
    file: &'t str,
    text: &'t str,
    errors: Vec<ComposeError>,
    /// Line, column and text.
    warnings: Vec<(u64, u64, String)>,
}

/// The keys a mapping may have, by kind (see the module docs of `stack`).
pub(super) struct Keys {
    /// Read by shoal.
    pub read: &'static [&'static str],
    /// Ignored, with a warning.
    pub ignored: &'static [&'static str],
    /// Refused, with why.
    pub refused: &'static [(&'static str, &'static str)],
}

/// The read keys of one mapping, with their nodes.
pub(super) struct Fields<'n> {
    entries: Vec<(String, &'n Node, &'n Node)>,
}

impl<'n> Fields<'n> {
    /// The value of `key`, if the mapping has it.
    pub fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, _, v)| *v)
    }

    /// The value of `key` unless it is absent or null.
    pub fn given(&self, key: &str) -> Option<&'n Node> {
        self.get(key).filter(|v| v.value != Value::Null)
    }
}

/// Appends `key` to a key path.
pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Appends a list index to a key path.
pub(super) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

impl<'t> Check<'t> {
    /// Starts checking `text`, which `file` names in messages.
    pub fn new(file: &'t str, text: &'t str) -> Check<'t> {
        Check {
            file,
            text,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Records an error at `at`.
    pub fn error(&mut self, at: &Node, path: &str, message: impl Into<String>) {
        self.error_at(at.at, path, message);
    }

    /// Records an error at a location.
    pub fn error_at(&mut self, at: Location, path: &str, message: impl Into<String>) {
        self.errors.push(ComposeError {
            file: self.file.to_owned(),
            line: to_usize(at.line()),
            column: to_usize(at.column()),
            path: path.to_owned(),
            message: message.into(),
        });
    }

    /// Records an error about something that is not in the file.
    pub fn error_outside(&mut self, message: impl Into<String>) {
        self.errors.push(ComposeError {
            file: self.file.to_owned(),
            line: 0,
            column: 0,
            path: String::new(),
            message: message.into(),
        });
    }

    /// Records why the text is not YAML.
    pub fn syntax_error(&mut self, e: SyntaxError) {
        self.errors.push(ComposeError {
            file: self.file.to_owned(),
            line: to_usize(e.line),
            column: to_usize(e.column),
            path: e.path,
            message: e.message,
        });
    }

    /// Records a warning at `at`.
    pub fn warn(&mut self, at: &Node, path: &str, message: impl AsRef<str>) {
        let (line, column) = (at.at.line(), at.at.column());
        let text = format!(
            "{}:{line}:{column}: {path}: {}",
            self.file,
            message.as_ref()
        );
        self.warnings.push((line, column, text));
    }

    /// Whether an error was recorded since `mark` ([`Check::mark`]).
    pub fn failed_since(&self, mark: usize) -> bool {
        self.errors.len() > mark
    }

    /// A mark for [`Check::failed_since`].
    pub fn mark(&self) -> usize {
        self.errors.len()
    }

    /// The errors, in the file's order.
    pub fn into_errors(self) -> ComposeErrors {
        self.finish().0
    }

    /// The errors and the warnings, each in the file's order.
    pub fn finish(mut self) -> (ComposeErrors, Vec<String>) {
        self.errors.sort_by_key(|e| (e.line, e.column));
        self.warnings
            .sort_by_key(|(line, column, _)| (*line, *column));
        let warnings = self.warnings.into_iter().map(|(_, _, w)| w).collect();
        (ComposeErrors(self.errors), warnings)
    }

    /// The text of a scalar as written, quotes and all.
    fn raw(&self, node: &Node) -> Option<&'t str> {
        let span = node.at.span();
        let start = usize::try_from(span.byte_offset()?).ok()?;
        let len = usize::try_from(span.byte_len()?).ok()?;
        self.text.get(start..start.checked_add(len)?)
    }

    /// A scalar as text: a string as it is, another scalar as written (so
    /// `3.10` stays `3.10` and `yes` stays `yes`); `None` for null and
    /// collections.
    pub fn scalar_text(&self, node: &Node) -> Option<String> {
        match &node.value {
            Value::Str(s) => Some(s.clone()),
            Value::Bool(b) => Some(self.raw(node).map_or_else(|| b.to_string(), str::to_owned)),
            Value::Int(i) => Some(self.raw(node).map_or_else(|| i.to_string(), str::to_owned)),
            Value::Float(x) => Some(self.raw(node).map_or_else(|| x.to_string(), str::to_owned)),
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
        }
    }

    /// How a value is named in a type error, as serde names it.
    fn describe(&self, node: &Node) -> String {
        match &node.value {
            Value::Null => "null".into(),
            Value::Bool(_) => format!("boolean `{}`", self.shown(node)),
            Value::Int(_) => format!("integer `{}`", self.shown(node)),
            Value::Float(_) => format!("floating point `{}`", self.shown(node)),
            Value::Str(s) => format!("string {:?}", words::cut(s)),
            Value::Seq(_) => "sequence".into(),
            Value::Map(_) => "map".into(),
        }
    }

    fn shown(&self, node: &Node) -> String {
        words::cut(&self.scalar_text(node).unwrap_or_default())
    }

    /// Records `invalid type: X, expected WHAT`.
    pub fn type_error(&mut self, node: &Node, path: &str, expected: &str) {
        let message = format!("invalid type: {}, expected {expected}", self.describe(node));
        self.error(node, path, message);
    }

    /// A string, with `$$` read as `$`; variable substitution is refused.
    /// YAML 1.1's other booleans (`y`, `n`, `yes`, `off`, ...) are strings
    /// here, as they are in YAML 1.2 and to docker.
    pub fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        match &node.value {
            Value::Str(s) => self.unescape(node, path, s),
            Value::Bool(_) if self.raw(node).is_some_and(|r| !is_yaml12_bool(r)) => {
                self.raw(node).map(str::to_owned)
            }
            _ => {
                self.type_error(node, path, "a string");
                None
            }
        }
    }

    /// A string, number or boolean as text (see [`Check::scalar_text`]).
    pub fn text(&mut self, node: &Node, path: &str, expected: &str) -> Option<String> {
        match &node.value {
            Value::Str(s) => self.unescape(node, path, s),
            Value::Bool(_) | Value::Int(_) | Value::Float(_) => self.scalar_text(node),
            Value::Null | Value::Seq(_) | Value::Map(_) => {
                self.type_error(node, path, expected);
                None
            }
        }
    }

    fn unescape(&mut self, node: &Node, path: &str, s: &str) -> Option<String> {
        match words::unescape_dollars(s) {
            Ok(s) => Some(s),
            Err(why) => {
                self.error(node, path, why);
                None
            }
        }
    }

    /// A non-negative integer no larger than `max`.
    pub fn uint(&mut self, node: &Node, path: &str, max: u64) -> Option<u64> {
        let Value::Int(i) = node.value else {
            self.type_error(node, path, "an integer");
            return None;
        };
        match u64::try_from(i) {
            Ok(v) if v <= max => Some(v),
            _ => {
                let message = format!(
                    "invalid value: integer `{}`, expected an integer from 0 to {max}",
                    self.shown(node)
                );
                self.error(node, path, message);
                None
            }
        }
    }

    /// A boolean.
    pub fn bool(&mut self, node: &Node, path: &str) -> Option<bool> {
        if let Value::Bool(b) = node.value {
            return Some(b);
        }
        self.type_error(node, path, "a boolean");
        None
    }

    /// A duration such as `10s` or `1m30s`, in milliseconds.
    pub fn duration_ms(&mut self, node: &Node, path: &str) -> Option<u64> {
        let Value::Str(s) = &node.value else {
            self.type_error(
                node,
                path,
                "a duration such as \"10s\", \"1m30s\" or \"500ms\"",
            );
            return None;
        };
        match words::duration_ms(s) {
            Ok(ms) => Some(ms),
            Err(why) => {
                self.error(node, path, why);
                None
            }
        }
    }

    /// One of `choices`.
    pub fn choice(&mut self, node: &Node, path: &str, choices: &[&str]) -> Option<String> {
        let s = self.string(node, path)?;
        if choices.contains(&s.as_str()) {
            return Some(s);
        }
        let message = format!(
            "invalid value: `{}`, expected {}",
            words::cut(&s),
            words::one_of(choices)
        );
        self.error(node, path, message);
        None
    }

    /// A list of strings, each with its node; null is an empty list.
    pub fn strings<'n>(&mut self, node: &'n Node, path: &str) -> Option<Vec<(String, &'n Node)>> {
        let items = self.list(node, path, "a list of strings")?;
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match self.string(item, &index(path, i)) {
                Some(s) => out.push((s, item)),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// A sequence's items; null is an empty sequence.
    pub fn list<'n>(&mut self, node: &'n Node, path: &str, expected: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::Seq(items) => Some(items),
            Value::Null => Some(&[]),
            _ => {
                self.type_error(node, path, expected);
                None
            }
        }
    }

    /// A mapping's entries with their keys as text; null is an empty
    /// mapping. A key that is not a scalar is an error.
    pub fn entries<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        expected: &str,
    ) -> Option<Vec<(String, &'n Node, &'n Node)>> {
        let entries = match &node.value {
            Value::Map(entries) => entries.as_slice(),
            Value::Null => &[],
            _ => {
                self.type_error(node, path, expected);
                return None;
            }
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (k, v) in entries {
            match self.scalar_text(k) {
                Some(key) => out.push((key, k, v)),
                None => {
                    let message = format!("a key must be a string, not {}", self.describe(k));
                    self.error(k, path, message);
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// A mapping with the keys `keys` allows: ignored keys are warned
    /// about, refused and unknown ones are errors; `x-` keys are skipped.
    /// `None` when the node is not a mapping (or null).
    pub fn fields<'n>(&mut self, node: &'n Node, path: &str, keys: &Keys) -> Option<Fields<'n>> {
        let entries = self.entries(node, path, "a map")?;
        let mut read = Vec::new();
        let mut ignored: Vec<(String, &Node)> = Vec::new();
        for (key, k, v) in entries {
            if key.starts_with("x-") {
                continue;
            }
            if keys.read.contains(&key.as_str()) {
                read.push((key, k, v));
            } else if keys.ignored.contains(&key.as_str()) {
                ignored.push((key, k));
            } else if let Some((_, why)) = keys.refused.iter().find(|(r, _)| *r == key) {
                self.error(
                    k,
                    &join(path, &key),
                    format!("`{key}` is not supported: {why}"),
                );
            } else {
                let message = unknown_key(&key, keys);
                self.error(k, &join(path, &key), message);
            }
        }
        if let Some((_, first)) = ignored.first() {
            let names: Vec<&str> = ignored.iter().map(|(k, _)| k.as_str()).collect();
            let message = format!("ignoring unsupported options: {}", names.join(", "));
            let path = if path.is_empty() { "(top level)" } else { path };
            self.warn(first, path, message);
        }
        Some(Fields { entries: read })
    }
}

/// `unknown key`, with the nearest known key when one is close.
fn unknown_key(key: &str, keys: &Keys) -> String {
    let known = keys
        .read
        .iter()
        .chain(keys.ignored)
        .chain(keys.refused.iter().map(|(k, _)| k));
    let nearest = known
        .map(|k| (words::edit_distance(key, k), *k))
        .filter(|(d, k)| *d <= 2 && *d < k.len())
        .min();
    match nearest {
        Some((_, k)) => format!("unknown key `{}`; did you mean `{k}`?", words::cut(key)),
        None => format!(
            "unknown key `{}`; expected {}",
            words::cut(key),
            words::one_of(keys.read)
        ),
    }
}

fn is_yaml12_bool(raw: &str) -> bool {
    matches!(raw, "true" | "True" | "TRUE" | "false" | "False" | "FALSE")
}

fn to_usize(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}
