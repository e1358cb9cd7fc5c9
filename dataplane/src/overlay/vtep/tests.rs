use std::net::Ipv4Addr;

use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use smoltcp::wire::EthernetFrame;

use super::*;
use crate::overlay::fdb::Fdb;
use crate::tables::{MacAddr, Tables};

const TASK_IP: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 2);
const LOCAL_PEER: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 4);
const REMOTE_IP: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 3);
const NODE2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

fn fdb() -> Fdb {
    let tables = Tables::from_yaml_str(
        r#"
node: { name: n1, underlay: 198.18.0.1 }
networks:
  - { name: skynet, vni: 4097, subnet: 10.10.0.0/24 }
endpoints:
  - { network: skynet, ip: 10.10.0.2, node: 198.18.0.1, netns: a }
  - { network: skynet, ip: 10.10.0.4, node: 198.18.0.1, netns: b }
  - { network: skynet, ip: 10.10.0.3, node: 198.18.0.2 }
"#,
    )
    .expect("valid tables");
    Fdb::build(&tables, 1500, |_, ip| match ip {
        TASK_IP => Some(0),
        LOCAL_PEER => Some(1),
        _ => None,
    })
}

fn udp_frame(dst: Ipv4Addr, payload_len: usize, dont_frag: bool) -> Vec<u8> {
    let mac = MacAddr::from_ipv4(TASK_IP).0;
    let mut builder = PacketBuilder::ethernet2(mac, MacAddr::from_ipv4(dst).0).ipv4(
        TASK_IP.octets(),
        dst.octets(),
        64,
    );
    if !dont_frag {
        builder = PacketBuilder::ethernet2(mac, MacAddr::from_ipv4(dst).0).ip(
            etherparse::IpHeaders::Ipv4(
                {
                    let mut h = etherparse::Ipv4Header::new(
                        0,
                        64,
                        etherparse::IpNumber::UDP,
                        TASK_IP.octets(),
                        dst.octets(),
                    )
                    .expect("header");
                    h.dont_fragment = false;
                    h
                },
                Default::default(),
            ),
        );
    }
    let builder = builder.udp(4000, 53);
    let payload = vec![0xab; payload_len];
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut out, &payload).expect("write");
    out
}

#[test]
fn forwards_by_table() {
    let fdb = fdb();
    let seg = fdb.segment(0);
    let mut out = Vec::new();
    assert_eq!(
        from_port(seg, &udp_frame(REMOTE_IP, 10, true), false, &mut out),
        FromPort::Remote(NODE2)
    );
    assert_eq!(
        from_port(seg, &udp_frame(LOCAL_PEER, 10, true), false, &mut out),
        FromPort::Local(1)
    );
    assert_eq!(
        from_port(
            seg,
            &udp_frame(Ipv4Addr::new(10, 10, 0, 77), 10, true),
            false,
            &mut out
        ),
        FromPort::Drop(DropReason::UnknownDestination)
    );
    assert_eq!(
        from_port(
            seg,
            &udp_frame(Ipv4Addr::new(8, 8, 8, 8), 10, true),
            false,
            &mut out
        ),
        FromPort::Outside
    );
    assert_eq!(
        from_port(seg, &[0u8; 9], false, &mut out),
        FromPort::Drop(DropReason::MalformedFrame)
    );
}

#[test]
fn answers_arp_from_the_tables() {
    let fdb = fdb();
    let seg = fdb.segment(0);
    let mut out = Vec::new();
    let req = arp::request(MacAddr::from_ipv4(TASK_IP), TASK_IP, REMOTE_IP);
    assert_eq!(from_port(seg, &req, false, &mut out), FromPort::Reply);
    let eth = EthernetFrame::new_checked(&out[..]).expect("frame");
    assert_eq!(eth.dst_addr().0, MacAddr::from_ipv4(TASK_IP).0);
    let arp = smoltcp::wire::ArpPacket::new_checked(eth.payload()).expect("arp");
    assert_eq!(arp.source_hardware_addr(), &MacAddr::from_ipv4(REMOTE_IP).0);
    assert_eq!(arp.source_protocol_addr(), &REMOTE_IP.octets());
    assert_eq!(arp.target_protocol_addr(), &TASK_IP.octets());

    let unknown = arp::request(
        MacAddr::from_ipv4(TASK_IP),
        TASK_IP,
        Ipv4Addr::new(10, 10, 0, 99),
    );
    assert_eq!(
        from_port(seg, &unknown, false, &mut out),
        FromPort::Drop(DropReason::UnknownDestination)
    );
    let probe_self = arp::request(MacAddr::from_ipv4(TASK_IP), TASK_IP, TASK_IP);
    assert_eq!(
        from_port(seg, &probe_self, false, &mut out),
        FromPort::Ignore
    );
}

#[test]
fn oversize_dont_fragment_gets_frag_needed() {
    let fdb = fdb();
    let seg = fdb.segment(0);
    let mut out = Vec::new();
    let big = udp_frame(REMOTE_IP, 1472, true);
    assert_eq!(from_port(seg, &big, false, &mut out), FromPort::Reply);
    let reply = out.clone();
    let parsed = SlicedPacket::from_ethernet(&reply).expect("icmp frame");
    let Some(etherparse::NetSlice::Ipv4(ip)) = &parsed.net else {
        panic!("not ipv4")
    };
    assert_eq!(ip.header().source(), seg.gateway.octets());
    assert_eq!(ip.header().destination(), TASK_IP.octets());
    let Some(TransportSlice::Icmpv4(icmp)) = &parsed.transport else {
        panic!("not icmp")
    };
    assert_eq!(icmp.type_u8(), 3);
    assert_eq!(icmp.code_u8(), 4);
    assert_eq!(&icmp.bytes5to8()[2..4], &1450u16.to_be_bytes());
    assert!(icmp.header().checksum == icmp.icmp_type().calc_checksum(icmp.payload()));

    assert_eq!(
        from_port(seg, &udp_frame(REMOTE_IP, 1472, false), false, &mut out),
        FromPort::Drop(DropReason::TooBig)
    );
    // A TSO super-frame is segmented later, not refused.
    assert_eq!(
        from_port(seg, &big, true, &mut out),
        FromPort::Remote(NODE2)
    );
}

fn vxlan(vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut d = vec![0; vxlan::HEADER_LEN];
    encap_header(vni, &mut d);
    d.extend_from_slice(inner);
    d
}

#[test]
fn decapsulates_to_local_ports_and_counts_the_rest() {
    let fdb = fdb();
    let mut out = Vec::new();
    let to_task = udp_frame(TASK_IP, 10, true);
    assert_eq!(
        from_underlay(&fdb, NODE2, &vxlan(4097, &to_task), &mut out),
        FromUnderlay::Local(0)
    );
    assert_eq!(
        from_underlay(&fdb, NODE2, &vxlan(4098, &to_task), &mut out),
        FromUnderlay::Drop(DropReason::UnknownVni)
    );
    assert_eq!(
        from_underlay(
            &fdb,
            NODE2,
            &vxlan(4097, &udp_frame(REMOTE_IP, 10, true)),
            &mut out
        ),
        FromUnderlay::Drop(DropReason::NotLocal)
    );
    let mut bad_flags = vxlan(4097, &to_task);
    bad_flags[0] = 0x0c;
    assert_eq!(
        from_underlay(&fdb, NODE2, &bad_flags, &mut out),
        FromUnderlay::Drop(DropReason::MalformedVxlan)
    );
    assert_eq!(
        from_underlay(&fdb, NODE2, &[8, 0, 0], &mut out),
        FromUnderlay::Drop(DropReason::MalformedVxlan)
    );
    assert_eq!(
        from_underlay(&fdb, NODE2, &vxlan(4097, &[1, 2, 3]), &mut out),
        FromUnderlay::Drop(DropReason::MalformedFrame)
    );
}

#[test]
fn answers_arp_from_remote_vteps() {
    let fdb = fdb();
    let mut out = Vec::new();
    let req = arp::request(
        MacAddr([2, 0, 0, 0, 0, 1]),
        Ipv4Addr::new(10, 10, 0, 50),
        TASK_IP,
    );
    assert_eq!(
        from_underlay(&fdb, NODE2, &vxlan(4097, &req), &mut out),
        FromUnderlay::Reply { vni: 4097 }
    );
    let eth = EthernetFrame::new_checked(&out[..]).expect("frame");
    assert_eq!(eth.src_addr().0, MacAddr::from_ipv4(TASK_IP).0);
}

#[test]
fn only_nodes_in_the_tables_may_send_vxlan() {
    let fdb = fdb();
    let mut out = Vec::new();
    let stranger = Ipv4Addr::new(198, 51, 100, 7);
    let to_task = vxlan(4097, &udp_frame(TASK_IP, 10, true));
    assert_eq!(
        from_underlay(&fdb, stranger, &to_task, &mut out),
        FromUnderlay::Drop(DropReason::UnknownPeer)
    );
    // Whatever the datagram holds: it is not even parsed.
    assert_eq!(
        from_underlay(&fdb, stranger, &[8, 0, 0], &mut out),
        FromUnderlay::Drop(DropReason::UnknownPeer)
    );
    // An ARP request draws no answer to a stranger (no reflection).
    let req = arp::request(
        MacAddr([2, 0, 0, 0, 0, 1]),
        Ipv4Addr::new(10, 10, 0, 50),
        TASK_IP,
    );
    assert_eq!(
        from_underlay(&fdb, stranger, &vxlan(4097, &req), &mut out),
        FromUnderlay::Drop(DropReason::UnknownPeer)
    );
    assert!(out.is_empty(), "nothing was written: {out:?}");
    // This node itself is in the tables.
    assert_eq!(
        from_underlay(&fdb, Ipv4Addr::new(198, 18, 0, 1), &to_task, &mut out),
        FromUnderlay::Local(0)
    );
}

#[test]
fn flow_hash_separates_flows_and_is_stable() {
    let hash = |f: &[u8]| flow::parse_ipv4(f).expect("ipv4").hash();
    let a = udp_frame(REMOTE_IP, 10, true);
    let b = udp_frame(LOCAL_PEER, 10, true);
    assert_eq!(hash(&a), hash(&a.clone()));
    assert_ne!(hash(&a), hash(&b));
}

#[test]
fn an_encrypted_network_takes_frames_only_from_the_tunnel() {
    let tables = Tables::from_yaml_str(
        r#"
node: { name: n1, underlay: 198.18.0.1 }
networks:
  - { name: secret, vni: 4097, subnet: 10.10.0.0/24, encrypted: true }
  - { name: plain, vni: 4098, subnet: 10.20.0.0/24 }
endpoints:
  - { network: secret, ip: 10.10.0.2, node: 198.18.0.1, netns: a }
  - { network: secret, ip: 10.10.0.3, node: 198.18.0.2 }
"#,
    )
    .expect("valid tables");
    let fdb = Fdb::build(&tables, 1500, |_, ip| (ip == TASK_IP).then_some(0));
    let (secret, _) = fdb.segment_by_vni(4097).unwrap();
    let (plain, _) = fdb.segment_by_vni(4098).unwrap();
    assert_eq!(fdb.segment(secret).mtu, 1500 - 50 - 60);
    let to_task = vxlan(4097, &udp_frame(TASK_IP, 10, true));
    assert_eq!(
        open(&fdb, NODE2, &to_task, false),
        Err(DropReason::Unsealed)
    );
    assert_eq!(open(&fdb, NODE2, &to_task, true), Ok(secret));
    // A plain network's datagrams are taken either way.
    assert_eq!(open(&fdb, NODE2, &vxlan(4098, &[0; 14]), false), Ok(plain));
}
