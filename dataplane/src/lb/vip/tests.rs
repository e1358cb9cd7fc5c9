use std::net::{Ipv4Addr, SocketAddrV4};

use super::*;
use crate::lb::BackendSet;
use crate::lb::tests::set_without as set;
use crate::tables::EndpointState;

const SECOND: u64 = 1000;
const SYN: TcpFlags = TcpFlags::SYN;
const SYN_ACK: TcpFlags = TcpFlags(0x12);
const ACK: TcpFlags = TcpFlags::ACK;
const FIN_ACK: TcpFlags = TcpFlags(0x11);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 100);

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 10, 0, last)
}

fn client(n: u16) -> FlowKey {
    FlowKey {
        proto: Protocol::Tcp,
        src: SocketAddrV4::new(Ipv4Addr::new(10, 10, 0, 50), 40_000 + n),
        dst: SocketAddrV4::new(VIP, 80),
    }
}

/// The reply a backend sends for client flow `key`.
fn reply(key: &FlowKey, backend: Ipv4Addr) -> FlowKey {
    FlowKey {
        proto: key.proto,
        src: SocketAddrV4::new(backend, key.dst.port()),
        dst: key.src,
    }
}

fn flows() -> VipFlows {
    VipFlows::new(1024).expect("flows")
}

/// Opens connection `n` with a full handshake at `now`; its backend.
fn connect(f: &mut VipFlows, s: &BackendSet, n: u16, now: u64) -> Ipv4Addr {
    let key = client(n);
    let b = f.balance(s, &key, SYN, now).expect("a backend");
    assert!(b.opened);
    assert!(f.reverse(&reply(&key, b.backend), SYN_ACK, now).is_some());
    let again = f.balance(s, &key, ACK, now).expect("kept");
    assert_eq!(again.backend, b.backend);
    assert!(!again.opened);
    b.backend
}

#[test]
fn the_destination_becomes_the_backend_and_replies_get_the_vip_back() {
    let (mut f, s) = (flows(), set(&[], &[]));
    let key = client(1);
    let b = f.balance(&s, &key, SYN, 0).expect("a backend");
    assert_eq!(b.nat, Nat::dst(SocketAddrV4::new(b.backend, 80)));
    let back = f
        .reverse(&reply(&key, b.backend), SYN_ACK, 1)
        .expect("a reply");
    assert_eq!(back.vip, VIP);
    assert_eq!(back.nat, Nat::src(SocketAddrV4::new(VIP, 80)));
    // A frame of no tracked flow (another task talking to the backend
    // directly) passes unchanged.
    let direct = FlowKey {
        dst: SocketAddrV4::new(ip(60), 5555),
        ..reply(&key, b.backend)
    };
    assert_eq!(f.reverse(&direct, ACK, 1), None);
}

#[test]
fn a_flow_keeps_its_backend_while_it_drains() {
    let mut f = flows();
    let backend = connect(&mut f, &set(&[], &[]), 1, 0);
    let last = backend.octets()[3];
    let draining = set(&[(last, EndpointState::Draining)], &[]);
    let kept = f.balance(&draining, &client(1), ACK, SECOND).expect("kept");
    assert_eq!((kept.backend, kept.opened), (backend, false));
    assert!(
        f.reverse(&reply(&client(1), backend), ACK, SECOND)
            .is_some()
    );
    // New flows avoid the draining backend.
    for n in 100..200 {
        let b = f.balance(&draining, &client(n), SYN, SECOND).expect("new");
        assert_ne!(b.backend, backend);
    }
}

#[test]
fn a_removed_backends_flow_is_repicked_and_its_old_reply_forgotten() {
    let mut f = flows();
    let backend = connect(&mut f, &set(&[], &[]), 1, 0);
    let without = set(&[], &[backend.octets()[3]]);
    let moved = f
        .balance(&without, &client(1), ACK, SECOND)
        .expect("repicked");
    assert_ne!(moved.backend, backend);
    assert!(moved.opened);
    assert_eq!(f.reverse(&reply(&client(1), backend), ACK, SECOND), None);
    assert!(
        f.reverse(&reply(&client(1), moved.backend), TcpFlags::RST, SECOND)
            .is_some(),
        "the new backend's reset reaches the client as the VIP"
    );
}

#[test]
fn a_syn_on_a_closing_tuple_picks_afresh() {
    let mut f = flows();
    let backend = connect(&mut f, &set(&[], &[]), 1, 0);
    let last = backend.octets()[3];
    f.balance(&set(&[], &[]), &client(1), FIN_ACK, SECOND);
    f.reverse(&reply(&client(1), backend), FIN_ACK, SECOND);
    // The backend drains meanwhile: a new connection on the same ports must
    // not stick to it.
    let draining = set(&[(last, EndpointState::Draining)], &[]);
    let again = f
        .balance(&draining, &client(1), SYN, 2 * SECOND)
        .expect("new");
    assert!(again.opened);
    assert_ne!(again.backend, backend);
}

#[test]
fn an_idle_established_flow_keeps_both_translations_past_a_minute() {
    let mut f = flows();
    let s = set(&[], &[]);
    let backend = connect(&mut f, &s, 1, 0);
    let idle = 3600 * SECOND;
    f.expire(idle, usize::MAX);
    assert_eq!(f.len(), [1, 1]);
    let kept = f.balance(&s, &client(1), ACK, idle).expect("kept");
    assert_eq!((kept.backend, kept.opened), (backend, false));
    assert!(f.reverse(&reply(&client(1), backend), ACK, idle).is_some());
}

#[test]
fn entries_expire_at_the_linux_timeouts() {
    let s = set(&[], &[]);
    // A SYN never answered: nf_conntrack_tcp_timeout_syn_sent, 120 s.
    let mut f = flows();
    f.balance(&s, &client(1), SYN, 0);
    f.expire(120 * SECOND, usize::MAX);
    assert_eq!(f.len(), [1, 1]);
    f.expire(120 * SECOND + 1, usize::MAX);
    assert_eq!(f.len(), [0, 0]);
    // UDP answered once: nf_conntrack_udp_timeout_stream, 120 s.
    let mut f = flows();
    let udp = FlowKey {
        proto: Protocol::Udp,
        ..client(2)
    };
    let b = f.balance(&s, &udp, TcpFlags::NONE, 0).expect("udp");
    f.reverse(&reply(&udp, b.backend), TcpFlags::NONE, 0)
        .expect("reply");
    f.expire(120 * SECOND, usize::MAX);
    assert_eq!(f.len(), [1, 1]);
    f.expire(120 * SECOND + 1, usize::MAX);
    assert_eq!(f.len(), [0, 0]);
    // A closed connection lingers for TIME_WAIT, 120 s, then goes.
    let mut f = flows();
    let backend = connect(&mut f, &s, 3, 0);
    f.balance(&s, &client(3), FIN_ACK, 0);
    f.reverse(&reply(&client(3), backend), FIN_ACK, 0);
    f.expire(120 * SECOND + 1, usize::MAX);
    assert_eq!(f.len(), [0, 0]);
}

#[test]
fn no_active_backend_means_no_translation() {
    let mut f = flows();
    let none = set(
        &[
            (2, EndpointState::Draining),
            (3, EndpointState::Down),
            (4, EndpointState::Draining),
        ],
        &[],
    );
    assert_eq!(f.balance(&none, &client(1), SYN, 0), None);
    assert_eq!(f.len(), [0, 0]);
}

#[test]
fn tracked_lists_live_client_flows_by_vip_and_backend() {
    let mut f = flows();
    let s = set(&[], &[]);
    let backend = connect(&mut f, &s, 1, 0);
    let listed: Vec<_> = f.tracked(0).collect();
    assert_eq!(
        listed,
        vec![(Protocol::Tcp, SocketAddrV4::new(VIP, 80), backend)]
    );
}
