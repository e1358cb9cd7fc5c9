//! Packet in, packet out through the underlay XDP program with
//! BPF_PROG_TEST_RUN and preloaded maps, and attaching it to a veth in a
//! throwaway namespace. Needs root and a build with the eBPF programs
//! (scripts/setup.sh installs the toolchain); without them these fail.

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
mod xdp {
    use std::net::Ipv4Addr;
    use std::process::Command;

    use aya::programs::XdpMode;
    use etherparse::{ArpHardwareId, ArpOperation, ArpPacket, EtherType, PacketBuilder};
    use shoal_dataplane::engine::ebpf::UnderlayMaps;
    use shoal_dataplane::engine::ebpf::loader::Underlay;
    use shoal_dataplane::sys::netns;
    use shoal_dataplane::tables::{MacAddr, Tables};
    use shoal_ebpf_common::{Counters, DROP_REASONS, DropReason};

    const XDP_DROP: u32 = 1;
    const XDP_PASS: u32 = 2;
    const XDP_TX: u32 = 3;
    const XDP_REDIRECT: u32 = 4;

    const VXLAN_PORT: u16 = 4789;
    const NODE: [u8; 4] = [192, 168, 0, 1];
    const PEER: [u8; 4] = [192, 168, 0, 2];
    const NODE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
    const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
    const OWNED_IP: [u8; 4] = [192, 168, 0, 100];
    const OWNED_MAC: [u8; 6] = [0x02, 0x5e, 0, 0, 0, 0x64];
    const TASK_IFINDEX: u32 = 42;
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
";

    fn loaded() -> Underlay {
        if let Some(why) = shoal_dataplane::engine::ebpf::unavailable() {
            panic!("the eBPF engine cannot run here: {why}");
        }
        let tables = Tables::from_yaml_str(TABLES).unwrap();
        let mut maps = UnderlayMaps::from_tables(&tables, VXLAN_PORT, |net, ip| {
            (net == "front" && ip == Ipv4Addr::new(10, 0, 1, 2)).then_some(TASK_IFINDEX)
        });
        maps.own(Ipv4Addr::from(OWNED_IP), MacAddr(OWNED_MAC));
        let mut underlay = Underlay::load().expect("loading the underlay program");
        underlay.install(&maps).expect("filling its maps");
        underlay
    }

    fn arp_request(target: [u8; 4]) -> Vec<u8> {
        let arp = ArpPacket::new(
            ArpHardwareId::ETHERNET,
            EtherType::IPV4,
            ArpOperation::REQUEST,
            &PEER_MAC,
            &PEER,
            &[0; 6],
            &target,
        )
        .unwrap();
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(PEER_MAC, [0xff; 6])
            .arp(arp)
            .write(&mut frame)
            .unwrap();
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
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(PEER_MAC, NODE_MAC)
            .ipv4(PEER, to, 64)
            .udp(51000, port)
            .write(&mut frame, payload)
            .unwrap();
        frame
    }

    fn vxlan(vni: u32, inner: &[u8]) -> Vec<u8> {
        let payload = [&vxlan_header(vni)[..], inner].concat();
        underlay_udp(NODE, VXLAN_PORT, &payload)
    }

    fn run(underlay: &Underlay, frame: &[u8]) -> (u32, Vec<u8>) {
        underlay.test_run(frame).expect("BPF_PROG_TEST_RUN")
    }

    fn delta(before: &Counters, after: &Counters) -> Counters {
        let mut drops = [0; DROP_REASONS];
        for (i, d) in drops.iter_mut().enumerate() {
            *d = after.drops[i] - before.drops[i];
        }
        Counters {
            packets: after.packets - before.packets,
            bytes: after.bytes - before.bytes,
            passed: after.passed - before.passed,
            answered: after.answered - before.answered,
            redirected: after.redirected - before.redirected,
            drops,
        }
    }

    #[test]
    fn arp_request_for_an_owned_address_is_answered_in_place() {
        let underlay = loaded();
        let request = arp_request(OWNED_IP);
        let before = underlay.counters().unwrap();
        let (action, out) = run(&underlay, &request);
        assert_eq!(action, XDP_TX);
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
        let d = delta(&before, &underlay.counters().unwrap());
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
        let before = underlay.counters().unwrap();
        let (action, out) = run(&underlay, &frame);
        assert_eq!(action, XDP_REDIRECT);
        assert_eq!(out, inner, "the output is the inner frame alone");
        let d = delta(&before, &underlay.counters().unwrap());
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
            let before = underlay.counters().unwrap();
            assert_eq!(run(&underlay, &frame).0, XDP_DROP, "{reason:?}");
            let d = delta(&before, &underlay.counters().unwrap());
            assert_eq!(d.drops[reason.index()], 1, "{reason:?}");
            assert_eq!(d.drops.iter().sum::<u64>(), 1, "{reason:?}");
            assert_eq!(d.packets, 1);
        }
    }

    #[test]
    fn what_the_userspace_engine_answers_itself_passes() {
        let underlay = loaded();
        // A reply to a routing-mesh client outside the overlay subnet.
        let mesh_reply = vxlan(VNI, &inner_frame([203, 0, 113, 5]));
        assert_eq!(run(&underlay, &mesh_reply).0, XDP_PASS);
        // ARP inside the overlay.
        let mut inner_arp = arp_request([10, 0, 1, 2]);
        inner_arp.truncate(42);
        assert_eq!(run(&underlay, &vxlan(VNI, &inner_arp)).0, XDP_PASS);
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
        let before = underlay.counters().unwrap();
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
        let d = delta(&before, &underlay.counters().unwrap());
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
        let tables = Tables::from_yaml_str(TABLES).unwrap();
        let without = UnderlayMaps::from_tables(&tables, VXLAN_PORT, |_, _| None);
        underlay.install(&without).unwrap();
        assert_eq!(run(&underlay, &vxlan(VNI, &inner)).0, XDP_DROP);
        assert_eq!(run(&underlay, &arp_request(OWNED_IP)).0, XDP_PASS);
        // VXLAN port 0 turns decapsulation off.
        let off = UnderlayMaps::from_tables(&tables, 0, |_, _| Some(TASK_IFINDEX));
        underlay.install(&off).unwrap();
        assert_eq!(run(&underlay, &vxlan(VNI, &inner)).0, XDP_PASS);
        assert_eq!(underlay.installed(), &off);
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

    /// The redirect really leaves through the interface the fdb names: the
    /// decapsulated frame, run live, comes out of xa's peer and not ya's
    /// (each peer runs a pass-everything copy of the program that counts).
    #[test]
    fn redirects_to_the_interface_the_fdb_names() {
        let ns = Namespace::new("shoal-ebpf-redirect");
        let (xa, xb) = ns.veth("xa", "xb");
        let (_, yb) = ns.veth("ya", "yb");
        let inner = inner_frame([10, 0, 1, 2]);
        let frame = vxlan(VNI, &inner);
        let counted = netns::run_in(&ns.path, move || {
            let tables = Tables::from_yaml_str(TABLES).unwrap();
            let maps = UnderlayMaps::from_tables(&tables, VXLAN_PORT, |_, ip| {
                (ip == Ipv4Addr::new(10, 0, 1, 2)).then_some(xa)
            });
            let mut sender = loaded();
            sender.install(&maps).unwrap();
            // Empty maps: the receivers pass everything and count it.
            let mut at_xb = Underlay::load().unwrap();
            at_xb.attach(xb, XdpMode::Driver).unwrap();
            let mut at_yb = Underlay::load().unwrap();
            at_yb.attach(yb, XdpMode::Driver).unwrap();
            sender.run_live(&frame).expect("a live run");
            // The peer's NAPI poll may run after the test run returns.
            for _ in 0..1000 {
                if at_xb.counters().unwrap().packets > 0 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            (
                sender.counters().unwrap(),
                at_xb.counters().unwrap(),
                at_yb.counters().unwrap(),
            )
        })
        .unwrap();
        let (sender, at_xb, at_yb) = counted;
        assert_eq!((sender.packets, sender.redirected), (1, 1));
        assert_eq!(
            (at_xb.packets, at_xb.bytes, at_xb.passed),
            (1, inner.len() as u64, 1),
            "the inner frame arrives on xb, alone"
        );
        assert_eq!(at_yb.packets, 0, "nothing arrives on yb");
    }
}
