//! Who may call what, decided against this manager's copy of the cluster
//! state and its Raft membership, not the certificate alone: a certificate
//! lives for months, a role changes in a second.
//!
//! - every call but `Join` and `Ping` needs a node that is still in the
//!   state, calling with the certificate it was issued last (each issue
//!   records the serial, so a renewal revokes the one before); a spent
//!   certificate is refused as `unauthenticated`, so that the node, which
//!   may be installing its new one this very moment, or may have reached a
//!   manager that has not applied the renewal yet, tries again;
//! - manager calls also need the node to be a manager in the state now;
//! - Raft messages need a voter or learner of the Raft membership.

use tonic::Status;

use crate::Role;
use crate::api::Peer as Caller;
use crate::consensus::Peer;
use crate::state::ClusterState;

/// What a call needs of its caller, beyond a certificate of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Need {
    /// A node of the swarm.
    Member,
    /// A manager of the swarm; completes "only managers may …".
    Manager(&'static str),
}

/// Whether `caller` may make a call that needs `need`, by `state`.
pub(super) fn check(state: &ClusterState, caller: &Caller, need: Need) -> Result<(), Status> {
    let Some(node) = state.node(&caller.node_id) else {
        return Err(Status::permission_denied(format!(
            "node `{}` is not a member of this swarm (it was removed, or never joined); join \
             again with a token",
            caller.node_id
        )));
    };
    if let Some(cert) = &node.cert
        && cert.serial != caller.serial
    {
        return Err(Status::unauthenticated(format!(
            "the certificate of node `{}` with serial {} was replaced by a newer one (serial {}); \
             only the newest is accepted",
            caller.node_id, caller.serial, cert.serial
        )));
    }
    if let Need::Manager(action) = need
        && (node.role != Role::Manager || caller.role != Role::Manager)
    {
        return Err(Status::permission_denied(format!(
            "node `{}` is a {} in the cluster state; only managers may {action}",
            caller.node_id, node.role
        )));
    }
    Ok(())
}

/// Whether `caller` may send Raft messages to a manager whose Raft
/// membership (voters and learners) is `members`. A manager that knows no
/// membership yet (it has just joined and waits for the leader's first
/// message) takes them from any manager certificate.
pub(super) fn check_raft(members: &[Peer], caller: &Caller) -> Result<(), Status> {
    if members.is_empty() || members.iter().any(|p| p.id == caller.node_id) {
        Ok(())
    } else {
        Err(Status::permission_denied(format!(
            "node `{}` is not a Raft voter or learner; only they may send Raft messages",
            caller.node_id
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{CertRecord, Command, NodeUpdate};
    use crate::testkit::{apply, node};
    use crate::{NodeId, Role};

    fn caller(id: &str, role: Role, serial: &str) -> Caller {
        Caller {
            node_id: NodeId::new(id).unwrap(),
            role,
            serial: serial.into(),
        }
    }

    fn issued(state: &mut ClusterState, id: &str, serial: &str) {
        apply(
            state,
            Command::UpdateNode {
                id: NodeId::new(id).unwrap(),
                update: NodeUpdate {
                    cert: Some(CertRecord {
                        serial: serial.into(),
                        not_after_ms: 1,
                        issuer: None,
                    }),
                    ..NodeUpdate::default()
                },
            },
        );
    }

    fn refused(r: Result<(), Status>, says: &str) {
        match r {
            Err(s) => {
                let code = if says == "replaced" {
                    tonic::Code::Unauthenticated
                } else {
                    tonic::Code::PermissionDenied
                };
                assert_eq!(s.code(), code, "{}", s.message());
                assert!(s.message().contains(says), "{}", s.message());
            }
            Ok(()) => panic!("allowed; expected a refusal saying `{says}`"),
        }
    }

    const WRITE: Need = Need::Manager("change the cluster state");

    #[test]
    fn the_state_decides_not_the_certificate() {
        let mut s = ClusterState::new();
        apply(&mut s, Command::AddNode(node("m1", Role::Manager)));
        apply(&mut s, Command::AddNode(node("m2", Role::Manager)));
        apply(&mut s, Command::AddNode(node("w1", Role::Worker)));
        issued(&mut s, "m2", "02");
        issued(&mut s, "w1", "0b");

        check(&s, &caller("m2", Role::Manager, "02"), WRITE).unwrap();
        check(&s, &caller("w1", Role::Worker, "0b"), Need::Member).unwrap();
        // A record without a serial (an older cluster) takes any.
        check(&s, &caller("m1", Role::Manager, "77"), WRITE).unwrap();

        refused(
            check(&s, &caller("w1", Role::Worker, "0b"), WRITE),
            "is a worker",
        );
        refused(
            check(&s, &caller("m2", Role::Manager, "01"), Need::Member),
            "replaced",
        );

        // m2 is demoted and renewed: its manager certificate is refused
        // twice over, and its new worker one only for manager calls.
        apply(
            &mut s,
            Command::UpdateNode {
                id: NodeId::new("m2").unwrap(),
                update: NodeUpdate {
                    role: Some(Role::Worker),
                    ..NodeUpdate::default()
                },
            },
        );
        refused(
            check(&s, &caller("m2", Role::Manager, "02"), WRITE),
            "is a worker",
        );
        issued(&mut s, "m2", "03");
        refused(
            check(&s, &caller("m2", Role::Manager, "02"), WRITE),
            "replaced",
        );
        refused(
            check(&s, &caller("m2", Role::Worker, "03"), WRITE),
            "worker",
        );
        check(&s, &caller("m2", Role::Worker, "03"), Need::Member).unwrap();

        // A removed node is refused everything.
        apply(
            &mut s,
            Command::RemoveNode {
                id: NodeId::new("w1").unwrap(),
                force: true,
            },
        );
        refused(
            check(&s, &caller("w1", Role::Worker, "0b"), Need::Member),
            "not a member",
        );
    }

    #[test]
    fn raft_messages_come_from_the_membership_once_there_is_one() {
        let peer = |id: &str| Peer {
            id: NodeId::new(id).unwrap(),
            addr: "198.18.0.1:2377".parse().unwrap(),
        };
        let m3 = caller("m3", Role::Manager, "03");
        check_raft(&[], &m3).unwrap();
        check_raft(&[peer("m1"), peer("m3")], &m3).unwrap();
        refused(
            check_raft(&[peer("m1"), peer("m2")], &m3),
            "not a Raft voter",
        );
    }
}
