//! Whole conversations through the deciding half of the packet path, with
//! real frames, two nodes' tables and a fake clock: what the userspace
//! engine's workers do, less the devices.

use std::net::{Ipv4Addr, SocketAddrV4};

use etherparse::PacketBuilder;

use super::*;
use crate::lb::nat::Side;
use crate::overlay::fdb::PortId;
use crate::tables::Tables;
use crate::wire::flow::{self, Protocol};

const N1: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const N2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const CLIENT_TASK: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 2);
/// Lives on n2.
const REMOTE_BACKEND: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 3);
/// Lives on n1.
const LOCAL_BACKEND: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 4);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 100);
const MESH: Ipv4Addr = Ipv4Addr::new(169, 254, 77, 1);
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);

/// The tables of node `name`/`underlay`: the same cluster seen from there.
fn fdb(name: &str, underlay: Ipv4Addr) -> Fdb {
    let tables = Tables::from_yaml_str(&format!(
        r#"
node: {{ name: {name}, underlay: {underlay} }}
networks:
  - {{ name: skynet, vni: 4097, subnet: 10.10.0.0/24 }}
endpoints:
  - {{ network: skynet, ip: 10.10.0.2, node: 198.18.0.1, netns: client }}
  - {{ network: skynet, ip: 10.10.0.3, node: 198.18.0.2, netns: web2 }}
  - {{ network: skynet, ip: 10.10.0.4, node: 198.18.0.1, netns: web1 }}
services:
  - name: web
    vips: {{ skynet: 10.10.0.100 }}
    ports: [ {{ protocol: tcp, target: 80, published: 8080 }} ]
    backends: [ {{ ip: 10.10.0.3 }}, {{ ip: 10.10.0.4 }} ]
"#
    ))
    .expect("valid tables");
    let local = tables.node.underlay;
    let netns_ports: Vec<(Ipv4Addr, PortId)> = tables
        .endpoints
        .iter()
        .filter(|e| e.node == local)
        .enumerate()
        .map(|(i, e)| (e.ip, i))
        .collect();
    Fdb::build(&tables, 1500, |_, ip| {
        netns_ports.iter().find(|(a, _)| *a == ip).map(|(_, p)| *p)
    })
}

/// A node: its tables and its conversations.
struct Node {
    fdb: Fdb,
    shards: Shards,
    underlay: Ipv4Addr,
}

impl Node {
    fn new(name: &str, underlay: Ipv4Addr) -> Node {
        Node {
            fdb: fdb(name, underlay),
            shards: Shards::new(1024, MESH).expect("shards"),
            underlay,
        }
    }

    fn cx(&self, now: u64) -> Context<'_> {
        Context {
            fdb: &self.fdb,
            shards: &self.shards,
            node: self.underlay,
            now,
        }
    }

    fn port_of(&self, ip: Ipv4Addr) -> PortId {
        match self.fdb.segment(0).station(ip).map(|s| s.at) {
            Some(Location::Local(port)) => port,
            other => panic!("{ip} is not local here: {other:?}"),
        }
    }

    /// A task's frame, decided.
    fn decide_task(&self, frame: &[u8], now: u64) -> Verdict {
        let mut out = Vec::new();
        from_port(&self.cx(now), 0, frame, flow::parse(frame), false, &mut out)
    }

    /// A frame that came in VXLAN from `sender`, decided.
    fn decide_wire(&self, frame: &[u8], sender: Ipv4Addr, now: u64) -> Verdict {
        let mut out = Vec::new();
        from_underlay(
            &self.cx(now),
            0,
            frame,
            flow::parse(frame),
            sender,
            &mut out,
        )
    }
}

fn tcp(src: SocketAddrV4, dst: SocketAddrV4, syn: bool, ack: bool) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2; 6], [3; 6])
        .ipv4(src.ip().octets(), dst.ip().octets(), 64)
        .tcp(src.port(), dst.port(), 1, 1000);
    let b = match (syn, ack) {
        (true, true) => b.syn().ack(1),
        (true, false) => b.syn(),
        _ => b.ack(1),
    };
    let mut out = Vec::new();
    b.write(&mut out, b"x").expect("write");
    out
}

fn end(ip: Ipv4Addr, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ip, port)
}

/// Applies a verdict's translation to `frame`; where it goes.
fn carry_out(verdict: Verdict, frame: &mut [u8]) -> Location {
    let Verdict::Deliver {
        to, translation, ..
    } = verdict
    else {
        panic!("not delivered: {verdict:?}");
    };
    if let Some(t) = translation {
        let view = flow::parse_ipv4(frame).expect("ipv4");
        t.nat.apply(frame, &view, false);
    }
    to
}

fn key_of(frame: &[u8]) -> FlowKey {
    flow::parse_ipv4(frame)
        .and_then(|f| f.key)
        .expect("a tcp key")
}

#[test]
fn a_task_reaches_a_vip_and_its_replies_come_back_from_the_vip() {
    let (n1, n2) = (Node::new("n1", N1), Node::new("n2", N2));
    let mut seen = Vec::new();
    for port in 40_000..40_064 {
        let client = end(CLIENT_TASK, port);
        let mut syn = tcp(client, end(VIP, 80), true, false);
        let verdict = n1.decide_task(&syn, 0);
        let Verdict::Deliver {
            translation: Some(t),
            ..
        } = verdict
        else {
            panic!("{verdict:?}");
        };
        let backend = *t.nat.to.ip();
        assert_eq!(
            t.dst_mac.map(|m| m.0),
            Some(crate::tables::MacAddr::from_ipv4(backend).0)
        );
        assert_eq!(
            t.hit.map(|h| (h.vip, h.port, h.opened)),
            Some((VIP, 80, true))
        );
        let to = carry_out(verdict, &mut syn);
        assert_eq!(key_of(&syn).dst, end(backend, 80));
        assert_eq!(key_of(&syn).src, client, "the backend sees the task");

        // The backend answers the client; the client's node gives the
        // answer the VIP back as its source.
        let mut answer = tcp(end(backend, 80), client, true, true);
        let verdict = match to {
            Location::Local(_) => n1.decide_task(&answer, 1),
            Location::Remote(node) => {
                assert_eq!(node, N2);
                assert!(matches!(
                    n2.decide_wire(&syn, N1, 1),
                    Verdict::Deliver { .. }
                ));
                let back = n2.decide_task(&answer, 1);
                assert_eq!(
                    back,
                    Verdict::deliver(Location::Remote(N1), 0),
                    "n2 sends the answer as it is"
                );
                n1.decide_wire(&answer, N2, 1)
            }
        };
        assert_eq!(
            carry_out(verdict, &mut answer),
            Location::Local(n1.port_of(CLIENT_TASK))
        );
        assert_eq!(key_of(&answer).src, end(VIP, 80));
        seen.push(backend);
    }
    assert!(seen.contains(&LOCAL_BACKEND) && seen.contains(&REMOTE_BACKEND));
}

#[test]
fn a_mesh_client_reaches_a_backend_on_another_node_and_gets_its_reply_back() {
    let (n1, n2) = (Node::new("n1", N1), Node::new("n2", N2));
    for port in 50_000..50_064 {
        let client = end(OUTSIDE, port);
        // n1 is the entry node: the kernel hands over client -> mesh:8080.
        let mut syn = tcp(client, end(MESH, 8080), true, false);
        let view = flow::parse_ipv4(&syn).expect("ipv4");
        let verdict = from_mesh(&n1.cx(0), &view);
        let to = carry_out(verdict, &mut syn);
        let backend = *key_of(&syn).dst.ip();
        assert_eq!(key_of(&syn).dst.port(), 80);
        assert_eq!(key_of(&syn).src, client, "the client's address is kept");

        let mut answer = tcp(end(backend, 80), client, true, true);
        let exit = match to {
            Location::Remote(node) => {
                assert_eq!(node, N2);
                // n2 learns the entry node from the datagram ...
                let delivered = n2.decide_wire(&syn, N1, 1);
                assert_eq!(
                    delivered,
                    Verdict::deliver(Location::Local(n2.port_of(REMOTE_BACKEND)), 0)
                );
                // ... and sends the backend's answer back to it.
                assert_eq!(
                    n2.decide_task(&answer, 1),
                    Verdict::deliver(Location::Remote(N1), 0)
                );
                n1.decide_wire(&answer, N2, 1)
            }
            Location::Local(_) => n1.decide_task(&answer, 1),
        };
        let Verdict::MeshExit(t) = exit else {
            panic!("not a mesh exit: {exit:?}");
        };
        assert_eq!(t.nat.side, Side::Src);
        let view = flow::parse_ipv4(&answer).expect("ipv4");
        t.nat.apply(&mut answer, &view, false);
        assert_eq!(key_of(&answer).src, end(MESH, 8080));
        assert_eq!(key_of(&answer).dst, client);
    }
}

#[test]
fn what_no_conversation_knows_is_dropped_with_its_reason() {
    let n1 = Node::new("n1", N1);
    let client = end(CLIENT_TASK, 40_000);
    // A VIP port the service does not publish.
    let wrong_port = tcp(client, end(VIP, 81), true, false);
    assert_eq!(
        n1.decide_task(&wrong_port, 0),
        Verdict::Drop(DropReason::NoServicePort)
    );
    // A destination outside the overlay that no mesh flow knows.
    let outside = tcp(client, end(OUTSIDE, 443), true, false);
    assert_eq!(
        n1.decide_task(&outside, 0),
        Verdict::Drop(DropReason::NoRoute)
    );
    // A reply for the mesh that this entry node never sent.
    let stray = tcp(end(REMOTE_BACKEND, 80), end(OUTSIDE, 1234), false, true);
    assert_eq!(
        n1.decide_wire(&stray, N2, 0),
        Verdict::Drop(DropReason::UnknownDestination)
    );
    // A published port this node does not have.
    let closed = tcp(end(OUTSIDE, 1), end(MESH, 9999), true, false);
    let view = flow::parse_ipv4(&closed).expect("ipv4");
    assert_eq!(
        from_mesh(&n1.cx(0), &view),
        Verdict::Drop(DropReason::NoServicePort)
    );
    assert_eq!(view.key.map(|k| k.proto), Some(Protocol::Tcp));
}

#[test]
fn only_a_node_bringing_a_published_ports_client_becomes_an_entry_node() {
    let n2 = Node::new("n2", N2);
    let stranger = Ipv4Addr::new(198, 51, 100, 7);
    let reply_of = |syn: &[u8]| {
        let k = key_of(syn);
        tcp(k.dst, k.src, true, true)
    };
    // A client's SYN to the backend's target port, brought by node n1: the
    // reply goes back to n1.
    let mesh = tcp(end(OUTSIDE, 50_000), end(REMOTE_BACKEND, 80), true, false);
    assert!(matches!(
        n2.decide_wire(&mesh, N1, 0),
        Verdict::Deliver { .. }
    ));
    assert_eq!(
        n2.decide_task(&reply_of(&mesh), 1),
        Verdict::deliver(Location::Remote(N1), 0)
    );
    // The same from a sender that is no node (had an engine let it
    // through), or to a port no published port targets: no entry noted, so
    // the task's reply has no route.
    for (syn, sender) in [
        (
            tcp(end(OUTSIDE, 50_001), end(REMOTE_BACKEND, 80), true, false),
            stranger,
        ),
        (
            tcp(end(OUTSIDE, 50_002), end(REMOTE_BACKEND, 22), true, false),
            N1,
        ),
    ] {
        let _ = n2.decide_wire(&syn, sender, 0);
        assert_eq!(
            n2.decide_task(&reply_of(&syn), 1),
            Verdict::Drop(DropReason::NoRoute),
            "{:?} from {sender}",
            key_of(&syn)
        );
    }
}
