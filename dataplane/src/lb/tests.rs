use std::net::SocketAddrV4;

use super::maglev::DEFAULT_TABLE_SIZE;
use super::*;

const SEED: u64 = 0x5eed;
const ACK: TcpFlags = TcpFlags::ACK;

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 10, 0, last)
}

fn backend(last: u8, state: EndpointState) -> LbBackend {
    LbBackend {
        ip: ip(last),
        weight: 1,
        state,
    }
}

/// Backends 10.10.0.2..=4, with `states` overriding some.
fn set(states: &[(u8, EndpointState)]) -> BackendSet {
    set_without(states, &[])
}

/// Backends 10.10.0.2..=4 (active unless `states` says otherwise), less
/// those whose last octet is in `gone`: the service of the conversations'
/// tests too.
pub(super) fn set_without(states: &[(u8, EndpointState)], gone: &[u8]) -> BackendSet {
    let backends = (2..=4)
        .filter(|last| !gone.contains(last))
        .map(|last| {
            let state = states
                .iter()
                .find(|(l, _)| *l == last)
                .map_or(EndpointState::Active, |(_, s)| *s);
            backend(last, state)
        })
        .collect();
    BackendSet::new(backends, DEFAULT_TABLE_SIZE, SEED).unwrap()
}

fn flow(n: u16) -> FlowKey {
    FlowKey {
        proto: Protocol::Tcp,
        src: SocketAddrV4::new(Ipv4Addr::new(10, 0, (n >> 8) as u8, n as u8), 40_000 + n),
        dst: SocketAddrV4::new(Ipv4Addr::new(10, 10, 0, 100), 80),
    }
}

/// Starts flows `ns` on `set` and returns those that went to `target`.
fn flows_to(
    ct: &mut Conntrack,
    set: &BackendSet,
    ns: std::ops::Range<u16>,
    target: Ipv4Addr,
) -> Vec<FlowKey> {
    ns.map(flow)
        .filter(|k| select(ct, set, k, TcpFlags::SYN, 0) == Some(Selection::New(target)))
        .collect()
}

#[test]
fn a_flow_keeps_its_backend() {
    let mut ct = Conntrack::new(64).unwrap();
    let s = set(&[]);
    let first = select(&mut ct, &s, &flow(1), TcpFlags::SYN, 0).unwrap();
    assert!(matches!(first, Selection::New(_)));
    let again = select(&mut ct, &s, &flow(1), ACK, 10).unwrap();
    assert_eq!(again, Selection::Kept(first.backend()));
    assert_eq!(
        ct.lookup(&flow(1), 11).unwrap().state,
        conntrack::FlowState::TcpEstablished
    );
}

#[test]
fn draining_keeps_old_flows_and_takes_no_new_ones() {
    let mut ct = Conntrack::new(4096).unwrap();
    let old = flows_to(&mut ct, &set(&[]), 0..300, ip(3));
    assert!(old.len() > 50, "{}", old.len());

    let draining = set(&[(3, EndpointState::Draining)]);
    for k in &old {
        assert_eq!(
            select(&mut ct, &draining, k, ACK, 1),
            Some(Selection::Kept(ip(3)))
        );
    }
    for n in 1000..3000 {
        let picked = select(&mut ct, &draining, &flow(n), TcpFlags::SYN, 1).unwrap();
        assert_eq!(picked, Selection::New(picked.backend()));
        assert_ne!(picked.backend(), ip(3));
    }
}

#[test]
fn draining_backends_do_not_shape_the_table() {
    let with = set(&[(3, EndpointState::Draining)]);
    let without = BackendSet::new(
        vec![
            backend(2, EndpointState::Active),
            backend(4, EndpointState::Active),
        ],
        DEFAULT_TABLE_SIZE,
        SEED,
    )
    .unwrap();
    for n in 0..500 {
        assert_eq!(with.pick(&flow(n)), without.pick(&flow(n)));
    }
}

#[test]
fn a_removed_or_down_backends_flows_are_repicked() {
    let mut ct = Conntrack::new(4096).unwrap();
    let old = flows_to(&mut ct, &set(&[]), 0..300, ip(3));
    let down = set(&[(3, EndpointState::Down)]);
    let removed = BackendSet::new(
        vec![
            backend(2, EndpointState::Active),
            backend(4, EndpointState::Active),
        ],
        DEFAULT_TABLE_SIZE,
        SEED,
    )
    .unwrap();
    for (i, k) in old.iter().enumerate() {
        let s = if i % 2 == 0 { &down } else { &removed };
        let picked = select(&mut ct, s, k, ACK, 1).unwrap();
        let Selection::Repicked { backend, previous } = picked else {
            panic!("{picked:?}");
        };
        assert_eq!(previous, ip(3));
        assert_ne!(backend, ip(3));
        // The new choice sticks.
        assert_eq!(
            select(&mut ct, s, k, ACK, 2),
            Some(Selection::Kept(backend))
        );
    }
}

#[test]
fn without_active_backends_only_existing_flows_are_served() {
    let mut ct = Conntrack::new(4096).unwrap();
    let old = flows_to(&mut ct, &set(&[]), 0..100, ip(2));
    let none_active = set(&[
        (2, EndpointState::Draining),
        (3, EndpointState::Down),
        (4, EndpointState::Draining),
    ]);
    assert_eq!(
        select(&mut ct, &none_active, &old[0], ACK, 1),
        Some(Selection::Kept(ip(2)))
    );
    assert_eq!(
        select(&mut ct, &none_active, &flow(5000), TcpFlags::SYN, 1),
        None
    );
    assert!(ct.lookup(&flow(5000), 1).is_none());

    let old3 = flows_to(&mut ct, &set(&[]), 100..200, ip(3));
    assert_eq!(select(&mut ct, &none_active, &old3[0], ACK, 1), None);
    assert!(ct.lookup(&old3[0], 1).is_none(), "a dead flow is forgotten");
}

#[test]
fn nodes_agree_whatever_order_they_list_backends_in() {
    let forward = set(&[]);
    let mut reversed: Vec<LbBackend> = forward.backends().to_vec();
    reversed.reverse();
    let reversed = BackendSet::new(reversed, DEFAULT_TABLE_SIZE, SEED).unwrap();
    for n in 0..500 {
        assert_eq!(forward.pick(&flow(n)), reversed.pick(&flow(n)));
    }
}

#[test]
fn duplicate_backends_are_refused() {
    let b = vec![
        backend(2, EndpointState::Active),
        backend(2, EndpointState::Draining),
    ];
    let err = BackendSet::new(b, DEFAULT_TABLE_SIZE, SEED).unwrap_err();
    assert_eq!(err, LbError::DuplicateBackend(ip(2)));
    assert_eq!(
        err.to_string(),
        "backend 10.10.0.2 is listed twice; list each backend once"
    );
    let err = BackendSet::new(vec![], 100, SEED).unwrap_err();
    assert!(matches!(err, LbError::Maglev(MaglevError::NotPrime(100))));
}

#[test]
fn converts_from_the_tables() {
    let t = tables::Backend {
        ip: ip(9),
        weight: 3,
        state: EndpointState::Draining,
    };
    assert_eq!(
        LbBackend::from(&t),
        LbBackend {
            ip: ip(9),
            weight: 3,
            state: EndpointState::Draining
        }
    );
}

#[test]
fn a_new_syn_on_a_closed_flow_is_a_new_flow_and_avoids_draining_backends() {
    let mut ct = Conntrack::new(1024).unwrap();
    let active = set(&[]);
    let to_three = flows_to(&mut ct, &active, 0..200, ip(3));
    let key = *to_three.first().expect("some flow goes to 10.10.0.3");
    // The connection runs and closes: FIN both ways.
    let fin = TcpFlags(TcpFlags::FIN.0 | TcpFlags::ACK.0);
    select(&mut ct, &active, &key, ACK, 1);
    select(&mut ct, &active, &key, fin, 2);
    ct.observe(&key, Direction::Reply, fin, 3);
    select(&mut ct, &active, &key, ACK, 4);
    // 10.10.0.3 drains; the client reuses the same ports for a new
    // connection: it must not stick to the draining backend.
    let draining = set(&[(3, EndpointState::Draining)]);
    let again = select(&mut ct, &draining, &key, TcpFlags::SYN, 5).unwrap();
    assert!(
        matches!(again, Selection::New(b) if b != ip(3)),
        "{again:?}"
    );
    // A retransmitted SYN of a connection still opening keeps its pick.
    let retry = select(&mut ct, &draining, &key, TcpFlags::SYN, 6).unwrap();
    assert_eq!(retry, Selection::Kept(again.backend()));
}
