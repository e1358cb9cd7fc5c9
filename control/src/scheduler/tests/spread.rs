//! Spread: fewest of the service's tasks first, then fewest tasks, then
//! lowest id; placements of one call count for the next.

use super::*;

#[test]
fn five_replicas_over_three_nodes_go_two_two_one() {
    let s = cluster(nodes(3));
    let placed: Vec<String> = schedule(&s, web(&s), &[], None, &pending(5))
        .into_iter()
        .map(|p| p.result.unwrap().to_string())
        .collect();
    assert_eq!(placed, ["n1", "n2", "n3", "n1", "n2"]);
}

#[test]
fn new_tasks_even_out_an_existing_distribution() {
    let mut s = cluster(nodes(3));
    for (i, n) in ["n1", "n1", "n1", "n2"].iter().enumerate() {
        add_task(&mut s, &format!("t{i}"), "s1", n, TaskState::Running);
    }
    assert_eq!(shares(&s, &[], None, 3), map(&[("n2", 1), ("n3", 2)]));
}

#[test]
fn ties_go_to_the_node_with_fewest_tasks_overall() {
    let mut s = cluster(nodes(3));
    add_task(&mut s, "t1", "s2", "n1", TaskState::Running);
    add_task(&mut s, "t2", "s2", "n2", TaskState::Running);
    add_task(&mut s, "t3", "s2", "n2", TaskState::Starting);
    let placed: Vec<String> = schedule(&s, web(&s), &[], None, &pending(3))
        .into_iter()
        .map(|p| p.result.unwrap().to_string())
        .collect();
    assert_eq!(placed, ["n3", "n1", "n2"]);
}

#[test]
fn finished_and_stopping_tasks_do_not_count() {
    let mut s = cluster(nodes(2));
    add_task(&mut s, "t1", "s1", "n1", TaskState::Complete);
    add_task(&mut s, "t2", "s1", "n1", TaskState::Failed);
    add_task(&mut s, "t3", "s1", "n1", TaskState::Running);
    update_task(
        &mut s,
        "t3",
        TaskUpdate {
            desired: Some(DesiredState::Shutdown),
            ..Default::default()
        },
    );
    add_task(&mut s, "t4", "s1", "n2", TaskState::Running);
    assert_eq!(shares(&s, &[], None, 1), map(&[("n1", 1)]));
}

#[test]
fn the_same_input_gives_the_same_placements() {
    let mut s = cluster(nodes(4));
    add_task(&mut s, "t1", "s1", "n3", TaskState::Running);
    add_task(&mut s, "t2", "s2", "n1", TaskState::Running);
    let cons = constraints(&["node.role==worker"]);
    let first = schedule(&s, web(&s), &cons, Some(2), &pending(9));
    for _ in 0..5 {
        assert_eq!(
            schedule(&s.clone(), web(&s), &cons, Some(2), &pending(9)),
            first
        );
    }
    assert!(first[..7].iter().all(|p| p.result.is_ok()));
    assert!(first[7..].iter().all(|p| p.result.is_err()));
}

#[test]
fn no_tasks_no_placements() {
    let s = cluster(nodes(2));
    assert!(schedule(&s, web(&s), &[], None, &[]).is_empty());
}
