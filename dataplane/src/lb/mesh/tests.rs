use std::net::{Ipv4Addr, SocketAddrV4};

use super::*;
use crate::lb::BackendSet;
use crate::lb::nat::Side;
use crate::lb::tests::set_without;
use crate::tables::EndpointState;

const SECOND: u64 = 1000;
const SYN: TcpFlags = TcpFlags::SYN;
const SYN_ACK: TcpFlags = TcpFlags(0x12);
const ACK: TcpFlags = TcpFlags::ACK;
const MESH: Ipv4Addr = Ipv4Addr::new(169, 254, 77, 1);
const PUBLISHED: u16 = 8080;
const TARGET: u16 = 80;
const NODE_A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const NODE_B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

fn set(states: &[(u8, EndpointState)]) -> BackendSet {
    set_without(states, &[])
}

/// Client flow `n` as the entry node's kernel hands it over.
fn client(n: u16) -> FlowKey {
    FlowKey {
        proto: Protocol::Tcp,
        src: SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 9), 50_000 + n),
        dst: SocketAddrV4::new(MESH, PUBLISHED),
    }
}

fn flows() -> MeshFlows {
    MeshFlows::new(MESH, 1024).expect("flows")
}

/// The client flow after the entry node's translation.
fn translated(key: &FlowKey, e: &Entered) -> FlowKey {
    assert_eq!(e.nat.side, Side::Dst);
    FlowKey {
        dst: e.nat.to,
        ..*key
    }
}

#[test]
fn a_client_reaches_a_backend_and_its_reply_gets_the_published_address_back() {
    // Entry node A, backend node B, each with its own tables.
    let (mut a, mut b, s) = (flows(), flows(), set(&[]));
    let key = client(1);
    let e = a.enter(&s, &key, SYN, TARGET, 0).expect("a backend");
    assert!(e.opened);
    assert_eq!(e.nat.to, SocketAddrV4::new(e.backend, TARGET));
    let there = translated(&key, &e);
    assert_eq!(there.src, key.src, "the backend sees the client's address");

    // B learns the entry node, and routes the reply back to it.
    b.note_entry(&there, SYN, NODE_A, 0);
    let reply = there.reversed();
    assert_eq!(b.entry_of(&reply, SYN_ACK, 1), Some(NODE_A));

    // A gives the reply the published address back.
    let nat = a.exit(&reply, SYN_ACK, 1).expect("a mesh reply");
    assert_eq!(nat, Nat::src(SocketAddrV4::new(MESH, PUBLISHED)));

    // Flows nobody entered are no mesh replies.
    let stranger = FlowKey {
        dst: SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 10), 1234),
        ..reply
    };
    assert_eq!(b.entry_of(&stranger, ACK, 1), None);
    assert_eq!(a.exit(&stranger, ACK, 1), None);
}

#[test]
fn the_latest_entry_node_wins_when_a_client_port_comes_back_another_way() {
    let mut b = flows();
    let there = FlowKey {
        dst: SocketAddrV4::new(Ipv4Addr::new(10, 10, 0, 2), TARGET),
        ..client(1)
    };
    b.note_entry(&there, SYN, NODE_A, 0);
    b.note_entry(&there, SYN, NODE_B, SECOND);
    assert_eq!(b.entry_of(&there.reversed(), SYN_ACK, SECOND), Some(NODE_B));
}

#[test]
fn a_flow_keeps_its_backend_while_it_drains_and_a_removed_ones_is_repicked() {
    let mut a = flows();
    let key = client(1);
    let e = a.enter(&set(&[]), &key, SYN, TARGET, 0).expect("new");
    let last = e.backend.octets()[3];
    let draining = set(&[(last, EndpointState::Draining)]);
    let kept = a.enter(&draining, &key, ACK, TARGET, SECOND).expect("kept");
    assert_eq!((kept.backend, kept.opened), (e.backend, false));

    let down = set(&[(last, EndpointState::Down)]);
    let moved = a
        .enter(&down, &key, ACK, TARGET, 2 * SECOND)
        .expect("moved");
    assert_ne!(moved.backend, e.backend);
    assert!(moved.opened);
    // The old backend's replies are no longer this flow's; the new one's are.
    let old_reply = translated(&key, &e).reversed();
    assert_eq!(a.exit(&old_reply, ACK, 2 * SECOND), None);
    let new_reply = translated(&key, &moved).reversed();
    assert!(a.exit(&new_reply, TcpFlags::RST, 2 * SECOND).is_some());
}

#[test]
fn published_ports_are_forgotten_with_their_client_flows() {
    let mut a = flows();
    let key = client(1);
    let e = a.enter(&set(&[]), &key, SYN, TARGET, 0).expect("new");
    let reply = translated(&key, &e).reversed();
    // An unanswered SYN lives 120 s (nf_conntrack_tcp_timeout_syn_sent).
    a.expire(120 * SECOND, usize::MAX);
    assert!(a.exit(&reply, SYN_ACK, 120 * SECOND).is_some());
    a.expire(240 * SECOND + 1, usize::MAX);
    assert_eq!(a.len(), [0, 0]);
    assert_eq!(a.exit(&reply, SYN_ACK, 240 * SECOND + 1), None);
}

#[test]
fn return_routes_expire_at_the_linux_timeouts() {
    let mut b = flows();
    let there = FlowKey {
        proto: Protocol::Udp,
        dst: SocketAddrV4::new(Ipv4Addr::new(10, 10, 0, 2), 53),
        ..client(1)
    };
    b.note_entry(&there, TcpFlags::NONE, NODE_A, 0);
    // Unreplied UDP: 30 s.
    b.expire(30 * SECOND + 1, usize::MAX);
    assert_eq!(
        b.entry_of(&there.reversed(), TcpFlags::NONE, 30 * SECOND + 1),
        None
    );
    b.note_entry(&there, TcpFlags::NONE, NODE_A, 0);
    assert!(b.entry_of(&there.reversed(), TcpFlags::NONE, 0).is_some());
    // Answered UDP: 120 s from the last packet.
    b.expire(120 * SECOND, usize::MAX);
    assert_eq!(b.len(), [0, 1]);
    b.expire(120 * SECOND + 1, usize::MAX);
    assert_eq!(b.len(), [0, 0]);
}

#[test]
fn tracked_lists_live_client_flows_by_published_port() {
    let mut a = flows();
    let e = a.enter(&set(&[]), &client(1), SYN, TARGET, 0).expect("new");
    let listed: Vec<_> = a.tracked(0).collect();
    assert_eq!(listed, vec![(Protocol::Tcp, PUBLISHED, e.backend)]);
}
