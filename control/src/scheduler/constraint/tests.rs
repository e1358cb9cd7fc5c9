//! Parsing (good and bad input, never a panic), canonical text, and
//! matching against nodes.

use proptest::prelude::*;

use super::*;
use crate::testkit::with_labels;

/// Hostnames start with a capital letter, so matching is seen to ignore case.
fn node(id: &str, role: Role, labels: &[(&str, &str)]) -> Node {
    Node {
        hostname: format!("Host-{id}"),
        ..with_labels(crate::testkit::node(id, role), labels)
    }
}

fn canonical(expr: &str) -> String {
    match Constraint::parse(expr) {
        Ok(c) => c.to_string(),
        Err(e) => panic!("{expr:?} was refused: {e}"),
    }
}

fn refusal(expr: &str) -> String {
    match Constraint::parse(expr) {
        Ok(c) => panic!("{expr:?} was accepted as {c}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn parses_every_field_and_operator() {
    for expr in [
        "node.id==n1",
        "node.id!=n1",
        "node.hostname==host-1",
        "node.hostname!=host-1",
        "node.role==manager",
        "node.role!=worker",
        "node.labels.zone==a",
        "node.labels.zone!=a",
        "node.labels.com.example.tier==front end",
    ] {
        assert_eq!(canonical(expr), expr);
    }
}

#[test]
fn canonical_text_trims_and_lowercases_what_is_case_insensitive() {
    assert_eq!(
        canonical("  node.labels.zone == a  "),
        "node.labels.zone==a"
    );
    assert_eq!(canonical("node.labels.zone\t!=\ta"), "node.labels.zone!=a");
    assert_eq!(canonical("Node.Role==Manager"), "node.role==manager");
    assert_eq!(canonical("NODE.HOSTNAME==Web-1"), "node.hostname==Web-1");
    assert_eq!(canonical("Node.Labels.Zone==A"), "node.labels.Zone==A");
    assert_eq!(
        "node.id == n1".parse::<Constraint>(),
        Constraint::parse("node.id==n1")
    );
}

#[test]
fn unknown_fields_are_refused_with_the_allowed_ones() {
    assert_eq!(
        refusal("node.zone==a"),
        "constraint `node.zone==a`: unknown field `node.zone`; use node.id, node.hostname, \
         node.role or node.labels.KEY"
    );
    assert_eq!(
        refusal("engine.labels.os==linux"),
        "constraint `engine.labels.os==linux`: unknown field `engine.labels.os`; use node.id, \
         node.hostname, node.role or node.labels.KEY"
    );
}

#[test]
fn malformed_expressions_say_what_to_write() {
    let cases = [
        (
            "node.role=manager",
            "no operator; write KEY==VALUE or KEY!=VALUE",
        ),
        ("", "no operator; write KEY==VALUE or KEY!=VALUE"),
        (
            "==a",
            "missing field; use node.id, node.hostname, node.role or node.labels.KEY",
        ),
        ("node.id==", "missing value; write KEY==VALUE or KEY!=VALUE"),
        (
            "node.id==  ",
            "missing value; write KEY==VALUE or KEY!=VALUE",
        ),
        (
            "node.labels.==a",
            "missing label name; write node.labels.KEY",
        ),
        (
            "node.labels==a",
            "missing label name; write node.labels.KEY",
        ),
        (
            "node.labels.a b==c",
            "invalid label name `a b`; use letters, digits, `-`, `_` and `.`",
        ),
        (
            "node.role==boss",
            "unknown role `boss`; use manager or worker",
        ),
        ("node.id==a==b", "invalid value `a==b`"),
        ("node.id!==a", "invalid value `=a`"),
        ("node.id==<3", "invalid value `<3`"),
    ];
    for (expr, problem) in cases {
        let msg = refusal(expr);
        assert!(
            msg.starts_with(&format!("constraint `{expr}`: {problem}")),
            "{expr:?}: {msg}"
        );
    }
}

#[test]
fn long_input_is_cut_in_messages() {
    let expr = format!("node.id=={}", "x<".repeat(500));
    let err = Constraint::parse(&expr).unwrap_err();
    assert_eq!(err.expr.chars().count(), QUOTE_MAX);
    assert!(matches!(err.problem, Problem::InvalidValue(v) if v.chars().count() == QUOTE_MAX));
}

#[test]
fn parse_all_reports_every_error_in_order() {
    let good = Constraint::parse_all(&["node.role==worker", "node.labels.zone!=b"]).unwrap();
    assert_eq!(good.len(), 2);
    assert_eq!(Constraint::parse_all::<&str>(&[]), Ok(vec![]));

    let one = Constraint::parse_all(&["node.role==worker", "node.zone==a"]).unwrap_err();
    assert_eq!(one.0.len(), 1);
    assert_eq!(one.to_string(), one.0[0].to_string());

    let two = Constraint::parse_all(&["x", "node.role==worker", "node.zone==a"]).unwrap_err();
    assert_eq!(
        two.to_string(),
        "2 invalid constraints:\n  constraint `x`: no operator; write KEY==VALUE or KEY!=VALUE\n  \
         constraint `node.zone==a`: unknown field `node.zone`; use node.id, node.hostname, \
         node.role or node.labels.KEY"
    );
}

#[test]
fn matches_each_field() {
    let worker = node("n1", Role::Worker, &[("zone", "a")]);
    let manager = node("n2", Role::Manager, &[]);
    let check = |expr: &str, n: &Node| Constraint::parse(expr).unwrap().matches(n);

    assert!(check("node.id==n1", &worker));
    assert!(!check("node.id==n1", &manager));
    assert!(check("node.id!=n1", &manager));
    assert!(check("node.hostname==host-n1", &worker));
    assert!(!check("node.hostname!=HOST-N1", &worker));
    assert!(check("node.role==manager", &manager));
    assert!(!check("node.role==manager", &worker));
    assert!(check("node.role!=manager", &worker));
    assert!(check("node.labels.zone==a", &worker));
    assert!(check("node.labels.zone==A", &worker));
    assert!(!check("node.labels.zone!=a", &worker));
    assert!(!check("node.labels.zone==b", &worker));
}

#[test]
fn a_missing_label_fails_equality_and_passes_inequality() {
    let bare = node("n1", Role::Worker, &[("Zone", "a")]);
    assert!(
        !Constraint::parse("node.labels.zone==a")
            .unwrap()
            .matches(&bare)
    );
    assert!(
        Constraint::parse("node.labels.zone!=a")
            .unwrap()
            .matches(&bare)
    );
    assert!(
        Constraint::parse("node.labels.Zone==a")
            .unwrap()
            .matches(&bare)
    );
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(expr in any::<String>()) {
        let _ = Constraint::parse(&expr);
    }

    #[test]
    fn near_misses_never_panic(
        key in "(node|NODE|n)?(\\.(id|hostname|role|labels|Labels|zone|é))*(\\.[a-zé=!. ]{0,4})?",
        op in "(==|!=|=|!|===| == |)",
        value in "[a-zA-Z0-9 =!<é.]{0,6}",
    ) {
        let _ = Constraint::parse(&format!("{key}{op}{value}"));
    }

    #[test]
    fn canonical_text_parses_back_to_the_same_constraint(
        key in "(node.id|node.hostname|node.role|node.labels.[a-z.]{1,5})",
        ne in any::<bool>(),
        value in "(manager|worker|[a-zA-Z0-9:_.-][a-zA-Z0-9 :_.-]{0,5}[a-zA-Z0-9])",
    ) {
        let op = if ne { "!=" } else { "==" };
        if let Ok(c) = Constraint::parse(&format!(" {key} {op} {value} ")) {
            prop_assert_eq!(Constraint::parse(&c.to_string()), Ok(c.clone()));
            prop_assert_eq!(c.to_string(), format!("{key}{op}{value}"));
        }
    }
}
