//! What the programs' maps hold for a [`Tables`], computed without
//! touching the kernel: the loader writes it, tests read it.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use shoal_ebpf_common::{Config, FdbEntry, FdbKey, Ipv4Key, OwnedAddr, Port, Segment};

use crate::overlay::fdb::gateway_mac;
use crate::tables::{MacAddr, Tables};

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
    pub segments: BTreeMap<u32, Segment>,
    pub fdb: BTreeMap<FdbKey, FdbEntry>,
    /// Node-side ifindex of each task interface -> the task behind it.
    pub ports: BTreeMap<u32, Port>,
}

impl Maps {
    /// The maps for `tables` on `underlay`. `ifindex` names the node-side
    /// task interface of each local endpoint (by network name and IP); local
    /// endpoints it does not know are left out, as the userspace forwarding
    /// database leaves out ports that are not up yet.
    pub fn from_tables(
        tables: &Tables,
        underlay: Underlay,
        ifindex: impl Fn(&str, Ipv4Addr) -> Option<u32>,
    ) -> Maps {
        let mut maps = Maps {
            config: Config {
                underlay: tables.node.underlay.octets(),
                vxlan_port: underlay.vxlan_port,
                _pad: [0; 2],
                underlay_ifindex: underlay.ifindex,
            },
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
        maps
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
        let maps = Maps::from_tables(&tables, UNDERLAY, |net, ip| {
            (net == "front" && ip == Ipv4Addr::new(10, 0, 1, 2)).then_some(7)
        });
        assert_eq!(maps.config.underlay, [192, 168, 0, 1]);
        assert_eq!(maps.config.vxlan_port, 4789);
        assert_eq!(maps.config.underlay_ifindex, 3);
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
    fn owned_addresses_answer_with_their_mac() {
        let tables = Tables::from_yaml_str(TABLES).unwrap();
        let mut maps = Maps::from_tables(&tables, UNDERLAY, |_, _| None);
        maps.own(Ipv4Addr::new(192, 168, 0, 10), MacAddr([2, 0, 0, 0, 0, 10]));
        let key = Ipv4Key {
            addr: [192, 168, 0, 10],
        };
        assert_eq!(maps.owned[&key].mac, [2, 0, 0, 0, 0, 10]);
    }
}
