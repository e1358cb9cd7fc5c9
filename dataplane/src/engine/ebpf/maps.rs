//! What the programs' maps hold for a [`Tables`], computed without
//! touching the kernel: the loader writes it, tests read it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use shoal_ebpf_common::{
    BACKEND_ACTIVE, BACKEND_DRAINING, BackendEntry, BackendKey, Config, FdbEntry, FdbKey, IS_NODE,
    Ipv4Key, MAGLEV_SLOTS, MAX_VIP_TABLES, NO_TABLE, OwnedAddr, Port, Segment, VipEntry, VipKey,
};

use crate::lb::maglev;
use crate::overlay::fdb::{Fdb, Vip, gateway_mac};
use crate::tables::{EndpointState, MacAddr, Protocol, Tables};

/// The node's underlay, as the programs need it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Underlay {
    /// Index of the underlay interface (0 when nothing is encapsulated, as
    /// in tests of the underlay program alone).
    pub ifindex: u32,
    pub mtu: u16,
    /// UDP port of VXLAN.
    pub vxlan_port: u16,
}

/// The contents of the programs' maps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Maps {
    pub config: Config,
    pub owned: BTreeMap<Ipv4Key, OwnedAddr>,
    /// Underlay addresses of the nodes in the tables ([`Tables::nodes`],
    /// as the userspace engine's `Fdb::is_node`): the only senders of VXLAN
    /// taken. Every value is [`IS_NODE`].
    pub nodes: BTreeMap<Ipv4Key, u8>,
    pub segments: BTreeMap<u32, Segment>,
    pub fdb: BTreeMap<FdbKey, FdbEntry>,
    /// Node-side ifindex of each task interface -> the task behind it.
    pub ports: BTreeMap<u32, Port>,
    pub vips: BTreeMap<VipKey, VipEntry>,
    pub backends: BTreeMap<BackendKey, BackendEntry>,
    /// Each Maglev table by its index: [`MAGLEV_SLOTS`] backend addresses,
    /// `[0; 4]` in every slot when no backend is active.
    pub maglev: BTreeMap<u32, Slots>,
    /// VIPs left out because every table was taken.
    pub vips_left_out: usize,
}

/// One Maglev table's slots, shared between installs that keep it.
pub type Slots = Arc<[[u8; 4]]>;

impl Maps {
    /// The maps for `tables` on `underlay`. `ifindex` names the node-side
    /// task interface of each local endpoint (by network name and IP); local
    /// endpoints it does not know are left out, as the userspace forwarding
    /// database leaves out ports that are not up yet.
    ///
    /// Each VIP keeps the Maglev table index it had in `previous` (what the
    /// kernel holds), so that adding or removing a VIP rewrites no other
    /// VIP's table; a new VIP takes the lowest free index.
    pub fn from_tables(
        tables: &Tables,
        underlay: Underlay,
        ifindex: impl Fn(&str, Ipv4Addr) -> Option<u32>,
        previous: &Maps,
    ) -> Maps {
        let mut maps = Maps {
            config: Config {
                underlay: tables.node.underlay.octets(),
                vxlan_port: underlay.vxlan_port,
                has_vips: 0,
                _pad: 0,
                underlay_ifindex: underlay.ifindex,
            },
            nodes: tables
                .nodes()
                .map(|ip| (Ipv4Key { addr: ip.octets() }, IS_NODE))
                .collect(),
            ..Maps::default()
        };
        for net in &tables.networks {
            maps.segments.insert(
                net.vni,
                Segment {
                    subnet: net.subnet.network().octets(),
                    gateway: net.gateway_or_default().octets(),
                    gateway_mac: gateway_mac(net.vni).0,
                    mtu: net.mtu_or(underlay.mtu),
                    prefix_len: net.subnet.prefix_len(),
                    _pad: [0; 3],
                },
            );
        }
        for ep in &tables.endpoints {
            let Some(net) = tables.network(&ep.network) else {
                continue;
            };
            let ifindex = if tables.is_local(ep) {
                match ifindex(&ep.network, ep.ip) {
                    Some(i) if i != 0 => i,
                    _ => continue,
                }
            } else {
                0
            };
            let mac = ep.mac_or_default().0;
            maps.fdb.insert(
                FdbKey {
                    vni: net.vni,
                    ip: ep.ip.octets(),
                },
                FdbEntry {
                    node: ep.node.octets(),
                    ifindex,
                    mac,
                    _pad: [0; 2],
                },
            );
            if ifindex != 0 {
                maps.ports.insert(
                    ifindex,
                    Port {
                        vni: net.vni,
                        ip: ep.ip.octets(),
                        mac,
                        _pad: [0; 2],
                    },
                );
            }
        }
        maps.add_vips(tables, underlay.mtu, previous);
        maps.config.has_vips = u8::from(!maps.vips.is_empty());
        maps
    }

    /// The VIPs of `tables`, with the backend sets and Maglev tables the
    /// userspace engine builds for them (`Fdb`), so both engines pick the
    /// same backend for a flow.
    fn add_vips(&mut self, tables: &Tables, underlay_mtu: u16, previous: &Maps) {
        let fdb = Fdb::build(tables, underlay_mtu, |_, _| None);
        let mut vips: Vec<(u32, Ipv4Addr, &Vip)> = fdb
            .segments()
            .iter()
            .flat_map(|seg| seg.vips().map(move |(ip, v)| (seg.vni, ip, v)))
            .collect();
        vips.sort_by_key(|&(vni, ip, _)| (vni, ip));
        let had: BTreeMap<(u32, [u8; 4]), u32> = previous
            .vips
            .iter()
            .filter(|(_, e)| e.table != NO_TABLE)
            .map(|(k, e)| ((k.vni, k.vip), e.table))
            .collect();
        // A table freed now is taken until the next install: the kernel
        // still sends its old VIP there until the VIP map is synced.
        let mut taken: BTreeSet<u32> = had.values().copied().collect();
        for (vni, ip, vip) in vips {
            let table = match had.get(&(vni, ip.octets())) {
                Some(&t) => t,
                None => match (0..MAX_VIP_TABLES).find(|t| !taken.contains(t)) {
                    Some(t) => {
                        taken.insert(t);
                        t
                    }
                    None => {
                        self.vips_left_out += 1;
                        continue;
                    }
                },
            };
            self.add_vip(vni, ip, vip, table, previous.maglev.get(&table));
        }
    }

    fn add_vip(&mut self, vni: u32, ip: Ipv4Addr, vip: &Vip, table: u32, had: Option<&Slots>) {
        let key = |proto: Protocol, port: u16| VipKey {
            vni,
            vip: ip.octets(),
            port,
            proto: proto.number(),
            _pad: 0,
        };
        // The address is a VIP: what no port entry takes is refused.
        self.vips.insert(
            VipKey::address(vni, ip.octets()),
            VipEntry { table: NO_TABLE },
        );
        if vip.all_ports {
            for proto in [Protocol::Tcp, Protocol::Udp] {
                self.vips.insert(key(proto, 0), VipEntry { table });
            }
        }
        for &(proto, port) in &vip.ports {
            self.vips.insert(key(proto, port), VipEntry { table });
        }
        let backends = vip.backends.backends();
        for b in backends {
            let state = match b.state {
                EndpointState::Active => BACKEND_ACTIVE,
                EndpointState::Draining => BACKEND_DRAINING,
                EndpointState::Down => continue,
            };
            self.backends.insert(
                BackendKey {
                    table,
                    addr: b.ip.octets(),
                },
                BackendEntry { state },
            );
        }
        let slots: Slots = vip
            .backends
            .maglev()
            .table()
            .iter()
            .map(|&i| match backends.get(i as usize) {
                Some(b) if i != maglev::EMPTY => b.ip.octets(),
                _ => [0; 4],
            })
            .collect();
        debug_assert_eq!(slots.len(), MAGLEV_SLOTS as usize);
        // The same slots as before: share them, so that comparing the
        // installs is a pointer check and nothing is rewritten.
        let slots = match had {
            Some(h) if *h == slots => Arc::clone(h),
            _ => slots,
        };
        self.maglev.insert(table, slots);
    }

    /// Adds an address whose ARP requests the program answers with `mac`.
    pub fn own(&mut self, ip: Ipv4Addr, mac: MacAddr) {
        self.owned.insert(
            Ipv4Key { addr: ip.octets() },
            OwnedAddr {
                mac: mac.0,
                _pad: [0; 2],
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::Tables;

    const UNDERLAY: Underlay = Underlay {
        ifindex: 3,
        mtu: 1500,
        vxlan_port: 4789,
    };

    const TABLES: &str = "
node: {name: a, underlay: 192.168.0.1}
networks:
  - {name: front, vni: 4097, subnet: 10.0.1.0/24}
endpoints:
  - {network: front, ip: 10.0.1.2, node: 192.168.0.1, netns: t1}
  - {network: front, ip: 10.0.1.3, node: 192.168.0.2}
  - {network: front, ip: 10.0.1.4, node: 192.168.0.1, netns: t2, mac: '02:00:00:00:00:04'}
";

    #[test]
    fn local_endpoints_get_their_interface_and_remote_ones_zero() {
        let tables = Tables::from_yaml_str(TABLES).unwrap();
        let maps = Maps::from_tables(
            &tables,
            UNDERLAY,
            |net, ip| (net == "front" && ip == Ipv4Addr::new(10, 0, 1, 2)).then_some(7),
            &Maps::default(),
        );
        assert_eq!(maps.config.underlay, [192, 168, 0, 1]);
        assert_eq!(maps.config.vxlan_port, 4789);
        assert_eq!(maps.config.underlay_ifindex, 3);
        assert_eq!(maps.config.has_vips, 0);
        assert_eq!(
            maps.segments[&4097],
            Segment {
                subnet: [10, 0, 1, 0],
                gateway: [10, 0, 1, 1],
                gateway_mac: gateway_mac(4097).0,
                mtu: 1450,
                prefix_len: 24,
                _pad: [0; 3]
            }
        );
        let key = |ip: [u8; 4]| FdbKey { vni: 4097, ip };
        let local = maps.fdb[&key([10, 0, 1, 2])];
        assert_eq!(local.ifindex, 7);
        assert_eq!(local.mac, [0x02, 0x42, 10, 0, 1, 2]);
        let remote = maps.fdb[&key([10, 0, 1, 3])];
        assert_eq!(remote.ifindex, 0);
        assert_eq!(remote.node, [192, 168, 0, 2]);
        // 10.0.1.4 is local but its interface is not up: left out.
        assert!(!maps.fdb.contains_key(&key([10, 0, 1, 4])));
        assert_eq!(maps.fdb.len(), 2);
        assert_eq!(maps.ports.len(), 1);
        assert_eq!(maps.ports[&7].ip, [10, 0, 1, 2]);
        assert_eq!(maps.ports[&7].vni, 4097);
    }

    #[test]
    fn the_nodes_are_the_senders_the_userspace_engine_takes() {
        let mut tables = Tables::from_yaml_str(TABLES).unwrap();
        tables.peers.push(Ipv4Addr::new(192, 168, 0, 3));
        let maps = Maps::from_tables(&tables, UNDERLAY, |_, _| None, &Maps::default());
        let nodes: Vec<[u8; 4]> = maps.nodes.keys().map(|k| k.addr).collect();
        // This node, the endpoints' other node, the peer; each once.
        assert_eq!(
            nodes,
            [[192, 168, 0, 1], [192, 168, 0, 2], [192, 168, 0, 3]]
        );
        assert!(maps.nodes.values().all(|&v| v == IS_NODE));
        let fdb = Fdb::build(&tables, 1500, |_, _| None);
        for addr in nodes {
            assert!(fdb.is_node(Ipv4Addr::from(addr)));
        }
    }

    #[test]
    fn owned_addresses_answer_with_their_mac() {
        let tables = Tables::from_yaml_str(TABLES).unwrap();
        let mut maps = Maps::from_tables(&tables, UNDERLAY, |_, _| None, &Maps::default());
        maps.own(Ipv4Addr::new(192, 168, 0, 10), MacAddr([2, 0, 0, 0, 0, 10]));
        let key = Ipv4Key {
            addr: [192, 168, 0, 10],
        };
        assert_eq!(maps.owned[&key].mac, [2, 0, 0, 0, 0, 10]);
    }

    const SERVICES: &str = r#"
node: { name: n1, underlay: 198.18.0.1 }
networks:
  - { name: skynet, vni: 4097, subnet: 10.10.0.0/24 }
endpoints:
  - { network: skynet, ip: 10.10.0.2, node: 198.18.0.1, netns: web1 }
  - { network: skynet, ip: 10.10.0.3, node: 198.18.0.2 }
  - { network: skynet, ip: 10.10.0.4, node: 198.18.0.2 }
services:
  - { name: web, vips: { skynet: 10.10.0.100 }, ports: [ { target: 80 }, { target: 53, protocol: udp } ],
      backends: [ { ip: 10.10.0.2 }, { ip: 10.10.0.3 } ] }
  - { name: api, vips: { skynet: 10.10.0.101 }, ports: [ { target: 8080 } ],
      backends: [ { ip: 10.10.0.4 } ] }
"#;

    fn vip_key(vip: [u8; 4], proto: u8, port: u16) -> VipKey {
        VipKey {
            vni: 4097,
            vip,
            port,
            proto,
            _pad: 0,
        }
    }

    #[test]
    fn vips_name_their_ports_and_a_table_of_the_userspace_picks() {
        use crate::wire::flow::FlowKey;
        use std::net::SocketAddrV4;

        let tables = Tables::from_yaml_str(SERVICES).unwrap();
        let maps = Maps::from_tables(&tables, UNDERLAY, |_, _| None, &Maps::default());
        let web = maps.vips[&vip_key([10, 10, 0, 100], 6, 80)];
        assert_eq!(maps.vips[&vip_key([10, 10, 0, 100], 17, 53)], web);
        assert!(!maps.vips.contains_key(&vip_key([10, 10, 0, 100], 6, 53)));
        let api = maps.vips[&vip_key([10, 10, 0, 101], 6, 8080)];
        assert_ne!(web.table, api.table);
        assert_eq!(maps.vips[&vip_key([10, 10, 0, 100], 0, 0)].table, NO_TABLE);
        assert_eq!(maps.config.has_vips, 1);
        assert_eq!(maps.vips.len(), 5);
        assert_eq!(maps.backends.len(), 3);
        assert_eq!(
            maps.backends[&BackendKey {
                table: web.table,
                addr: [10, 10, 0, 3]
            }]
                .state,
            BACKEND_ACTIVE
        );

        // A slot holds the address the userspace engine picks for every
        // flow hashing to it.
        let fdb = Fdb::build(&tables, 1500, |_, _| None);
        let (_, sky) = fdb.segment_by_vni(4097).unwrap();
        let set = &sky.vip(Ipv4Addr::new(10, 10, 0, 100)).unwrap().backends;
        let slots = &maps.maglev[&web.table];
        assert_eq!(slots.len(), MAGLEV_SLOTS as usize);
        for port in 1000..3000u16 {
            let key = FlowKey {
                proto: Protocol::Tcp,
                src: SocketAddrV4::new(Ipv4Addr::new(10, 10, 0, 9), port),
                dst: SocketAddrV4::new(Ipv4Addr::new(10, 10, 0, 100), 80),
            };
            let h = crate::lb::hash::flow_hash(
                crate::overlay::fdb::LB_FLOW_SEED,
                *key.src.ip(),
                *key.dst.ip(),
                6,
                port,
                80,
            );
            let slot = slots[(h % MAGLEV_SLOTS) as usize];
            assert_eq!(Some(Ipv4Addr::from(slot)), set.pick(&key), "port {port}");
        }
    }

    #[test]
    fn a_vip_keeps_its_table_and_slots_while_others_come_and_go() {
        let tables = Tables::from_yaml_str(SERVICES).unwrap();
        let first = Maps::from_tables(&tables, UNDERLAY, |_, _| None, &Maps::default());
        let api = first.vips[&vip_key([10, 10, 0, 101], 6, 8080)].table;

        // web goes away and comes back: api keeps its table and its slots.
        let mut without = tables.clone();
        without.services.remove(0);
        let second = Maps::from_tables(&without, UNDERLAY, |_, _| None, &first);
        assert_eq!(second.vips[&vip_key([10, 10, 0, 101], 6, 8080)].table, api);
        assert!(Arc::ptr_eq(&second.maglev[&api], &first.maglev[&api]));
        assert_eq!(second.maglev.len(), 1);
        assert_eq!(second.backends.len(), 1);
        let third = Maps::from_tables(&tables, UNDERLAY, |_, _| None, &second);
        assert_eq!(third.vips[&vip_key([10, 10, 0, 101], 6, 8080)].table, api);
        assert_eq!(third.maglev.len(), 2);

        // A draining backend stays listed but holds no slot.
        let mut draining = tables.clone();
        draining.services[0].backends[1].state = EndpointState::Draining;
        let fourth = Maps::from_tables(&draining, UNDERLAY, |_, _| None, &third);
        let web = fourth.vips[&vip_key([10, 10, 0, 100], 6, 80)].table;
        let key = BackendKey {
            table: web,
            addr: [10, 10, 0, 3],
        };
        assert_eq!(fourth.backends[&key].state, BACKEND_DRAINING);
        assert!(fourth.maglev[&web].iter().all(|&a| a == [10, 10, 0, 2]));
        assert!(Arc::ptr_eq(&fourth.maglev[&api], &first.maglev[&api]));
    }
}
