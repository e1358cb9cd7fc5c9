//! The compose file as a tree of YAML values, each with where it was
//! written. serde-saphyr parses (anchors, aliases and `<<` merge keys
//! expanded, duplicate keys refused); the checks then walk the tree, so
//! that they can report every problem with its line and column, not only
//! the first one serde would stop at.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, MessageFormatter, Spanned};

/// A YAML value and where it was defined (for an alias or a merged entry,
/// where the anchored original is).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Node {
    pub value: Value,
    pub at: Location,
}

/// A YAML value. Integers too large for `i128` arrive as floats.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// Why the text is not YAML (or not YAML serde-saphyr accepts: duplicate
/// keys, recursive aliases, alias bombs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SyntaxError {
    pub line: u64,
    pub column: u64,
    /// The key path to where parsing stopped; empty at the top.
    pub path: String,
    pub message: String,
}

/// Parses one YAML document into a [`Node`] tree.
pub(super) fn parse(text: &str) -> Result<Node, SyntaxError> {
    PATH.with(|p| p.borrow_mut().clear());
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    serde_saphyr::from_str_with_options::<Node>(text, options).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        let raw = serde_saphyr::UserMessageFormatter.format_message(e.without_snippet());
        let mut message = String::new();
        for c in raw.chars() {
            if c.is_control() {
                message.extend(c.escape_default());
            } else {
                message.push(c);
            }
        }
        SyntaxError {
            line,
            column,
            path: PATH.with(|p| p.borrow_mut().split_off(0).join("")),
            message,
        }
    })
}

thread_local! {
    /// The key path of the node being parsed, left as it was when parsing
    /// fails. `Spanned<T>` needs `T: Deserialize`, so the path cannot ride
    /// in a `DeserializeSeed`; it lives here, for the length of one
    /// [`parse`] on this thread.
    static PATH: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

fn enter(segment: String) {
    PATH.with(|p| p.borrow_mut().push(segment));
}

fn leave() {
    PATH.with(|p| p.borrow_mut().pop());
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        let s = Spanned::<Value>::deserialize(d)?;
        Ok(Node {
            value: s.value,
            at: s.defined,
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Int(v))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        Ok(i128::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            enter(format!("[{}]", items.len()));
            let Some(item) = seq.next_element::<Node>()? else {
                leave();
                return Ok(Value::Seq(items));
            };
            leave();
            items.push(item);
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Node>()? {
            let segment = match &key.value {
                Value::Str(s) => s.clone(),
                Value::Int(i) => i.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => "?".into(),
            };
            let dot = PATH.with(|p| p.borrow().is_empty());
            enter(if dot { segment } else { format!(".{segment}") });
            let value = map.next_value::<Node>()?;
            leave();
            entries.push((key, value));
        }
        Ok(Value::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(n: &Node) -> (u64, u64) {
        (n.at.line(), n.at.column())
    }

    #[test]
    fn values_keep_where_they_were_written() {
        let n = parse("a:\n  b: [1, x]\n").unwrap();
        let Value::Map(top) = &n.value else { panic!() };
        let Value::Map(a) = &top[0].1.value else {
            panic!()
        };
        assert_eq!(at(&a[0].0), (2, 3));
        let Value::Seq(b) = &a[0].1.value else {
            panic!()
        };
        assert_eq!(b[1].value, Value::Str("x".into()));
        assert_eq!(at(&b[1]), (2, 10));
    }

    #[test]
    fn merged_entries_point_at_their_definition() {
        let n = parse("x: &d\n  a: 1\n  b: 2\ny:\n  <<: *d\n  b: 3\n").unwrap();
        let Value::Map(top) = &n.value else { panic!() };
        let Value::Map(y) = &top[1].1.value else {
            panic!()
        };
        let a = y.iter().find(|(k, _)| k.value == Value::Str("a".into()));
        assert_eq!(at(&a.unwrap().1), (2, 6));
        let b = y.iter().find(|(k, _)| k.value == Value::Str("b".into()));
        assert_eq!(b.unwrap().1.value, Value::Int(3));
        assert_eq!(y.len(), 2);
    }

    #[test]
    fn syntax_errors_carry_line_column_and_path() {
        let e = parse("services:\n  api:\n    image: a\n    image: b\n").unwrap_err();
        assert_eq!((e.line, e.column), (4, 5));
        assert_eq!(e.path, "services.api");
        assert!(e.message.contains("duplicate"), "{}", e.message);
        let e = parse("a:\n  b: [1, 2\n").unwrap_err();
        assert!(e.line >= 2, "{e:?}");
        let e = parse("- &a [*a]\n").unwrap_err();
        assert_eq!(e.line, 1);
        // A failed parse leaves nothing behind for the next one.
        assert_eq!(parse("a: 1\n").unwrap().at.line(), 1);
        let e = parse("a: [\n").unwrap_err();
        assert_eq!(e.path, "a[0]");
    }
}
