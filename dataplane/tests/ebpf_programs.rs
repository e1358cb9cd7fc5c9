//! Packet in, packet out through the underlay XDP program and the task tc
//! program with BPF_PROG_TEST_RUN and preloaded maps, and attaching them to
//! veths in throwaway namespaces. Needs root and a build with the eBPF
//! programs (scripts/setup.sh installs the toolchain); without them these
//! fail.

use shoal_dataplane::engine::ebpf;

#[test]
fn the_ebpf_engine_is_built_in() {
    assert!(
        ebpf::built_in(),
        "{}; these tests cannot run without it",
        ebpf::Unavailable::NotBuilt
    );
}

#[cfg(shoal_ebpf)]
mod programs {
    use std::net::Ipv4Addr;
    use std::process::Command;

    use aya::programs::XdpMode;
    use etherparse::{ArpHardwareId, ArpOperation, ArpPacket, EtherType, PacketBuilder};
    use shoal_dataplane::engine::ebpf::loader::Programs;
    use shoal_dataplane::engine::ebpf::{Maps, Underlay};
    use shoal_dataplane::overlay::fdb::{Fdb, PortId};
    use shoal_dataplane::overlay::vtep::{self, FromPort};
    use shoal_dataplane::sys::netns;
    use shoal_dataplane::tables::{MacAddr, Tables};
    use shoal_ebpf_common::{Counters, DropReason, counters};

    const XDP_DROP: u32 = 1;
    const XDP_PASS: u32 = 2;
    const XDP_REDIRECT: u32 = 4;

    const VXLAN_PORT: u16 = 4789;
    const NODE: [u8; 4] = [192, 168, 0, 1];
    const PEER: [u8; 4] = [192, 168, 0, 2];
    const NODE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
    const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
    const OWNED_IP: [u8; 4] = [192, 168, 0, 100];
    const OWNED_MAC: [u8; 6] = [0x02, 0x5e, 0, 0, 0, 0x64];
    const TASK_IFINDEX: u32 = 42;
    const LO: u32 = 1;
    const UNDERLAY_IFINDEX: u32 = 7;
    const VNI: u32 = 4097;
    /// Where the inner frame starts in a VXLAN datagram without IP options.
    const INNER: usize = 14 + 20 + 8 + 8;

    const TABLES: &str = "
node: {name: a, underlay: 192.168.0.1}
networks:
  - {name: front, vni: 4097, subnet: 10.0.1.0/24}
endpoints:
  - {network: front, ip: 10.0.1.2, node: 192.168.0.1, netns: t1}
  - {network: front, ip: 10.0.1.3, node: 192.168.0.2}
  - {network: front, ip: 10.0.1.4, node: 192.168.0.1, netns: t4}
";

    fn underlay(vxlan_port: u16) -> Underlay {
        Underlay {
            ifindex: UNDERLAY_IFINDEX,
            mtu: 1500,
            vxlan_port,
        }
    }

    fn maps(ifindex: impl Fn(Ipv4Addr) -> Option<u32>, vxlan_port: u16) -> Maps {
        let tables = Tables::from_yaml_str(TABLES).unwrap();
        Maps::from_tables(
            &tables,
            underlay(vxlan_port),
            |net, ip| {
                assert_eq!(net, "front");
                ifindex(ip)
            },
            &Maps::default(),
        )
    }

    /// The local tasks' interfaces: 10.0.1.2 behind TASK_IFINDEX, 10.0.1.4
    /// behind the loopback (index 1 in every namespace), which the task
    /// program's test runs come in through.
    fn task_ifindex(ip: Ipv4Addr) -> Option<u32> {
        match ip.octets() {
            [10, 0, 1, 2] => Some(TASK_IFINDEX),
            [10, 0, 1, 4] => Some(LO),
            _ => None,
        }
    }

    fn loaded() -> Programs {
        if let Some(why) = shoal_dataplane::engine::ebpf::unavailable() {
            panic!("the eBPF engine cannot run here: {why}");
        }
        let mut maps = maps(task_ifindex, VXLAN_PORT);
        maps.own(Ipv4Addr::from(OWNED_IP), MacAddr(OWNED_MAC));
        let mut programs = Programs::load().expect("loading the programs");
        programs.install(&maps).expect("filling their maps");
        programs
    }

    fn arp_request(target: [u8; 4]) -> Vec<u8> {
        let mut frame = arp_request_from(PEER_MAC, PEER, target);
        // Padded to the Ethernet minimum, as on the wire.
        frame.resize(60, 0);
        frame
    }

    /// An inner IPv4/UDP frame on the overlay to `dst`.
    fn inner_frame(dst: [u8; 4]) -> Vec<u8> {
        let mut frame = Vec::new();
        let dst_mac = [0x02, 0x42, dst[0], dst[1], dst[2], dst[3]];
        PacketBuilder::ethernet2([0x02, 0x42, 10, 0, 1, 3], dst_mac)
            .ipv4([10, 0, 1, 3], dst, 64)
            .udp(40000, 53)
            .write(&mut frame, b"inner payload")
            .unwrap();
        frame
    }

    fn vxlan_header(vni: u32) -> [u8; 8] {
        let v = vni.to_be_bytes();
        [0x08, 0, 0, 0, v[1], v[2], v[3], 0]
    }

    /// A UDP datagram from the peer node to `to:port` carrying `payload`.
    fn underlay_udp(to: [u8; 4], port: u16, payload: &[u8]) -> Vec<u8> {
        underlay_udp_from(PEER, to, port, payload)
    }

    /// The same from the underlay address `from` (with the peer's MAC:
    /// only the address counts).
    fn underlay_udp_from(from: [u8; 4], to: [u8; 4], port: u16, payload: &[u8]) -> Vec<u8> {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(PEER_MAC, NODE_MAC)
            .ipv4(from, to, 64)
            .udp(51000, port)
            .write(&mut frame, payload)
            .unwrap();
        frame
    }

    /// A VXLAN datagram from the peer node to this one.
    fn vxlan(vni: u32, inner: &[u8]) -> Vec<u8> {
        vxlan_from(PEER, vni, inner)
    }

    fn vxlan_from(from: [u8; 4], vni: u32, inner: &[u8]) -> Vec<u8> {
        let payload = [&vxlan_header(vni)[..], inner].concat();
        underlay_udp_from(from, NODE, VXLAN_PORT, &payload)
    }

    fn run(programs: &Programs, frame: &[u8]) -> (u32, Vec<u8>) {
        programs.test_run(frame).expect("BPF_PROG_TEST_RUN")
    }

    fn xdp_counters(programs: &Programs) -> Counters {
        programs.counters(counters::UNDERLAY).unwrap()
    }

    fn delta(before: &Counters, after: &Counters) -> Counters {
        after.since(before)
    }

    #[test]
    fn arp_request_for_an_owned_address_is_answered_in_place() {
        let underlay = loaded();
        let request = arp_request(OWNED_IP);
        let before = xdp_counters(&underlay);
        let (action, out) = run(&underlay, &request);
        assert_eq!(action, XDP_REDIRECT, "back out of the interface it came by");
        let mut want = Vec::new();
        want.extend_from_slice(&PEER_MAC); // to the asker
        want.extend_from_slice(&OWNED_MAC); // from the owner
        want.extend_from_slice(&[0x08, 0x06]);
        want.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 2]); // Ethernet/IPv4, reply
        want.extend_from_slice(&OWNED_MAC);
        want.extend_from_slice(&OWNED_IP);
        want.extend_from_slice(&PEER_MAC);
        want.extend_from_slice(&PEER);
        want.resize(60, 0); // the padding stays as it came
        assert_eq!(out, want);
        let d = delta(&before, &xdp_counters(&underlay));
        assert_eq!((d.packets, d.bytes, d.answered), (1, 60, 1));
        assert_eq!((d.passed, d.redirected), (0, 0));
    }

    #[test]
    fn arp_for_an_unowned_address_or_not_a_request_passes() {
        let underlay = loaded();
        let unowned = arp_request([192, 168, 0, 101]);
        assert_eq!(run(&underlay, &unowned), (XDP_PASS, unowned.clone()));
        let mut reply = arp_request(OWNED_IP);
        reply[21] = 2;
        assert_eq!(run(&underlay, &reply).0, XDP_PASS);
        // A gratuitous ARP: the sender announcing the owned address itself.
        let mut gratuitous = arp_request(OWNED_IP);
        gratuitous[28..32].copy_from_slice(&OWNED_IP);
        assert_eq!(run(&underlay, &gratuitous).0, XDP_PASS);
        // Not Ethernet/IPv4 ARP.
        let mut odd = arp_request(OWNED_IP);
        odd[18] = 8;
        assert_eq!(run(&underlay, &odd).0, XDP_PASS);
    }

    #[test]
    fn vxlan_to_a_local_task_is_decapsulated_and_redirected() {
        let underlay = loaded();
        let inner = inner_frame([10, 0, 1, 2]);
        let frame = vxlan(VNI, &inner);
        let before = xdp_counters(&underlay);
        let (action, out) = run(&underlay, &frame);
        assert_eq!(action, XDP_REDIRECT);
        assert_eq!(out, inner, "the output is the inner frame alone");
        let d = delta(&before, &xdp_counters(&underlay));
        assert_eq!((d.packets, d.redirected), (1, 1));
        assert_eq!(d.bytes, frame.len() as u64);
        assert_eq!(d.drops.iter().sum::<u64>(), 0);
    }

    #[test]
    fn unknown_vni_and_destinations_are_dropped_and_counted() {
        let underlay = loaded();
        let cases = [
            (
                vxlan(VNI + 1, &inner_frame([10, 0, 1, 2])),
                DropReason::UnknownVni,
            ),
            (
                vxlan(VNI, &inner_frame([10, 0, 1, 9])),
                DropReason::UnknownDestination,
            ),
            (
                vxlan(VNI, &inner_frame([10, 0, 1, 3])),
                DropReason::NotLocal,
            ),
        ];
        for (frame, reason) in cases {
            let before = xdp_counters(&underlay);
            assert_eq!(run(&underlay, &frame).0, XDP_DROP, "{reason:?}");
            let d = delta(&before, &xdp_counters(&underlay));
            assert_eq!(d.drops[reason.index()], 1, "{reason:?}");
            assert_eq!(d.drops.iter().sum::<u64>(), 1, "{reason:?}");
            assert_eq!(d.packets, 1);
        }
    }

    #[test]
    fn traffic_outside_the_segment_is_dropped_and_other_udp_passes() {
        let underlay = loaded();
        // A reply to a routing-mesh client outside the overlay subnet: no
        // route in this engine yet, as in the userspace one without the mesh.
        let before = xdp_counters(&underlay);
        let mesh_reply = vxlan(VNI, &inner_frame([203, 0, 113, 5]));
        assert_eq!(run(&underlay, &mesh_reply).0, XDP_DROP);
        let d = delta(&before, &xdp_counters(&underlay));
        assert_eq!(d.drops[DropReason::NoRoute.index()], 1);
        // VXLAN to another address, or to another port: not ours.
        let payload = [&vxlan_header(VNI)[..], &inner_frame([10, 0, 1, 2])].concat();
        let elsewhere = underlay_udp(PEER, VXLAN_PORT, &payload);
        assert_eq!(run(&underlay, &elsewhere).0, XDP_PASS);
        let other_port = underlay_udp(NODE, VXLAN_PORT + 1, &payload);
        assert_eq!(run(&underlay, &other_port).0, XDP_PASS);
    }

    #[test]
    fn truncated_and_malformed_frames_are_never_forwarded() {
        let underlay = loaded();
        let good = vxlan(VNI, &inner_frame([10, 0, 1, 2]));
        let before = xdp_counters(&underlay);
        let mut runs = 0;
        // Every truncation of a good datagram: Ethernet, IP, UDP, VXLAN and
        // inner headers cut anywhere. The kernel takes no frame under 14 bytes.
        for len in 14..good.len() {
            let (action, _) = run(&underlay, &good[..len]);
            runs += 1;
            assert!(
                action == XDP_PASS || action == XDP_DROP,
                "{len} bytes of a VXLAN datagram gave action {action}"
            );
        }
        let arp = arp_request(OWNED_IP);
        for len in 14..42 {
            let (action, _) = run(&underlay, &arp[..len]);
            runs += 1;
            assert_eq!(action, XDP_PASS, "{len} bytes of an ARP request");
        }
        // Bad VXLAN flags, a bad inner IPv4 header length, an inner IPv6
        // frame, an inner total length past the frame's end.
        let mut flags = good.clone();
        flags[INNER - 8] = 0x0c;
        assert_eq!(run(&underlay, &flags).0, XDP_DROP);
        let mut ihl = good.clone();
        ihl[INNER + 14] = 0x44;
        assert_eq!(run(&underlay, &ihl).0, XDP_DROP);
        let mut v6 = good.clone();
        v6[INNER + 12..INNER + 14].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(run(&underlay, &v6).0, XDP_DROP);
        let mut long = good.clone();
        long[INNER + 16..INNER + 18].copy_from_slice(&1400u16.to_be_bytes());
        assert_eq!(run(&underlay, &long).0, XDP_DROP);
        runs += 4;
        // Garbage: a pseudo-random fill of every length up to 200 bytes.
        let mut x: u32 = 0x9e37_79b9;
        for len in 14..200 {
            let frame: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let (action, _) = run(&underlay, &frame);
            runs += 1;
            assert!(
                action == XDP_PASS || action == XDP_DROP,
                "garbage gave {action}"
            );
        }
        let d = delta(&before, &xdp_counters(&underlay));
        assert_eq!(d.packets, runs);
        assert_eq!((d.redirected, d.answered), (0, 0));
        assert_eq!(d.drops[DropReason::MalformedVxlan.index()], 8 + 1);
        assert!(d.drops[DropReason::MalformedFrame.index()] >= 3);
        assert_eq!(d.drops[DropReason::UnsupportedProtocol.index()], 1);
    }

    #[test]
    fn the_kernel_refuses_frames_shorter_than_ethernet() {
        let underlay = loaded();
        assert!(underlay.test_run(&[0u8; 13]).is_err());
    }

    #[test]
    fn maps_follow_the_tables_and_stale_entries_go() {
        let mut underlay = loaded();
        let inner = inner_frame([10, 0, 1, 2]);
        assert_eq!(run(&underlay, &vxlan(VNI, &inner)).0, XDP_REDIRECT);
        // The task's interface is gone: its entry goes, its traffic drops,
        // and the owned address is no longer answered.
        let without = maps(|_| None, VXLAN_PORT);
        underlay.install(&without).unwrap();
        assert_eq!(run(&underlay, &vxlan(VNI, &inner)).0, XDP_DROP);
        assert_eq!(run(&underlay, &arp_request(OWNED_IP)).0, XDP_PASS);
        // VXLAN port 0 turns decapsulation off.
        let off = maps(|_| Some(TASK_IFINDEX), 0);
        underlay.install(&off).unwrap();
        assert_eq!(run(&underlay, &vxlan(VNI, &inner)).0, XDP_PASS);
        assert_eq!(underlay.installed(), &off);
    }

    /// Services on `front`: web (TCP 80 and UDP 53; two backends, one of
    /// them on this node) and api (TCP 8080), whose backends are `api`.
    fn service_tables(web_second: &str, api: &[&str]) -> Tables {
        let api: Vec<String> = api.iter().map(|ip| format!("{{ ip: {ip} }}")).collect();
        Tables::from_yaml_str(&format!(
            "{TABLES}services:
  - {{ name: web, vips: {{ front: 10.0.1.100 }},
      ports: [ {{ target: 80 }}, {{ target: 53, protocol: udp }} ],
      backends: [ {{ ip: 10.0.1.2 }}, {{ ip: 10.0.1.3{web_second} }} ] }}
  - {{ name: api, vips: {{ front: 10.0.1.101 }}, ports: [ {{ target: 8080 }} ],
      backends: [ {} ] }}
",
            api.join(", ")
        ))
        .unwrap()
    }

    /// Installs `tables` over what `programs` hold, as the engine does;
    /// returns what it installed.
    fn reinstall(programs: &mut Programs, tables: &Tables) -> Maps {
        let want = Maps::from_tables(
            tables,
            underlay(VXLAN_PORT),
            |_, ip| task_ifindex(ip),
            programs.installed(),
        );
        programs.install(&want).unwrap();
        want
    }

    /// The VIP parts of `maps`, as [`Programs::read_vips`] returns them.
    fn vip_parts(maps: &Maps) -> Maps {
        Maps {
            vips: maps.vips.clone(),
            backends: maps.backends.clone(),
            maglev: maps.maglev.clone(),
            ..Maps::default()
        }
    }

    #[test]
    fn vip_tables_reach_the_kernel_and_follow_backend_changes() {
        let mut programs = loaded();
        let install = |programs: &mut Programs, tables: &Tables| {
            let want = reinstall(programs, tables);
            assert_eq!(programs.read_vips().unwrap(), vip_parts(&want));
            want
        };
        let first = install(&mut programs, &service_tables("", &["10.0.1.4"]));
        // Three ports and two "is a VIP" entries.
        assert_eq!(first.vips.len(), 5);
        // A backend drains, api moves to another backend: the kernel holds
        // exactly the new slots and backends, the stale ones are gone.
        let second = install(
            &mut programs,
            &service_tables(", state: draining", &["10.0.1.3"]),
        );
        assert_eq!(second.backends.len(), 3);
        // api goes: its VIP and backends go, web's table stays.
        let mut tables = service_tables("", &["10.0.1.4"]);
        tables.services.pop();
        let third = install(&mut programs, &tables);
        assert_eq!(third.vips.len(), 3);
        // Programs that know nothing of the kernel's slots (just loaded, or
        // after a failed install) write every one of them.
        let mut fresh = Programs::load().unwrap();
        fresh.install(&third).unwrap();
        assert_eq!(fresh.read_vips().unwrap(), vip_parts(&third));
    }

    /// Programs loaded with `tables` (10.0.1.4's task behind the loopback).
    fn loaded_with(tables: &Tables) -> Programs {
        loaded_with_ports(tables, task_ifindex)
    }

    /// Programs loaded with `tables`, the local tasks behind `ifindex`.
    fn loaded_with_ports(tables: &Tables, ifindex: impl Fn(Ipv4Addr) -> Option<u32>) -> Programs {
        let want = Maps::from_tables(
            tables,
            underlay(VXLAN_PORT),
            |_, ip| ifindex(ip),
            &Maps::default(),
        );
        let mut programs = Programs::load().expect("loading the programs");
        programs.install(&want).expect("filling their maps");
        programs
    }

    /// A TCP SYN or a UDP datagram from the task behind the loopback to
    /// `dst`:`dport` from port `sport`.
    fn task_flow(tcp: bool, sport: u16, dst: [u8; 4], dport: u16, flags: u8) -> Vec<u8> {
        flow_frame(tcp, (TASK_IP, sport), (dst, dport), flags)
    }

    /// A TCP segment with `flags` (or a UDP datagram) from `src` to `dst`.
    fn flow_frame(tcp: bool, src: ([u8; 4], u16), dst: ([u8; 4], u16), flags: u8) -> Vec<u8> {
        let ((src, sport), (dst, dport)) = (src, dst);
        let src_mac = MacAddr::from_ipv4(Ipv4Addr::from(src)).0;
        let dst_mac = MacAddr::from_ipv4(Ipv4Addr::from(dst)).0;
        let builder = PacketBuilder::ethernet2(src_mac, dst_mac).ipv4(src, dst, 64);
        let mut frame = Vec::new();
        if tcp {
            let mut b = builder.tcp(sport, dport, 1000, 64_000);
            if flags & 0x02 != 0 {
                b = b.syn();
            }
            if flags & 0x10 != 0 {
                b = b.ack(1);
            }
            if flags & 0x01 != 0 {
                b = b.fin();
            }
            if flags & 0x04 != 0 {
                b = b.rst();
            }
            b.write(&mut frame, b"hello").unwrap();
        } else {
            builder
                .udp(sport, dport)
                .write(&mut frame, b"hello")
                .unwrap();
        }
        frame
    }

    /// The inner frame the task program let out: as it was for a local
    /// task, after the outer headers when it was encapsulated.
    fn delivered(sent: &[u8], out: &[u8]) -> Vec<u8> {
        if out.len() == sent.len() + INNER {
            out[INNER..].to_vec()
        } else {
            out.to_vec()
        }
    }

    /// Asserts that the IPv4 header and the TCP/UDP checksum of `frame`
    /// are valid; returns its destination address.
    fn checked(frame: &[u8]) -> [u8; 4] {
        let ip = &frame[14..34];
        assert_eq!(checksum(ip), 0, "IPv4 header checksum");
        let l4 = &frame[34..];
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&ip[12..20]);
        pseudo.extend_from_slice(&[0, ip[9]]);
        pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        pseudo.extend_from_slice(l4);
        let at = if ip[9] == 6 { 16 } else { 6 };
        if !(ip[9] == 17 && l4[at..at + 2] == [0, 0]) {
            assert_eq!(checksum(&pseudo), 0, "TCP/UDP checksum");
        }
        // etherparse reads it back, too.
        etherparse::SlicedPacket::from_ethernet(frame).expect("a valid frame");
        [ip[16], ip[17], ip[18], ip[19]]
    }

    const VIP: [u8; 4] = [10, 0, 1, 100];

    #[test]
    fn a_vip_flow_goes_to_the_backend_the_userspace_engine_picks() {
        use shoal_dataplane::wire::flow::{FlowKey, Protocol};
        use std::net::SocketAddrV4;

        let tables = service_tables("", &["10.0.1.4"]);
        let programs = loaded_with(&tables);
        let fdb = Fdb::build(&tables, 1500, |_, _| None);
        let (_, segment) = fdb.segment_by_vni(VNI).unwrap();
        let set = &segment.vip(Ipv4Addr::from(VIP)).unwrap().backends;
        let mut seen = std::collections::BTreeMap::new();
        let mut x: u32 = 0x1234_5678;
        for i in 0..1000 {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let sport = 1024 + (x >> 16) as u16 % 60_000;
            // web serves TCP 80 and UDP 53.
            let tcp = i % 2 == 0;
            let port = if tcp { 80 } else { 53 };
            let frame = task_flow(tcp, sport, VIP, port, 0x02);
            let (action, out) = run_task(&programs, &frame);
            assert_eq!(action, TC_ACT_REDIRECT, "flow {i}");
            let inner = delivered(&frame, &out);
            let backend = checked(&inner);
            let key = FlowKey {
                proto: if tcp { Protocol::Tcp } else { Protocol::Udp },
                src: SocketAddrV4::new(Ipv4Addr::from(TASK_IP), sport),
                dst: SocketAddrV4::new(Ipv4Addr::from(VIP), port),
            };
            assert_eq!(Some(Ipv4Addr::from(backend)), set.pick(&key), "flow {i}");
            let mac = MacAddr::from_ipv4(Ipv4Addr::from(backend)).0;
            assert_eq!(&inner[0..6], &mac, "the backend's MAC");
            *seen.entry(backend).or_insert(0) += 1;
        }
        // Both backends, the local one delivered and the remote one sent.
        assert_eq!(seen.len(), 2, "{seen:?}");
    }

    #[test]
    fn a_syn_on_a_time_wait_tuple_opens_a_new_connection_off_a_draining_backend() {
        let mut programs = loaded_with(&service_tables("", &["10.0.1.4"]));
        let remote = [10, 0, 1, 3];
        let sport = opened_to(&programs, true, remote);
        let client = |programs: &Programs, flags: u8| {
            let frame = task_flow(true, sport, VIP, 80, flags);
            let (action, out) = run_task(programs, &frame);
            assert_eq!(action, TC_ACT_REDIRECT);
            checked(&delivered(&frame, &out))
        };
        // The backend's segments come back inside VXLAN, with the VIP.
        let backend = |programs: &Programs, flags: u8| {
            let reply = flow_frame(true, (remote, 80), (TASK_IP, sport), flags);
            let (action, out) = run(programs, &vxlan(VNI, &reply));
            assert_eq!(action, XDP_REDIRECT);
            assert_eq!(source(&out[out.len() - reply.len()..]), (VIP, 80));
        };
        backend(&programs, 0x12);
        assert_eq!(client(&programs, 0x10), remote);
        // The backend drains: the open connection stays with it, and a
        // stray SYN on it changes nothing.
        reinstall(
            &mut programs,
            &service_tables(", state: draining", &["10.0.1.4"]),
        );
        assert_eq!(client(&programs, 0x10), remote);
        assert_eq!(client(&programs, 0x02), remote);
        // Closed from both ends (TIME_WAIT): a SYN on the same ports opens
        // a new connection, which no draining backend takes.
        assert_eq!(client(&programs, 0x11), remote);
        backend(&programs, 0x11);
        assert_eq!(client(&programs, 0x02), [10, 0, 1, 2]);
    }

    #[test]
    fn a_sweep_counts_live_flows_and_removes_timed_out_ones() {
        let mut programs = loaded_with(&service_tables("", &["10.0.1.4"]));
        for (tcp, port) in [(true, 80), (false, 53)] {
            let (action, _) = run_task(&programs, &task_flow(tcp, 40_000, VIP, port, 0x02));
            assert_eq!(action, TC_ACT_REDIRECT);
        }
        let mut flows = programs.take_flows().unwrap();
        let now = shoal_dataplane::sys::clock::monotonic_ms();
        assert_eq!(flows.sweep(now), [2, 2]);
        // 31 s on, the unanswered UDP flow has timed out (30 s), the SYN
        // not yet (120 s); 121 s on, neither is left.
        assert_eq!(flows.sweep(now + 31_000), [1, 1]);
        assert_eq!(flows.sweep(now + 121_000), [0, 0]);
        assert_eq!(flows.sweep(now), [0, 0], "removed, not only skipped");
    }

    #[test]
    fn a_vip_refuses_other_ports_and_protocols_and_counts_them() {
        let programs = loaded_with(&service_tables("", &["10.0.1.4"]));
        let before = task_counters(&programs);
        // Port 81 is not published; ICMP has no port.
        assert_eq!(
            run_task(&programs, &task_flow(true, 40000, VIP, 81, 0x02)).0,
            TC_ACT_SHOT
        );
        let mut icmp = Vec::new();
        PacketBuilder::ethernet2(TASK_MAC, [2, 0, 0, 0, 0, 1])
            .ipv4(TASK_IP, VIP, 64)
            .icmpv4_echo_request(1, 1)
            .write(&mut icmp, b"ping")
            .unwrap();
        assert_eq!(run_task(&programs, &icmp).0, TC_ACT_SHOT);
        let d = delta(&before, &task_counters(&programs));
        assert_eq!(d.drops[DropReason::NoServicePort.index()], 2);
    }

    #[test]
    fn an_established_vip_flow_keeps_its_backend_until_it_is_removed() {
        let client = |programs: &Programs, sport: u16, flags: u8| {
            let frame = task_flow(true, sport, VIP, 80, flags);
            let (action, out) = run_task(programs, &frame);
            assert_eq!(action, TC_ACT_REDIRECT);
            checked(&delivered(&frame, &out))
        };
        let mut programs = loaded_with(&service_tables("", &["10.0.1.4"]));
        let install = |programs: &mut Programs, tables: &Tables| {
            reinstall(programs, tables);
        };
        // Flows to each backend, established.
        let mut on = std::collections::BTreeMap::new();
        for sport in 20_000..20_064 {
            let b = client(&programs, sport, 0x02);
            assert_eq!(client(&programs, sport, 0x10), b);
            on.entry(b).or_insert(sport);
        }
        let (&local, &to_local) = on.iter().find(|(b, _)| **b == [10, 0, 1, 2]).unwrap();
        let (_, &to_remote) = on.iter().find(|(b, _)| **b == [10, 0, 1, 3]).unwrap();

        // Another service changes, then the remote backend drains: both
        // flows keep their backends, and new flows go to the local one.
        install(&mut programs, &service_tables("", &["10.0.1.3"]));
        install(
            &mut programs,
            &service_tables(", state: draining", &["10.0.1.3"]),
        );
        assert_eq!(client(&programs, to_local, 0x10), local);
        assert_eq!(client(&programs, to_remote, 0x10), [10, 0, 1, 3]);
        for sport in 30_000..30_016 {
            assert_eq!(client(&programs, sport, 0x02), local);
        }

        // The remote backend is removed: its flow is repicked.
        let mut gone = service_tables("", &["10.0.1.3"]);
        gone.services[0].backends.pop();
        install(&mut programs, &gone);
        assert_eq!(client(&programs, to_remote, 0x10), local);
        assert_eq!(client(&programs, to_local, 0x10), local);

        // A flow that closed opens afresh on a new SYN; one that is open
        // keeps its backend on a stray SYN.
        install(&mut programs, &service_tables("", &["10.0.1.3"]));
        assert_eq!(client(&programs, to_local, 0x01 | 0x10), local);
        let fresh = client(&programs, to_local, 0x02);
        let tables = service_tables("", &["10.0.1.3"]);
        let fdb = Fdb::build(&tables, 1500, |_, _| None);
        let (_, segment) = fdb.segment_by_vni(VNI).unwrap();
        let set = &segment.vip(Ipv4Addr::from(VIP)).unwrap().backends;
        let key = shoal_dataplane::wire::flow::FlowKey {
            proto: shoal_dataplane::wire::flow::Protocol::Tcp,
            src: std::net::SocketAddrV4::new(Ipv4Addr::from(TASK_IP), to_local),
            dst: std::net::SocketAddrV4::new(Ipv4Addr::from(VIP), 80),
        };
        assert_eq!(Some(Ipv4Addr::from(fresh)), set.pick(&key));
    }

    /// A client port of the task behind the loopback whose flow to the
    /// VIP goes to `backend`, opened (a SYN sent through the program).
    fn opened_to(programs: &Programs, tcp: bool, backend: [u8; 4]) -> u16 {
        let port = if tcp { 80 } else { 53 };
        (40_000..41_000)
            .find(|&sport| {
                let frame = task_flow(tcp, sport, VIP, port, 0x02);
                let (action, out) = run_task(programs, &frame);
                action == TC_ACT_REDIRECT && checked(&delivered(&frame, &out)) == backend
            })
            .expect("a port whose flow goes to the backend")
    }

    /// The source address and port of `frame`'s IPv4 and TCP/UDP headers.
    fn source(frame: &[u8]) -> ([u8; 4], u16) {
        (
            [frame[26], frame[27], frame[28], frame[29]],
            u16::from_be_bytes([frame[34], frame[35]]),
        )
    }

    #[test]
    fn a_local_backends_reply_reaches_the_client_from_the_vip() {
        // A test run names the interface a packet came in by, which must
        // exist: the backend's is a veth in a namespace of the test's own.
        let ns = Namespace::new("shoal-ebpf-vip");
        let (backend_if, _) = ns.veth("va", "vb");
        let path = ns.path.clone();
        netns::run_in(&path, move || {
            let ports = move |ip: Ipv4Addr| match ip.octets() {
                [10, 0, 1, 2] => Some(backend_if),
                [10, 0, 1, 4] => Some(LO),
                _ => None,
            };
            let programs = loaded_with_ports(&service_tables("", &["10.0.1.4"]), ports);
            for tcp in [true, false] {
                let port = if tcp { 80 } else { 53 };
                let sport = opened_to(&programs, tcp, [10, 0, 1, 2]);
                // The backend answers the client.
                let reply = flow_frame(tcp, ([10, 0, 1, 2], port), (TASK_IP, sport), 0x12);
                let (action, out) = programs.test_run_task(backend_if, &reply).unwrap();
                assert_eq!(action, TC_ACT_REDIRECT);
                assert_eq!(checked(&out), TASK_IP);
                assert_eq!(source(&out), (VIP, port), "tcp {tcp}");
            }
            // What no client flow knows passes untouched.
            let stray = flow_frame(true, ([10, 0, 1, 2], 80), (TASK_IP, 1), 0x12);
            let (_, out) = programs.test_run_task(backend_if, &stray).unwrap();
            assert_eq!(out, stray);
        })
        .expect("running in the namespace");
    }

    #[test]
    fn a_remote_backends_reply_is_translated_as_it_is_decapsulated() {
        let programs = loaded_with(&service_tables("", &["10.0.1.4"]));
        for (tcp, zero_udp_sum) in [(true, false), (false, false), (false, true)] {
            let port = if tcp { 80 } else { 53 };
            let sport = opened_to(&programs, tcp, [10, 0, 1, 3]);
            let mut reply = flow_frame(tcp, ([10, 0, 1, 3], port), (TASK_IP, sport), 0x12);
            if zero_udp_sum {
                reply[40..42].copy_from_slice(&[0, 0]);
            }
            let (action, out) = run(&programs, &vxlan(VNI, &reply));
            assert_eq!(action, XDP_REDIRECT);
            let inner = &out[out.len() - reply.len()..];
            assert_eq!(checked(inner), TASK_IP);
            assert_eq!(source(inner), (VIP, port), "tcp {tcp}");
            if zero_udp_sum {
                assert_eq!(&inner[40..42], &[0, 0], "no UDP checksum stays none");
            }
        }
    }

    /// The MAC of 10.0.1.3, a remote VTEP's station asking over VXLAN.
    const ASKER_MAC: [u8; 6] = [0x02, 0x42, 10, 0, 1, 3];

    /// An inner ARP request from 10.0.1.3 for `target`, broadcast.
    fn inner_arp_request(target: [u8; 4]) -> Vec<u8> {
        let arp = ArpPacket::new(
            ArpHardwareId::ETHERNET,
            EtherType::IPV4,
            ArpOperation::REQUEST,
            &ASKER_MAC,
            &[10, 0, 1, 3],
            &[0; 6],
            &target,
        )
        .unwrap();
        let mut inner = Vec::new();
        PacketBuilder::ethernet2(ASKER_MAC, [0xff; 6])
            .arp(arp)
            .write(&mut inner)
            .unwrap();
        inner
    }

    #[test]
    fn arp_inside_vxlan_is_answered_back_to_the_asking_vtep() {
        let underlay = loaded();
        let asker_mac = ASKER_MAC;
        let inner = inner_arp_request([10, 0, 1, 2]);
        let frame = vxlan(VNI, &inner);
        let before = xdp_counters(&underlay);
        let (action, out) = run(&underlay, &frame);
        assert_eq!(action, XDP_REDIRECT, "back out of the interface it came by");
        // Outer: back to the peer node, from its VXLAN port to its VXLAN port.
        assert_eq!(&out[0..6], &PEER_MAC);
        assert_eq!(&out[6..12], &NODE_MAC);
        assert_eq!(&out[26..30], &NODE);
        assert_eq!(&out[30..34], &PEER);
        assert_eq!(checksum(&out[14..34]), 0, "outer IPv4 checksum");
        assert_eq!(&out[34..36], &VXLAN_PORT.to_be_bytes());
        assert_eq!(&out[36..38], &VXLAN_PORT.to_be_bytes());
        assert_eq!(&out[40..42], &[0, 0], "no UDP checksum");
        assert_eq!(&out[42..50], &vxlan_header(VNI));
        // Inner: the reply from the station the tables name.
        let station = MacAddr::from_ipv4(Ipv4Addr::new(10, 0, 1, 2)).0;
        let mut want = Vec::new();
        want.extend_from_slice(&asker_mac);
        want.extend_from_slice(&station);
        want.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2]);
        want.extend_from_slice(&station);
        want.extend_from_slice(&[10, 0, 1, 2]);
        want.extend_from_slice(&asker_mac);
        want.extend_from_slice(&[10, 0, 1, 3]);
        assert_eq!(&out[INNER..], &want[..]);
        let d = delta(&before, &xdp_counters(&underlay));
        assert_eq!((d.answered, d.arp_replies), (1, 1));
        // For an address the tables do not know: no answer, counted.
        let mut unknown = inner.clone();
        unknown[38..42].copy_from_slice(&[10, 0, 1, 9]);
        let before = xdp_counters(&underlay);
        assert_eq!(run(&underlay, &vxlan(VNI, &unknown)).0, XDP_DROP);
        let d = delta(&before, &xdp_counters(&underlay));
        assert_eq!(d.drops[DropReason::UnknownDestination.index()], 1);
    }

    /// An underlay address that is no node in the tables.
    const STRANGER: [u8; 4] = [192, 168, 0, 66];

    /// Runs `frame` and returns the action, the frame as the program left
    /// it and what the counters moved by.
    fn run_counted(programs: &Programs, frame: &[u8]) -> (u32, Vec<u8>, Counters) {
        let before = xdp_counters(programs);
        let (action, out) = run(programs, frame);
        (action, out, delta(&before, &xdp_counters(programs)))
    }

    #[test]
    fn vxlan_from_a_stranger_is_dropped_unread_and_counted() {
        let underlay = loaded();
        let to_task = inner_frame([10, 0, 1, 2]);
        let arp = inner_arp_request([10, 0, 1, 2]);
        let mut bad_flags = vxlan_from(STRANGER, VNI, &to_task);
        bad_flags[INNER - 8] = 0x0c;
        // A well-formed datagram to a local task, an ARP request for it,
        // and one whose VXLAN header is bad: none is read, none is answered.
        for (what, frame) in [
            ("a datagram to a task", vxlan_from(STRANGER, VNI, &to_task)),
            ("an ARP request", vxlan_from(STRANGER, VNI, &arp)),
            ("a bad VXLAN header", bad_flags),
        ] {
            let (action, out, d) = run_counted(&underlay, &frame);
            assert_eq!(action, XDP_DROP, "{what}");
            assert_eq!(out, frame, "{what} is left as it came");
            assert_eq!(d.drops[DropReason::UnknownPeer.index()], 1, "{what}");
            assert_eq!(d.drops.iter().sum::<u64>(), 1, "{what}");
            assert_eq!(
                (d.packets, d.redirected, d.answered, d.arp_replies),
                (1, 0, 0, 0),
                "{what}"
            );
        }
        // The same from the peer node, and from this node itself: through
        // as before.
        for from in [PEER, NODE] {
            let (action, out, d) = run_counted(&underlay, &vxlan_from(from, VNI, &to_task));
            assert_eq!((action, out), (XDP_REDIRECT, to_task.clone()), "{from:?}");
            assert_eq!(d.drops.iter().sum::<u64>(), 0);
        }
        let (action, _, d) = run_counted(&underlay, &vxlan(VNI, &arp));
        assert_eq!((action, d.arp_replies), (XDP_REDIRECT, 1));
        // UDP to another port is not VXLAN: the kernel's, whoever sends it.
        let other_port = underlay_udp_from(STRANGER, NODE, VXLAN_PORT + 1, b"x");
        assert_eq!(run(&underlay, &other_port).0, XDP_PASS);
    }

    #[test]
    fn the_nodes_follow_the_tables() {
        let mut programs = loaded();
        let to_task = inner_frame([10, 0, 1, 2]);
        let from_peer = vxlan(VNI, &to_task);
        let install = |programs: &mut Programs, tables: &Tables| {
            let want = Maps::from_tables(
                tables,
                underlay(VXLAN_PORT),
                |_, ip| task_ifindex(ip),
                programs.installed(),
            );
            programs.install(&want).unwrap();
        };
        // The peer's only endpoint goes: it is no node any more.
        let mut tables = Tables::from_yaml_str(TABLES).unwrap();
        tables.endpoints.retain(|e| e.node.octets() != PEER);
        install(&mut programs, &tables);
        let (action, _, d) = run_counted(&programs, &from_peer);
        assert_eq!(action, XDP_DROP);
        assert_eq!(d.drops[DropReason::UnknownPeer.index()], 1);
        // Listed as a peer (a node without endpoints): taken again.
        tables.peers.push(Ipv4Addr::from(PEER));
        install(&mut programs, &tables);
        assert_eq!(run(&programs, &from_peer).0, XDP_REDIRECT);
    }

    /// The internet checksum of `bytes` (0 when they hold a valid one).
    fn checksum(bytes: &[u8]) -> u16 {
        let mut sum: u32 = bytes
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    const TC_ACT_SHOT: i32 = 2;
    const TC_ACT_REDIRECT: i32 = 7;
    const TASK_MAC: [u8; 6] = [0x02, 0x42, 10, 0, 1, 4];
    const TASK_IP: [u8; 4] = [10, 0, 1, 4];
    const GATEWAY: [u8; 4] = [10, 0, 1, 1];

    /// Runs the task program on `frame` sent by the task behind the
    /// loopback (10.0.1.4).
    fn run_task(programs: &Programs, frame: &[u8]) -> (i32, Vec<u8>) {
        programs
            .test_run_task(LO, frame)
            .expect("BPF_PROG_TEST_RUN")
    }

    fn task_counters(programs: &Programs) -> Counters {
        programs.counters(counters::TASK).unwrap()
    }

    /// What the userspace VTEP decides for `frame` from the task behind the
    /// loopback, with the answer it writes: the reference the task program
    /// is held to.
    fn userspace(frame: &[u8]) -> (FromPort, Vec<u8>) {
        let tables = Tables::from_yaml_str(TABLES).unwrap();
        let fdb = Fdb::build(&tables, 1500, |_, ip| task_ifindex(ip).map(|i| i as PortId));
        let (_, segment) = fdb.segment_by_vni(VNI).expect("the segment");
        let mut out = Vec::new();
        let verdict = vtep::from_port(segment, frame, false, &mut out);
        (verdict, out)
    }

    /// A UDP datagram the task sends to `dst` with `payload` bytes.
    fn task_udp(dst: [u8; 4], payload: usize, dont_frag: bool) -> Vec<u8> {
        let dst_mac = MacAddr::from_ipv4(Ipv4Addr::from(dst)).0;
        let mut frame = Vec::new();
        let mut ip =
            etherparse::Ipv4Header::new(0, 64, etherparse::IpNumber::UDP, TASK_IP, dst).unwrap();
        ip.dont_fragment = dont_frag;
        PacketBuilder::ethernet2(TASK_MAC, dst_mac)
            .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
            .udp(40000, 53)
            .write(&mut frame, &vec![0xab; payload])
            .unwrap();
        frame
    }

    fn task_arp(target: [u8; 4]) -> Vec<u8> {
        arp_request_from(TASK_MAC, TASK_IP, target)
    }

    /// An ARP request from `mac`/`ip` for `target`, unpadded.
    fn arp_request_from(mac: [u8; 6], ip: [u8; 4], target: [u8; 4]) -> Vec<u8> {
        let arp = ArpPacket::new(
            ArpHardwareId::ETHERNET,
            EtherType::IPV4,
            ArpOperation::REQUEST,
            &mac,
            &ip,
            &[0; 6],
            &target,
        )
        .unwrap();
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(mac, [0xff; 6])
            .arp(arp)
            .write(&mut frame)
            .unwrap();
        frame
    }

    /// A UDP datagram over IPv6, which the overlay does not carry.
    fn task_ipv6() -> Vec<u8> {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(TASK_MAC, [0x33, 0x33, 0, 0, 0, 1])
            .ipv6([0xfe; 16], [0xff; 16], 64)
            .udp(40000, 53)
            .write(&mut frame, &[1, 2, 3])
            .unwrap();
        frame
    }

    #[test]
    fn a_tasks_arp_is_answered_back_into_it() {
        let programs = loaded();
        let gateway_mac = [0x02, 0x53, 0x48, 0, 0x10, 0x01];
        let remote_mac = MacAddr::from_ipv4(Ipv4Addr::new(10, 0, 1, 3)).0;
        for (target, mac) in [(GATEWAY, gateway_mac), ([10, 0, 1, 3], remote_mac)] {
            let before = task_counters(&programs);
            let request = task_arp(target);
            let (action, out) = run_task(&programs, &request);
            assert_eq!(action, TC_ACT_REDIRECT, "ARP for {target:?}");
            let (verdict, reference) = userspace(&request);
            assert_eq!(verdict, FromPort::Reply);
            assert_eq!(out, reference, "the userspace VTEP's answer, byte for byte");
            let mut want = Vec::new();
            want.extend_from_slice(&TASK_MAC);
            want.extend_from_slice(&mac);
            want.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2]);
            want.extend_from_slice(&mac);
            want.extend_from_slice(&target);
            want.extend_from_slice(&TASK_MAC);
            want.extend_from_slice(&TASK_IP);
            assert_eq!(out, want, "ARP for {target:?}");
            let d = delta(&before, &task_counters(&programs));
            assert_eq!(
                (d.packets, d.answered, d.arp_replies, d.redirected),
                (1, 1, 1, 1)
            );
        }
        let before = task_counters(&programs);
        assert_eq!(run_task(&programs, &task_arp([10, 0, 1, 9])).0, TC_ACT_SHOT);
        assert_eq!(
            userspace(&task_arp([10, 0, 1, 9])).0,
            FromPort::Drop(vtep::DropReason::UnknownDestination)
        );
        let d = delta(&before, &task_counters(&programs));
        assert_eq!(d.drops[DropReason::UnknownDestination.index()], 1);
    }

    #[test]
    fn a_frame_for_a_task_on_this_node_goes_to_its_interface_unchanged() {
        let programs = loaded();
        let frame = task_udp([10, 0, 1, 2], 100, false);
        let before = task_counters(&programs);
        let (action, out) = run_task(&programs, &frame);
        assert_eq!(action, TC_ACT_REDIRECT);
        assert_eq!(out, frame);
        let d = delta(&before, &task_counters(&programs));
        assert_eq!((d.packets, d.redirected, d.vxlan_packets), (1, 1, 0));
        assert_eq!(d.bytes, frame.len() as u64);
    }

    #[test]
    fn a_frame_for_a_remote_task_is_encapsulated_to_its_node() {
        let programs = loaded();
        let frame = task_udp([10, 0, 1, 3], 100, true);
        let before = task_counters(&programs);
        let (action, out) = run_task(&programs, &frame);
        assert_eq!(action, TC_ACT_REDIRECT);
        assert_eq!(out.len(), frame.len() + 50);
        assert_eq!(&out[12..14], &[0x08, 0x00]);
        let ip = &out[14..34];
        assert_eq!(ip[0], 0x45);
        assert_eq!(
            u16::from_be_bytes([ip[2], ip[3]]) as usize,
            out.len() - 14,
            "outer IPv4 total length"
        );
        assert_eq!(ip[9], 17, "UDP");
        assert_eq!(&ip[12..16], &NODE);
        assert_eq!(&ip[16..20], &PEER);
        assert_eq!(checksum(ip), 0, "outer IPv4 checksum");
        let udp = &out[34..42];
        assert!(
            u16::from_be_bytes([udp[0], udp[1]]) >= 0xc000,
            "dynamic source port"
        );
        assert_eq!(&udp[2..4], &VXLAN_PORT.to_be_bytes());
        assert_eq!(
            u16::from_be_bytes([udp[4], udp[5]]) as usize,
            out.len() - 34
        );
        assert_eq!(&udp[6..8], &[0, 0]);
        let mut header = [0u8; 8];
        vtep::encap_header(VNI, &mut header);
        assert_eq!(&out[42..50], &header, "the userspace VTEP's VXLAN header");
        assert_eq!(
            userspace(&frame).0,
            FromPort::Remote(Ipv4Addr::from(PEER)),
            "userspace sends it to the same node"
        );
        assert_eq!(
            &out[INNER..],
            &frame[..],
            "the inner frame as the task sent it"
        );
        let d = delta(&before, &task_counters(&programs));
        assert_eq!((d.packets, d.redirected, d.vxlan_packets), (1, 1, 1));
        assert_eq!(d.vxlan_bytes, frame.len() as u64 + 8);
        // The same flow always leaves from the same source port.
        assert_eq!(run_task(&programs, &frame).1[34..36], out[34..36]);
    }

    #[test]
    fn an_oversize_dont_fragment_packet_gets_fragmentation_needed() {
        let programs = loaded();
        // The segment's MTU is the underlay's less the 50 bytes of VXLAN.
        let mtu = 1450;
        let fits = task_udp([10, 0, 1, 3], mtu - 28, true);
        assert_eq!(run_task(&programs, &fits).0, TC_ACT_REDIRECT);
        let big = task_udp([10, 0, 1, 3], mtu - 27, true);
        let before = task_counters(&programs);
        let (action, out) = run_task(&programs, &big);
        assert_eq!(action, TC_ACT_REDIRECT, "back into the task");
        // A full 1500-byte Ethernet payload too: the same answer as
        // `overlay::icmp` builds, byte for byte.
        let full = task_udp([10, 0, 1, 3], 1500 - 28, true);
        for frame in [&big, &full] {
            let (action, out) = run_task(&programs, frame);
            assert_eq!(action, TC_ACT_REDIRECT, "{} bytes", frame.len());
            let (verdict, reference) = userspace(frame);
            assert_eq!(verdict, FromPort::Reply);
            assert_eq!(
                out, reference,
                "the userspace VTEP's ICMP error, byte for byte"
            );
        }
        assert_eq!(out.len(), 14 + 20 + 8 + 28);
        assert_eq!(&out[0..6], &TASK_MAC);
        assert_eq!(&out[6..12], &[0x02, 0x53, 0x48, 0, 0x10, 0x01]);
        let ip = &out[14..34];
        assert_eq!(
            (ip[9], &ip[12..16], &ip[16..20]),
            (1, &GATEWAY[..], &TASK_IP[..])
        );
        assert_eq!(checksum(ip), 0);
        let icmp = &out[34..];
        assert_eq!((icmp[0], icmp[1]), (3, 4), "fragmentation needed");
        assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]) as usize, mtu);
        assert_eq!(&icmp[8..], &big[14..42], "quotes the header and 8 bytes");
        assert_eq!(checksum(icmp), 0);
        let d = delta(&before, &task_counters(&programs));
        assert_eq!((d.answered, d.icmp_errors), (3, 3));
        // Without don't-fragment the 1500-byte packet is dropped as too big.
        let before = task_counters(&programs);
        let no_df = task_udp([10, 0, 1, 3], 1500 - 28, false);
        let (action, _) = run_task(&programs, &no_df);
        assert_eq!(action, TC_ACT_SHOT);
        assert_eq!(
            userspace(&no_df).0,
            FromPort::Drop(vtep::DropReason::TooBig)
        );
        let d = delta(&before, &task_counters(&programs));
        assert_eq!(d.drops[DropReason::TooBig.index()], 1);
    }

    #[test]
    fn a_tasks_frames_off_the_segment_or_malformed_are_dropped() {
        let mut programs = loaded();
        let cases = [
            (task_udp([203, 0, 113, 5], 10, false), DropReason::NoRoute),
            (
                task_udp([10, 0, 1, 9], 10, false),
                DropReason::UnknownDestination,
            ),
            (task_ipv6(), DropReason::UnsupportedProtocol),
        ];
        for (frame, reason) in cases {
            let before = task_counters(&programs);
            assert_eq!(run_task(&programs, &frame).0, TC_ACT_SHOT, "{reason:?}");
            let d = delta(&before, &task_counters(&programs));
            assert_eq!(d.drops[reason.index()], 1, "{reason:?}");
            match userspace(&frame).0 {
                FromPort::Drop(r) => assert_eq!(r.name(), reason.name(), "userspace agrees"),
                // Outside the overlay, the userspace engine drops as no route
                // what no routing-mesh flow knows: none here.
                FromPort::Outside => assert_eq!(reason, DropReason::NoRoute),
                other => panic!("userspace does not drop it: {other:?}"),
            }
        }
        // Every truncation: the kernel refuses to build some of them into
        // an sk_buff at all; those it builds are dropped.
        let good = task_udp([10, 0, 1, 3], 40, false);
        let arp = task_arp(GATEWAY);
        let mut ran = 0;
        for (what, frame) in [("a datagram", &good), ("an ARP request", &arp)] {
            for len in 14..frame.len() {
                if let Ok((action, _)) = programs.test_run_task(LO, &frame[..len]) {
                    assert_eq!(action, TC_ACT_SHOT, "{len} bytes of {what}");
                    ran += 1;
                }
            }
        }
        assert!(ran > 40, "only {ran} truncations ran");
        let mut x: u32 = 0x2545_f491;
        for len in 14..200 {
            let frame: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            assert_eq!(run_task(&programs, &frame).0, TC_ACT_SHOT, "garbage");
        }
        // From an interface that is no task's: nothing goes anywhere.
        programs.install(&maps(|_| None, VXLAN_PORT)).unwrap();
        let before = task_counters(&programs);
        assert_eq!(run_task(&programs, &good).0, TC_ACT_SHOT);
        let d = delta(&before, &task_counters(&programs));
        assert_eq!(d.drops[DropReason::NotLocal.index()], 1);
    }

    /// A network namespace removed on drop, even when the test fails, with
    /// IPv6 off so that no link sends anything of its own.
    struct Namespace {
        name: &'static str,
        path: std::path::PathBuf,
    }

    impl Namespace {
        fn new(name: &'static str) -> Namespace {
            let _ = netns::remove(name);
            let path = netns::create(name).expect("creating the namespace");
            let ns = Namespace { name, path };
            for knob in ["all", "default"] {
                let key = format!("net.ipv6.conf.{knob}.disable_ipv6=1");
                command("ip", &["netns", "exec", name, "sysctl", "-qw", &key]);
            }
            ns
        }

        /// A veth pair `a`/`b`, both up, and their interface indexes.
        fn veth(&self, a: &str, b: &str) -> (u32, u32) {
            let n = self.name;
            command(
                "ip",
                &["-n", n, "link", "add", a, "type", "veth", "peer", "name", b],
            );
            command("ip", &["-n", n, "link", "set", a, "up"]);
            command("ip", &["-n", n, "link", "set", b, "up"]);
            (self.ifindex(a), self.ifindex(b))
        }

        fn ifindex(&self, link: &str) -> u32 {
            command("ip", &["-n", self.name, "-o", "link", "show", link])
                .split(':')
                .next()
                .and_then(|i| i.trim().parse().ok())
                .expect("an interface index")
        }

        fn link(&self, link: &str) -> String {
            command("ip", &["-n", self.name, "-d", "link", "show", link])
        }
    }

    impl Drop for Namespace {
        fn drop(&mut self) {
            let _ = netns::remove(self.name);
        }
    }

    fn command(program: &str, args: &[&str]) -> String {
        let out = Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn attaches_natively_to_a_veth_and_is_gone_after_drop() {
        let ns = Namespace::new("shoal-ebpf-attach");
        let (xa, _) = ns.veth("xa", "xb");
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (attached_tx, attached) = std::sync::mpsc::channel();
        let path = ns.path.clone();
        let holder = std::thread::spawn(move || {
            netns::run_in(&path, move || {
                let mut underlay = loaded();
                let result = underlay.attach(xa, XdpMode::Driver);
                attached_tx.send(result.map_err(|e| e.to_string())).unwrap();
                // Hold the program until the test has looked (or gone).
                let _ = released.recv();
                drop(underlay);
            })
        });
        let result = attached.recv().unwrap();
        let link = ns.link("xa");
        drop(release);
        holder.join().unwrap().unwrap();
        result.expect("attaching in native mode");
        assert!(link.contains("prog/xdp id"), "no XDP program on xa: {link}");
        assert!(
            !link.contains("xdpgeneric"),
            "attached in generic mode: {link}"
        );
        let link = ns.link("xa");
        assert!(
            !link.contains("prog/xdp"),
            "XDP program left behind: {link}"
        );
    }
}
