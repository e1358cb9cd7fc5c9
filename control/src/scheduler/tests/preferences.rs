//! Placement preferences: tasks spread over a label's values before the
//! nodes of each value, as swarmkit's decision tree does; `spread=` text
//! parsed or refused with what to write.

use super::*;
use crate::state::PlacementPreference;

/// `web` (s1) with the preferences `texts`, highest first.
fn prefer(s: &mut ClusterState, texts: &[&str]) {
    let service = web(s);
    let mut spec = service.spec.clone();
    spec.preferences = texts.iter().map(|t| parse_preference(t).unwrap()).collect();
    let (id, version) = (service.id.clone(), service.version);
    apply(
        s,
        Command::UpdateService {
            id,
            version,
            spec,
            rollback: false,
            at_ms: 0,
        },
    );
}

fn zoned(id: &str, zone: &str) -> Node {
    with_labels(node(id), &[("zone", zone)])
}

#[test]
fn six_tasks_go_three_and_three_over_zones_of_one_and_two_nodes() {
    let mut s = cluster([zoned("n1", "a"), zoned("n2", "b"), zoned("n3", "b")]);
    prefer(&mut s, &["spread=node.labels.zone"]);
    assert_eq!(
        shares(&s, &[], None, 6),
        map(&[("n1", 3), ("n2", 2), ("n3", 1)])
    );
    // Without the preference the nodes share evenly instead.
    prefer(&mut s, &[]);
    assert_eq!(
        shares(&s, &[], None, 6),
        map(&[("n1", 2), ("n2", 2), ("n3", 2)])
    );
}

#[test]
fn zones_take_turns_so_a_short_call_stays_balanced() {
    let mut s = cluster([zoned("n1", "a"), zoned("n2", "b"), zoned("n3", "b")]);
    prefer(&mut s, &["spread=node.labels.zone"]);
    let placed: Vec<String> = schedule(&s, web(&s), &[], None, &pending(4))
        .into_iter()
        .map(|p| p.result.unwrap().to_string())
        .collect();
    assert_eq!(placed, ["n1", "n2", "n1", "n3"]);
}

#[test]
fn nodes_without_the_label_are_a_group_of_their_own() {
    let mut s = cluster([zoned("n1", "a"), zoned("n2", "b"), node("n3"), node("n4")]);
    prefer(&mut s, &["spread=node.labels.zone"]);
    assert_eq!(
        shares(&s, &[], None, 6),
        map(&[("n1", 2), ("n2", 2), ("n3", 1), ("n4", 1)])
    );
}

#[test]
fn new_tasks_even_out_the_zones_first() {
    let mut s = cluster([zoned("n1", "a"), zoned("n2", "b"), zoned("n3", "b")]);
    prefer(&mut s, &["spread=node.labels.zone"]);
    for i in 0..3 {
        add_task(&mut s, &format!("t{i}"), "s1", "n1", TaskState::Running);
    }
    // Tasks of other services do not count toward the zones.
    add_task(&mut s, "o1", "s2", "n2", TaskState::Running);
    assert_eq!(shares(&s, &[], None, 3), map(&[("n2", 1), ("n3", 2)]));
    assert_eq!(
        shares(&s, &[], None, 5),
        map(&[("n1", 1), ("n2", 2), ("n3", 2)])
    );
}

#[test]
fn tasks_on_nodes_that_take_none_still_count_for_their_zone() {
    let mut s = cluster([
        with_availability(zoned("n1", "a"), Availability::Pause),
        zoned("n2", "a"),
        zoned("n3", "b"),
    ]);
    prefer(&mut s, &["spread=node.labels.zone"]);
    add_task(&mut s, "t1", "s1", "n1", TaskState::Running);
    add_task(&mut s, "t2", "s1", "n1", TaskState::Running);
    assert_eq!(shares(&s, &[], None, 4), map(&[("n2", 1), ("n3", 3)]));
}

#[test]
fn a_full_zone_leaves_its_share_to_the_others() {
    let mut s = cluster([zoned("n1", "a"), zoned("n2", "b"), zoned("n3", "b")]);
    prefer(&mut s, &["spread=node.labels.zone"]);
    assert_eq!(
        shares(&s, &[], Some(1), 3),
        map(&[("n1", 1), ("n2", 1), ("n3", 1)])
    );
    let placements = schedule(&s, web(&s), &[], Some(1), &pending(4));
    let err = placements[3].result.clone().unwrap_err();
    assert!(
        err.rejected
            .iter()
            .all(|r| r.reason == Rejection::MaxReplicas(1)),
        "{err}"
    );
    // A zone whose nodes all fail the filters is full from the start.
    let cons = constraints(&["node.id!=n1"]);
    assert_eq!(shares(&s, &cons, None, 4), map(&[("n2", 2), ("n3", 2)]));
    let mut s = cluster([
        with_availability(zoned("n1", "a"), Availability::Drain),
        zoned("n2", "b"),
    ]);
    prefer(&mut s, &["spread=node.labels.zone"]);
    assert_eq!(shares(&s, &[], None, 3), map(&[("n2", 3)]));
}

#[test]
fn several_preferences_nest_in_order() {
    let at =
        |id: &str, zone: &str, rack: &str| with_labels(node(id), &[("zone", zone), ("rack", rack)]);
    let mut s = cluster([
        at("n1", "a", "r1"),
        at("n2", "a", "r2"),
        at("n3", "a", "r2"),
        at("n4", "b", "r1"),
    ]);
    prefer(
        &mut s,
        &["spread=node.labels.zone", "spread=node.labels.rack"],
    );
    assert_eq!(
        shares(&s, &[], None, 8),
        map(&[("n1", 2), ("n2", 1), ("n3", 1), ("n4", 4)])
    );
    // The other order: racks first, then zones within each rack.
    prefer(
        &mut s,
        &["spread=node.labels.rack", "spread=node.labels.zone"],
    );
    assert_eq!(
        shares(&s, &[], None, 8),
        map(&[("n1", 2), ("n2", 2), ("n3", 2), ("n4", 2)])
    );
}

#[test]
fn label_prefixes_are_case_insensitive_and_label_names_are_not() {
    let mut s = cluster([zoned("n1", "a"), zoned("n2", "b"), zoned("n3", "b")]);
    prefer(&mut s, &["spread=Node.Labels.zone"]);
    assert_eq!(shares(&s, &[], None, 2), map(&[("n1", 1), ("n2", 1)]));
    // No node has `Zone`: one group, spread as without preferences.
    prefer(&mut s, &["spread=node.labels.Zone"]);
    assert_eq!(
        shares(&s, &[], None, 3),
        map(&[("n1", 1), ("n2", 1), ("n3", 1)])
    );
}

#[test]
fn preference_text_parses_or_says_what_to_write() {
    assert_eq!(
        parse_preference("spread=node.labels.zone").unwrap(),
        PlacementPreference::Spread("node.labels.zone".into())
    );
    assert_eq!(
        parse_preference("spread=node.labels.zone")
            .unwrap()
            .to_string(),
        "spread=node.labels.zone"
    );
    for (bad, says) in [
        ("foo", "not STRATEGY=ARG"),
        ("spread", "not STRATEGY=ARG"),
        ("pack=node.labels.zone", "unknown strategy `pack`"),
        ("spread=", "nothing to spread over"),
        ("spread=node.hostname", "cannot spread over `node.hostname`"),
        ("spread=engine.labels.os", "only node labels"),
        ("spread=node.labels.", "missing label name"),
        ("spread=node.labels.a b", "invalid label name `a b`"),
    ] {
        let e = parse_preference(bad).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("placement preference `{bad}`: ")) && text.contains(says),
            "{bad}: {text}"
        );
    }
}

#[test]
fn specs_from_before_preferences_decode_without_any() {
    let spec = r#"{"name":"web","mode":{"replicated":{"replicas":2}},"command":["true"],
        "env":[],"networks":[],"ports":[],"endpoint_mode":"vip","constraints":[]}"#;
    let spec: ServiceSpec = serde_json::from_str(spec).unwrap();
    assert!(spec.preferences.is_empty());
    let json = serde_json::to_string(&spec).unwrap();
    assert!(!json.contains("preferences"), "{json}");
    let with = ServiceSpec {
        preferences: vec![parse_preference("spread=node.labels.zone").unwrap()],
        ..spec
    };
    let json = serde_json::to_string(&with).unwrap();
    assert!(
        json.contains(r#""preferences":[{"spread":"node.labels.zone"}]"#),
        "{json}"
    );
    assert_eq!(serde_json::from_str::<ServiceSpec>(&json).unwrap(), with);
    // Preferences steer new tasks only: changing them replaces none.
    assert!(!with.changes_tasks(&ServiceSpec {
        preferences: vec![],
        ..with.clone()
    }));
}
