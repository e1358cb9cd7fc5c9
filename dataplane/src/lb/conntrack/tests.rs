use std::net::SocketAddrV4;

use proptest::prelude::*;

use super::*;
use crate::wire::flow::Protocol;

const S: u64 = 1000;
const DAY: u64 = 86_400 * S;
const SYN: TcpFlags = TcpFlags::SYN;
const ACK: TcpFlags = TcpFlags::ACK;
const B1: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 2);
const B2: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 3);

fn key(proto: Protocol, n: u16) -> FlowKey {
    FlowKey {
        proto,
        src: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 10_000 + n),
        dst: SocketAddrV4::new(Ipv4Addr::new(10, 10, 0, 100), 80),
    }
}

fn tcp(n: u16) -> FlowKey {
    key(Protocol::Tcp, n)
}

fn udp(n: u16) -> FlowKey {
    key(Protocol::Udp, n)
}

/// Walks every list: they hold exactly the indexed nodes, each in the list
/// of its class, linked both ways, most recently used first.
fn check_invariants(ct: &Conntrack) {
    let mut seen = 0;
    for (c, list) in ct.lists.iter().enumerate() {
        let (mut i, mut prev, mut newer) = (list.head, NIL, u64::MAX);
        while i != NIL {
            let n = &ct.nodes[i as usize];
            assert_eq!(n.prev, prev);
            assert_eq!(class(n.entry.state), c);
            assert_eq!(ct.index.get(&n.key), Some(&i));
            assert!(n.entry.last_seen <= newer);
            newer = n.entry.last_seen;
            seen += 1;
            prev = i;
            i = n.next;
        }
        assert_eq!(list.tail, prev);
    }
    assert_eq!(seen, ct.len());
    assert!(ct.len() <= ct.capacity());
}

#[test]
fn capacity_must_be_sane() {
    assert_eq!(Conntrack::new(0).unwrap_err(), ConntrackError::Capacity(0));
    let err = Conntrack::new(MAX_CAPACITY + 1).unwrap_err();
    assert!(err.to_string().contains("use 1 to 16777216 flows"));
    assert_eq!(Conntrack::new(5).unwrap().capacity(), 5);
}

#[test]
fn evicts_the_least_recently_used_flow_of_a_class() {
    let mut ct = Conntrack::new(3).unwrap();
    for n in 0..3 {
        assert_eq!(ct.insert(udp(n), B1, TcpFlags::NONE, u64::from(n)), None);
    }
    assert!(ct.lookup(&udp(0), 3).is_some());
    let (evicted, _) = ct.insert(udp(3), B1, TcpFlags::NONE, 4).unwrap();
    assert_eq!(evicted, udp(1));
    let (evicted, _) = ct.insert(udp(4), B1, TcpFlags::NONE, 5).unwrap();
    assert_eq!(evicted, udp(2));
    assert_eq!(ct.len(), 3);
    check_invariants(&ct);
}

#[test]
fn a_syn_flood_evicts_half_open_flows_before_idle_established_ones() {
    let mut ct = Conntrack::new(3).unwrap();
    ct.insert(tcp(0), B1, ACK, 0);
    ct.insert(tcp(1), B1, SYN, 10 * S);
    ct.insert(tcp(2), B1, SYN, 20 * S);
    for n in 3..100 {
        let (evicted, entry) = ct.insert(tcp(n), B1, SYN, 30 * S).unwrap();
        assert_ne!(evicted, tcp(0));
        assert_eq!(entry.state, FlowState::TcpSynSent);
    }
    assert!(ct.lookup(&tcp(0), 31 * S).is_some());
    check_invariants(&ct);
}

#[test]
fn established_tcp_outlives_swarms_900_second_idle_drop() {
    // moby/moby#31208: IPVS forgot idle flows after 900 s.
    let mut ct = Conntrack::new(16).unwrap();
    ct.insert(tcp(0), B1, SYN, 0);
    ct.observe(&tcp(0), Direction::Reply, SYN | ACK, 1);
    ct.observe(&tcp(0), Direction::Original, ACK, 2);
    ct.insert(tcp(1), B1, ACK, 2);
    assert_eq!(ct.expire(2 + 901 * S, usize::MAX), 0);
    let e = ct.lookup(&tcp(0), 2 + 901 * S).unwrap();
    assert_eq!(e.state, FlowState::TcpEstablished);
    assert_eq!(e.backend, B1);

    assert_eq!(ct.expire(2 + 4 * DAY, usize::MAX), 0);
    assert!(ct.lookup(&tcp(1), 2 + 4 * DAY).is_some());
    assert!(ct.lookup(&tcp(1), 2 + 9 * DAY + 1).is_none());
}

/// Inserts a flow in `state` at 0 and checks it lives exactly `timeout` ms.
fn lives_exactly(build: impl Fn(&mut Conntrack, FlowKey), k: FlowKey, timeout: u64) {
    let mut ct = Conntrack::new(4).unwrap();
    build(&mut ct, k);
    assert!(ct.lookup(&k, timeout).is_some(), "{k:?} gone at {timeout}");
    let mut ct = Conntrack::new(4).unwrap();
    build(&mut ct, k);
    assert!(
        ct.lookup(&k, timeout + 1).is_none(),
        "{k:?} kept past {timeout}"
    );
    let mut ct = Conntrack::new(4).unwrap();
    build(&mut ct, k);
    assert_eq!(ct.expire(timeout, usize::MAX), 0);
    assert_eq!(ct.expire(timeout + 1, usize::MAX), 1);
    assert!(ct.is_empty());
}

#[test]
fn idle_timeouts_per_protocol_and_state() {
    let insert = |flags: TcpFlags| {
        move |ct: &mut Conntrack, k| {
            ct.insert(k, B1, flags, 0);
        }
    };
    lives_exactly(insert(SYN), tcp(0), 120 * S);
    lives_exactly(insert(ACK), tcp(0), 432_000 * S);
    lives_exactly(insert(TcpFlags::RST), tcp(0), 10 * S);
    lives_exactly(insert(TcpFlags::FIN | ACK), tcp(0), 120 * S);
    lives_exactly(insert(TcpFlags::NONE), udp(0), 30 * S);
    let answered = |ct: &mut Conntrack, k| {
        ct.insert(k, B1, TcpFlags::NONE, 0);
        ct.observe(&k, Direction::Reply, TcpFlags::NONE, 0);
    };
    lives_exactly(answered, udp(0), 120 * S);
    let closed = |ct: &mut Conntrack, k| {
        ct.insert(k, B1, ACK, 0);
        ct.observe(&k, Direction::Reply, TcpFlags::RST, 0);
    };
    lives_exactly(closed, tcp(0), 10 * S);
}

#[test]
fn traffic_keeps_a_flow_alive() {
    let mut ct = Conntrack::new(4).unwrap();
    ct.insert(udp(0), B1, TcpFlags::NONE, 0);
    for t in (20..200).step_by(20) {
        assert!(ct.lookup(&udp(0), t * S).is_some());
    }
}

#[test]
fn expire_respects_its_budget() {
    let mut ct = Conntrack::new(32).unwrap();
    for n in 0..10 {
        ct.insert(udp(n), B1, TcpFlags::NONE, 0);
    }
    ct.insert(tcp(0), B1, ACK, 0);
    assert_eq!(ct.expire(31 * S, 4), 4);
    check_invariants(&ct);
    assert_eq!(ct.expire(31 * S, usize::MAX), 6);
    assert_eq!(ct.len(), 1);
    check_invariants(&ct);
}

#[test]
fn remove_backend_returns_its_flows_only() {
    let mut ct = Conntrack::new(32).unwrap();
    for n in 0..10 {
        ct.insert(tcp(n), if n % 3 == 0 { B2 } else { B1 }, ACK, 0);
    }
    let mut gone = ct.remove_backend(B2);
    gone.sort_by_key(|k| k.src.port());
    assert_eq!(gone, vec![tcp(0), tcp(3), tcp(6), tcp(9)]);
    assert_eq!(ct.len(), 6);
    assert!(ct.lookup(&tcp(3), 1).is_none());
    assert_eq!(ct.lookup(&tcp(1), 1).unwrap().backend, B1);
    assert!(ct.remove_backend(B2).is_empty());
    check_invariants(&ct);
}

#[test]
fn insert_replaces_an_existing_flow() {
    let mut ct = Conntrack::new(2).unwrap();
    ct.insert(tcp(0), B1, ACK, 0);
    assert_eq!(ct.insert(tcp(0), B2, SYN, 5), None);
    let e = *ct.lookup(&tcp(0), 6).unwrap();
    assert_eq!(
        (e.backend, e.state, e.last_seen),
        (B2, FlowState::TcpSynSent, 6)
    );
    assert_eq!(ct.len(), 1);
    assert_eq!(ct.remove(&tcp(0)).map(|e| e.backend), Some(B2));
    assert!(ct.remove(&tcp(0)).is_none());
    check_invariants(&ct);
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u16, bool, u8),
    Lookup(u16),
    Observe(u16, bool, u8),
    Remove(u16),
    RemoveBackend(bool),
    Expire(usize),
    Wait(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u16..40, any::<bool>(), any::<u8>()).prop_map(|(k, b, f)| Op::Insert(k, b, f)),
        (0u16..40).prop_map(Op::Lookup),
        (0u16..40, any::<bool>(), any::<u8>()).prop_map(|(k, d, f)| Op::Observe(k, d, f)),
        (0u16..40).prop_map(Op::Remove),
        any::<bool>().prop_map(Op::RemoveBackend),
        (0usize..8).prop_map(Op::Expire),
        (0u64..200_000).prop_map(Op::Wait),
    ]
}

proptest! {
    #[test]
    fn any_sequence_keeps_the_lists_consistent(
        capacity in 1usize..16,
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        let mut ct = Conntrack::new(capacity).unwrap();
        let mut now = 0;
        let k = |n: u16| if n.is_multiple_of(2) { tcp(n) } else { udp(n) };
        for op in ops {
            match op {
                Op::Insert(n, b, f) => {
                    ct.insert(k(n), if b { B1 } else { B2 }, TcpFlags(f), now);
                }
                Op::Lookup(n) => {
                    if let Some(e) = ct.lookup(&k(n), now) {
                        prop_assert_eq!(e.last_seen, now);
                    }
                }
                Op::Observe(n, d, f) => {
                    let dir = if d { Direction::Original } else { Direction::Reply };
                    ct.observe(&k(n), dir, TcpFlags(f), now);
                }
                Op::Remove(n) => {
                    ct.remove(&k(n));
                }
                Op::RemoveBackend(b) => {
                    ct.remove_backend(if b { B1 } else { B2 });
                }
                Op::Expire(budget) => {
                    let before = ct.len();
                    prop_assert_eq!(ct.expire(now, budget), before - ct.len());
                }
                Op::Wait(ms) => now += ms,
            }
            check_invariants(&ct);
        }
        ct.expire(now, usize::MAX);
        for list in &ct.lists {
            if list.tail != NIL {
                prop_assert!(!ct.nodes[list.tail as usize].entry.expired(now));
            }
        }
    }
}

#[test]
fn iter_lists_live_flows_without_refreshing_them() {
    let mut ct = Conntrack::new(8).unwrap();
    ct.insert(tcp(1), B1, SYN, 0);
    ct.insert(udp(2), B2, TcpFlags::NONE, 0);
    ct.insert(tcp(3), B2, SYN, 50 * S);
    let mut live: Vec<(FlowKey, Ipv4Addr)> =
        ct.iter(20 * S).map(|(k, e)| (*k, e.backend)).collect();
    live.sort_by_key(|(k, _)| k.src.port());
    assert_eq!(live, vec![(tcp(1), B1), (udp(2), B2), (tcp(3), B2)]);
    // UDP unreplied lives 30 s, SYN_SENT 120 s: at 121 s only the last SYN.
    let live: Vec<FlowKey> = ct.iter(121 * S).map(|(k, _)| *k).collect();
    assert_eq!(live, vec![tcp(3)]);
    // Listing refreshed nothing: the first SYN still expires on time.
    assert!(ct.lookup(&tcp(1), 121 * S).is_none());
    check_invariants(&ct);
}
