//! Placement through the scheduler: explanations for tasks that fit
//! nowhere, no repeated commands, the max-replicas limit, and creations
//! the state refuses.

use super::*;
use crate::ids::NetworkId;
use crate::state::NetworkSpec;

fn pending_error(s: &ClusterState, slot: u64) -> String {
    let t = in_slot(s, slot);
    assert_eq!((t.node.as_ref(), t.state), (None, TaskState::Pending));
    t.error.clone().unwrap()
}

#[test]
fn an_unplaceable_task_carries_the_schedulers_explanation() {
    let mut s = cluster(2, replicated(1));
    set_availability(&mut s, "n1", Availability::Drain);
    set_status(&mut s, "n2", NodeStatus::Down);
    let ids = &mut counter();
    round(&mut s, ids);
    assert_eq!(
        pending_error(&s, 1),
        "no suitable node (1 node not available: down; 1 node not available: drained)"
    );

    // A different reason is a different explanation.
    set_status(&mut s, "n2", NodeStatus::Unknown);
    let cmds = round(&mut s, ids);
    assert_eq!(cmds.len(), 1);
    assert_eq!(
        pending_error(&s, 1),
        "no suitable node (1 node not available: unknown status; 1 node not available: drained)"
    );

    // A node that becomes available takes it.
    set_status(&mut s, "n2", NodeStatus::Ready);
    round(&mut s, ids);
    let t = in_slot(&s, 1);
    assert_eq!(
        (t.node.clone(), t.state),
        (Some(nid("n2")), TaskState::Assigned)
    );
}

#[test]
fn an_empty_swarm_says_so() {
    let mut s = cluster(0, replicated(2));
    round(&mut s, &mut counter());
    assert_eq!(
        pending_error(&s, 1),
        "no suitable node (the swarm has no nodes)"
    );
    assert_eq!(
        pending_error(&s, 2),
        "no suitable node (the swarm has no nodes)"
    );
}

#[test]
fn invalid_constraints_are_the_explanation() {
    let mut s = cluster(1, replicated(1));
    respec(&mut s, spec("web", replicated(1), &["node.zone==a"]));
    round(&mut s, &mut counter());
    assert!(
        pending_error(&s, 1).starts_with("constraint `node.zone==a`: unknown field"),
        "{}",
        pending_error(&s, 1)
    );
}

#[test]
fn max_replicas_limits_each_node_and_explains_the_rest() {
    let mut s = cluster(2, replicated(5));
    let mut limited = spec("web", replicated(5), &[]);
    limited.max_replicas = 2;
    respec(&mut s, limited);
    round_with(&mut s, &Options::default(), &mut counter());
    assert_eq!(per_node(&s), map(&[("-", 1), ("n1", 2), ("n2", 2)]));
    assert_eq!(
        pending_error(&s, 5),
        "no suitable node (2 nodes: max replicas per node (2))"
    );
}

#[test]
fn a_network_out_of_addresses_refuses_creations_until_addresses_are_free() {
    let mut s = cluster(2, replicated(1));
    apply(
        &mut s,
        Command::CreateNetwork(NetworkSpec {
            id: NetworkId::new("net1").unwrap(),
            name: "small".into(),
            subnet: Some("10.9.0.0/29".parse().unwrap()),
            vni: None,
            attachable: false,
            ingress: false,
            encrypted: false,
            labels: Default::default(),
        }),
    );
    let mut wide = spec("web", replicated(6), &[]);
    wide.networks = vec![NetworkId::new("net1").unwrap()];
    respec(&mut s, wide);

    // Four task addresses: the gateway, the broadcast and the VIP take
    // the rest of the /29.
    let done = reconcile(&s, &Options::default(), T0, &mut counter()).unwrap();
    assert_eq!(done.refused.len(), 2);
    for refused in &done.refused {
        assert!(matches!(
            refused.command,
            Command::CreateTask {
                slot: Some(5 | 6),
                ..
            }
        ));
        assert!(matches!(refused.error, StateError::NetworkFull { .. }));
    }
    for cmd in done.commands {
        apply(&mut s, cmd);
    }
    assert_eq!(live(&s).len(), 4);
    assert!(live(&s).iter().all(|t| t.node.is_some()));
}
