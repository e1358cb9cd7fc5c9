//! The leader's duties, as pure functions of what it knows: which node
//! statuses to change after gossip saw nodes come and go, which Raft
//! voters no longer belong (demoted, left or removed), and when the gossip
//! key is due for rotation. The leader's loop applies their answers;
//! nothing here does I/O.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::state::{ClusterState, Command, NodeStatus, NodeUpdate};
use crate::{NodeId, Role};

/// The status updates that bring the state in line with gossip.
///
/// `alive` holds the nodes gossip sees alive; the leader itself always
/// is. A node not seen alive is marked down only when `may_mark_down`
/// says so: a leader that has just taken over gives gossip time to
/// converge first instead of declaring everyone it has not heard from yet
/// down, but it may mark down at once a node it saw alive and then lost.
pub fn status_updates(
    state: &ClusterState,
    me: &NodeId,
    alive: &BTreeSet<NodeId>,
    may_mark_down: &dyn Fn(&NodeId) -> bool,
) -> Vec<Command> {
    state
        .nodes()
        .values()
        .filter_map(|node| {
            let up = &node.id == me || alive.contains(&node.id);
            let status = match (up, node.status) {
                (true, NodeStatus::Ready) => return None,
                (true, _) => NodeStatus::Ready,
                (false, NodeStatus::Down) => return None,
                (false, _) if may_mark_down(&node.id) => NodeStatus::Down,
                (false, _) => return None,
            };
            Some(Command::UpdateNode {
                id: node.id.clone(),
                update: NodeUpdate {
                    status: Some(status),
                    ..NodeUpdate::default()
                },
            })
        })
        .collect()
}

/// How long a gossip key is the newest before the leader replaces it, as
/// Swarm rotates its gossip keys every 12 hours.
pub const GOSSIP_KEY_ROTATION: Duration = Duration::from_secs(12 * 60 * 60);

/// Whether the leader should make a new gossip key at `now_ms`: there is
/// none yet (a new swarm, or a state from before sealed gossip), or the
/// newest is older than [`GOSSIP_KEY_ROTATION`].
pub fn gossip_key_due(state: &ClusterState, now_ms: u64) -> bool {
    let every = u64::try_from(GOSSIP_KEY_ROTATION.as_millis()).unwrap_or(u64::MAX);
    state
        .gossip_keys()
        .first()
        .is_none_or(|k| k.created_ms.saturating_add(every) <= now_ms)
}

/// Whether `cmd` marks a node down (which the leader confirms with a
/// second signal before it proposes it).
pub fn marks_down(cmd: &Command) -> Option<&NodeId> {
    match cmd {
        Command::UpdateNode {
            id,
            update:
                NodeUpdate {
                    status: Some(NodeStatus::Down),
                    ..
                },
        } => Some(id),
        _ => None,
    }
}

/// The voters to remove: those the state lists as workers (demoted, or
/// left). A voter missing from the state is left alone: nodes enter Raft
/// only after the state has them, except the first manager for the
/// moment between `swarm init` starting Raft and recording it, and a
/// manager is always demoted before it can be removed. The leader removes
/// itself last, so that it can still commit the removal of the others.
pub fn stale_voters(state: &ClusterState, me: &NodeId, voters: &BTreeSet<NodeId>) -> Vec<NodeId> {
    let mut stale: Vec<NodeId> = voters
        .iter()
        .filter(|v| state.node(v).is_some_and(|n| n.role != Role::Manager))
        .cloned()
        .collect();
    stale.sort_by_key(|v| v == me);
    stale
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Node;
    use crate::testkit::{self, with_status};

    fn node(id: &str, role: Role, status: NodeStatus) -> Node {
        with_status(testkit::node(id, role), status)
    }

    fn state(nodes: &[Node]) -> ClusterState {
        let mut s = ClusterState::new();
        for n in nodes {
            s.apply(Command::AddNode(n.clone())).unwrap();
        }
        s
    }

    fn ids(v: &[&str]) -> BTreeSet<NodeId> {
        v.iter().map(|s| NodeId::new(*s).unwrap()).collect()
    }

    fn statuses(cmds: &[Command]) -> Vec<(String, NodeStatus)> {
        cmds.iter()
            .map(|c| match c {
                Command::UpdateNode { id, update } => (id.to_string(), update.status.unwrap()),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn gossip_liveness_becomes_status() {
        let s = state(&[
            node("m1", Role::Manager, NodeStatus::Unknown),
            node("w1", Role::Worker, NodeStatus::Unknown),
            node("w2", Role::Worker, NodeStatus::Ready),
            node("w3", Role::Worker, NodeStatus::Down),
        ]);
        let me = NodeId::new("m1").unwrap();
        let cmds = status_updates(&s, &me, &ids(&["w1", "w3"]), &|_| true);
        assert_eq!(
            statuses(&cmds),
            vec![
                ("m1".into(), NodeStatus::Ready),
                ("w1".into(), NodeStatus::Ready),
                ("w2".into(), NodeStatus::Down),
                ("w3".into(), NodeStatus::Ready),
            ]
        );
        // Applied, they leave nothing to do.
        let mut s = s;
        for c in cmds {
            s.apply(c).unwrap();
        }
        assert!(status_updates(&s, &me, &ids(&["w1", "w3"]), &|_| true).is_empty());
    }

    #[test]
    fn a_new_leader_does_not_mark_unheard_nodes_down() {
        let s = state(&[
            node("m1", Role::Manager, NodeStatus::Ready),
            node("w1", Role::Worker, NodeStatus::Ready),
            node("w2", Role::Worker, NodeStatus::Unknown),
        ]);
        let me = NodeId::new("m1").unwrap();
        let cmds = status_updates(&s, &me, &ids(&["w2"]), &|_| false);
        assert_eq!(statuses(&cmds), vec![("w2".into(), NodeStatus::Ready)]);
        // One it saw alive and lost goes down at once.
        let seen = ids(&["w1"]);
        let cmds = status_updates(&s, &me, &ids(&["w2"]), &|n| seen.contains(n));
        assert_eq!(
            statuses(&cmds),
            vec![
                ("w1".into(), NodeStatus::Down),
                ("w2".into(), NodeStatus::Ready)
            ]
        );
    }

    #[test]
    fn demoted_voters_go_and_the_leader_last() {
        let s = state(&[
            node("m1", Role::Worker, NodeStatus::Ready),
            node("m2", Role::Manager, NodeStatus::Ready),
            node("m3", Role::Worker, NodeStatus::Ready),
        ]);
        let me = NodeId::new("m1").unwrap();
        let stale = stale_voters(&s, &me, &ids(&["m1", "m2", "m3", "gone"]));
        let names: Vec<&str> = stale.iter().map(NodeId::as_str).collect();
        assert_eq!(names, ["m3", "m1"]);
    }

    #[test]
    fn down_updates_are_told_apart_from_the_others() {
        let s = state(&[
            node("m1", Role::Manager, NodeStatus::Ready),
            node("w1", Role::Worker, NodeStatus::Ready),
            node("w2", Role::Worker, NodeStatus::Unknown),
        ]);
        let me = NodeId::new("m1").unwrap();
        let cmds = status_updates(&s, &me, &ids(&["w2"]), &|_| true);
        let down: Vec<&str> = cmds
            .iter()
            .filter_map(marks_down)
            .map(NodeId::as_str)
            .collect();
        assert_eq!(down, ["w1"]);
    }

    #[test]
    fn a_gossip_key_is_due_when_there_is_none_and_every_twelve_hours() {
        let mut s = state(&[]);
        assert!(gossip_key_due(&s, 0));
        s.apply(Command::RotateGossipKey {
            key: crate::state::SecretBytes(vec![1; 32]),
            at_ms: 1_000,
        })
        .unwrap();
        let every = GOSSIP_KEY_ROTATION.as_millis() as u64;
        assert!(!gossip_key_due(&s, 1_000));
        assert!(!gossip_key_due(&s, 1_000 + every - 1));
        assert!(gossip_key_due(&s, 1_000 + every));
    }
}
