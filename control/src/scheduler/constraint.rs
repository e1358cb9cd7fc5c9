//! Placement constraints, as users write them for `--constraint`.
//!
//! Text enters through [`Constraint::parse`] (or [`Constraint::parse_all`]
//! for a service's whole list), which never panics and says what is
//! allowed when it refuses; a [`Constraint`] leaves as a yes or no for a
//! node ([`Constraint::matches`]) and as its canonical text (`Display`).
//!
//! The rules are swarmkit's: `KEY==VALUE` or `KEY!=VALUE` with optional
//! whitespace around the operator; field names are case-insensitive, label
//! names are not; values compare case-insensitively; a label a node lacks
//! reads as empty, so `node.labels.KEY!=VALUE` matches it. Values are
//! limited to swarmkit's characters, which keeps operators such as `<` or
//! `~` free for later.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::role::Role;
use crate::state::Node;

pub(super) const LABEL_PREFIX: &str = "node.labels.";
/// Longest piece of user input an error message repeats.
const QUOTE_MAX: usize = 80;

/// One placement rule: a node field compared with a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    field: Field,
    op: Operator,
    /// Trimmed, non-empty; lowercase for `node.role`.
    value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    Id,
    Hostname,
    Role,
    Label(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    Eq,
    Ne,
}

/// Why one constraint expression was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("constraint `{expr}`: {problem}")]
pub struct ConstraintError {
    /// The expression as written (cut to 80 characters).
    pub expr: String,
    /// What is wrong with it.
    pub problem: Problem,
}

/// What is wrong with a constraint expression.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Problem {
    /// Neither `==` nor `!=` appears.
    #[error("no operator; write KEY==VALUE or KEY!=VALUE")]
    NoOperator,
    /// Nothing before the operator.
    #[error("missing field; use node.id, node.hostname, node.role or node.labels.KEY")]
    MissingField,
    /// A field shoal does not know.
    #[error("unknown field `{0}`; use node.id, node.hostname, node.role or node.labels.KEY")]
    UnknownField(String),
    /// `node.labels.` with nothing after it.
    #[error("missing label name; write node.labels.KEY")]
    MissingLabel,
    /// A label name with characters constraints cannot name.
    #[error("invalid label name `{0}`; use letters, digits, `-`, `_` and `.`")]
    InvalidLabel(String),
    /// Nothing after the operator.
    #[error("missing value; write KEY==VALUE or KEY!=VALUE")]
    MissingValue,
    /// A value with reserved characters.
    #[error(
        "invalid value `{0}`; use letters, digits, spaces and the characters : - _ . * ( ) ? + \
         [ ] \\ ^ $ | /"
    )]
    InvalidValue(String),
    /// `node.role` compared with something that is not a role.
    #[error("unknown role `{0}`; use manager or worker")]
    UnknownRole(String),
}

/// Every refused expression of a list, in list order; never empty.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}", list(.0))]
pub struct ConstraintErrors(pub Vec<ConstraintError>);

/// One error as itself; several under a count, one a line.
fn list(errors: &[ConstraintError]) -> String {
    match errors {
        [one] => one.to_string(),
        many => {
            let mut out = format!("{} invalid constraints:", many.len());
            for e in many {
                out.push_str("\n  ");
                out.push_str(&e.to_string());
            }
            out
        }
    }
}

impl Constraint {
    /// Parses one expression such as `node.labels.zone == a`.
    pub fn parse(expr: &str) -> Result<Constraint, ConstraintError> {
        let refuse = |problem| ConstraintError {
            expr: quote(expr),
            problem,
        };
        let (key, op, value) = split(expr).ok_or_else(|| refuse(Problem::NoOperator))?;
        let field = Field::parse(key.trim()).map_err(refuse)?;
        let value = check_value(value.trim()).map_err(refuse)?;
        let value = match field {
            Field::Role => role_value(value).map_err(refuse)?,
            _ => value.to_owned(),
        };
        Ok(Constraint { field, op, value })
    }

    /// Parses a service's list, reporting every bad expression at once.
    pub fn parse_all<S: AsRef<str>>(exprs: &[S]) -> Result<Vec<Constraint>, ConstraintErrors> {
        let mut good = Vec::with_capacity(exprs.len());
        let mut bad = Vec::new();
        for expr in exprs {
            match Constraint::parse(expr.as_ref()) {
                Ok(c) => good.push(c),
                Err(e) => bad.push(e),
            }
        }
        if bad.is_empty() {
            Ok(good)
        } else {
            Err(ConstraintErrors(bad))
        }
    }

    /// Whether `node` satisfies this constraint.
    pub fn matches(&self, node: &Node) -> bool {
        let actual = match &self.field {
            Field::Id => node.id.as_str(),
            Field::Hostname => node.hostname.as_str(),
            Field::Role => role_name(node.role),
            Field::Label(key) => node.labels.get(key).map_or("", String::as_str),
        };
        let equal = actual.eq_ignore_ascii_case(&self.value);
        match self.op {
            Operator::Eq => equal,
            Operator::Ne => !equal,
        }
    }
}

impl FromStr for Constraint {
    type Err = ConstraintError;

    fn from_str(s: &str) -> Result<Constraint, ConstraintError> {
        Constraint::parse(s)
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Field::Id => f.write_str("node.id")?,
            Field::Hostname => f.write_str("node.hostname")?,
            Field::Role => f.write_str("node.role")?,
            Field::Label(key) => write!(f, "{LABEL_PREFIX}{key}")?,
        }
        f.write_str(match self.op {
            Operator::Eq => "==",
            Operator::Ne => "!=",
        })?;
        f.write_str(&self.value)
    }
}

impl Field {
    fn parse(key: &str) -> Result<Field, Problem> {
        let is = |name: &str| key.eq_ignore_ascii_case(name);
        if key.is_empty() {
            Err(Problem::MissingField)
        } else if is("node.id") {
            Ok(Field::Id)
        } else if is("node.hostname") {
            Ok(Field::Hostname)
        } else if is("node.role") {
            Ok(Field::Role)
        } else if is("node.labels") {
            Err(Problem::MissingLabel)
        } else if let Some(label) = strip_prefix_ignore_case(key, LABEL_PREFIX) {
            label_name(label).map(|l| Field::Label(l.to_owned()))
        } else {
            Err(Problem::UnknownField(quote(key)))
        }
    }
}

/// Splits at the first `==` or `!=`, whichever comes first.
fn split(expr: &str) -> Option<(&str, Operator, &str)> {
    let at = |pat, op| expr.find(pat).map(|i| (i, op));
    let (i, op) = match (at("==", Operator::Eq), at("!=", Operator::Ne)) {
        (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
        (a, b) => a.or(b),
    }?;
    Some((expr.get(..i)?, op, expr.get(i + 2..)?))
}

pub(super) fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}

pub(super) fn label_name(label: &str) -> Result<&str, Problem> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if label.is_empty() {
        Err(Problem::MissingLabel)
    } else if label.chars().all(allowed) {
        Ok(label)
    } else {
        Err(Problem::InvalidLabel(quote(label)))
    }
}

fn check_value(value: &str) -> Result<&str, Problem> {
    let allowed = |c: char| {
        c.is_ascii_alphanumeric()
            || c.is_ascii_whitespace()
            || matches!(
                c,
                ':' | '-'
                    | '_'
                    | '.'
                    | '*'
                    | '('
                    | ')'
                    | '?'
                    | '+'
                    | '['
                    | ']'
                    | '\\'
                    | '^'
                    | '$'
                    | '|'
                    | '/'
            )
    };
    if value.is_empty() {
        Err(Problem::MissingValue)
    } else if value.chars().all(allowed) {
        Ok(value)
    } else {
        Err(Problem::InvalidValue(quote(value)))
    }
}

fn role_value(value: &str) -> Result<String, Problem> {
    Role::ALL
        .into_iter()
        .map(role_name)
        .find(|name| value.eq_ignore_ascii_case(name))
        .map(str::to_owned)
        .ok_or_else(|| Problem::UnknownRole(quote(value)))
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Manager => "manager",
        Role::Worker => "worker",
    }
}

pub(super) fn quote(s: &str) -> String {
    s.chars().take(QUOTE_MAX).collect()
}

#[cfg(test)]
mod tests;
