//! What the underlay program's maps hold for a [`Tables`], computed without
//! touching the kernel: the loader writes it, tests read it.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use shoal_ebpf_common::{Config, FdbEntry, FdbKey, Ipv4Key, OwnedAddr, Segment};

use crate::tables::{MacAddr, Tables};

/// The contents of the underlay program's maps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnderlayMaps {
    pub config: Config,
    pub owned: BTreeMap<Ipv4Key, OwnedAddr>,
    pub segments: BTreeMap<u32, Segment>,
    pub fdb: BTreeMap<FdbKey, FdbEntry>,
}

impl UnderlayMaps {
    /// The maps for `tables` with VXLAN on `vxlan_port`. `ifindex` names the
    /// task interface of each local endpoint (by network name and IP); local
    /// endpoints it does not know are left out, as the userspace forwarding
    /// database leaves out ports that are not up yet.
    pub fn from_tables(
        tables: &Tables,
        vxlan_port: u16,
        ifindex: impl Fn(&str, Ipv4Addr) -> Option<u32>,
    ) -> UnderlayMaps {
        let mut maps = UnderlayMaps {
            config: Config {
                underlay: tables.node.underlay.octets(),
                vxlan_port,
                _pad: [0; 2],
            },
            ..UnderlayMaps::default()
        };
        for net in &tables.networks {
            maps.segments.insert(
                net.vni,
                Segment {
                    subnet: net.subnet.network().octets(),
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
            maps.fdb.insert(
                FdbKey {
                    vni: net.vni,
                    ip: ep.ip.octets(),
                },
                FdbEntry {
                    node: ep.node.octets(),
                    ifindex,
                    mac: ep.mac_or_default().0,
                    _pad: [0; 2],
                },
            );
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
        let maps = UnderlayMaps::from_tables(&tables, 4789, |net, ip| {
            (net == "front" && ip == Ipv4Addr::new(10, 0, 1, 2)).then_some(7)
        });
        assert_eq!(maps.config.underlay, [192, 168, 0, 1]);
        assert_eq!(maps.config.vxlan_port, 4789);
        assert_eq!(
            maps.segments[&4097],
            Segment {
                subnet: [10, 0, 1, 0],
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
    }

    #[test]
    fn owned_addresses_answer_with_their_mac() {
        let tables = Tables::from_yaml_str(TABLES).unwrap();
        let mut maps = UnderlayMaps::from_tables(&tables, 4789, |_, _| None);
        maps.own(Ipv4Addr::new(192, 168, 0, 10), MacAddr([2, 0, 0, 0, 0, 10]));
        let key = Ipv4Key {
            addr: [192, 168, 0, 10],
        };
        assert_eq!(maps.owned[&key].mac, [2, 0, 0, 0, 0, 10]);
    }

    #[test]
    fn drop_reasons_match_the_userspace_engine() {
        use crate::overlay::vtep::DropReason as Userspace;
        use shoal_ebpf_common::DropReason as Ebpf;
        assert_eq!(Userspace::ALL.len(), Ebpf::ALL.len());
        for (u, e) in Userspace::ALL.iter().zip(Ebpf::ALL) {
            assert_eq!(u.index(), e.index());
            assert_eq!(u.name(), e.name());
        }
    }
}
