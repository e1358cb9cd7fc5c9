//! The forwarding database: for every overlay network, where each address
//! lives. Built whole from [`Tables`] (the control plane knows every
//! endpoint, so nothing is learned from traffic) and swapped atomically by
//! the engines. It also says who may send VXLAN at all: the nodes the
//! tables name ([`Fdb::is_node`]).

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4};

use ipnet::Ipv4Net;

use crate::lb::{BackendSet, LbBackend, maglev};
use crate::tables::{MacAddr, Protocol, PublishMode, Tables};

pub use shoal_ebpf_common::LB_FLOW_SEED;

/// Index of a local port (a task interface) in the engine's port table.
pub type PortId = usize;

/// Where frames for an address go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// A task interface on this node.
    Local(PortId),
    /// Another node, by underlay address.
    Remote(Ipv4Addr),
}

/// One address of an overlay network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Station {
    pub mac: MacAddr,
    pub at: Location,
}

/// A service's virtual IP on one network.
#[derive(Debug, Clone)]
pub struct Vip {
    pub service: String,
    /// `(protocol, port)` pairs the VIP answers on.
    pub ports: Vec<(Protocol, u16)>,
    /// Whether it answers on every port instead.
    pub all_ports: bool,
    /// The service's backends on this network.
    pub backends: BackendSet,
}

impl Vip {
    pub fn serves(&self, proto: Protocol, port: u16) -> bool {
        self.all_ports || self.ports.contains(&(proto, port))
    }
}

/// Forwarding state of one overlay network.
#[derive(Debug, Clone)]
pub struct Segment {
    pub name: String,
    pub vni: u32,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// The MAC the VTEP answers ARP with for the gateway address.
    pub gateway_mac: MacAddr,
    pub mtu: u16,
    /// Its datagrams between nodes ride the WireGuard tunnel.
    pub encrypted: bool,
    by_ip: HashMap<Ipv4Addr, Station>,
    by_mac: HashMap<MacAddr, Location>,
    vips: HashMap<Ipv4Addr, Vip>,
}

impl Segment {
    /// The service VIPs on this network.
    pub fn vips(&self) -> impl Iterator<Item = (Ipv4Addr, &Vip)> {
        self.vips.iter().map(|(&ip, v)| (ip, v))
    }

    /// The service VIP at `ip`, if any.
    pub fn vip(&self, ip: Ipv4Addr) -> Option<&Vip> {
        self.vips.get(&ip)
    }

    /// The station holding `ip`, if the tables know one.
    pub fn station(&self, ip: Ipv4Addr) -> Option<&Station> {
        self.by_ip.get(&ip)
    }

    /// Where the frame for destination `mac` goes.
    pub fn locate_mac(&self, mac: MacAddr) -> Option<Location> {
        self.by_mac.get(&mac).copied()
    }

    /// The MAC the VTEP answers an ARP request for `ip` with: the station's,
    /// or the gateway's.
    pub fn arp_answer(&self, ip: Ipv4Addr) -> Option<MacAddr> {
        // The VTEP takes VIP traffic in; the gateway's MAC says so.
        if ip == self.gateway || self.vips.contains_key(&ip) {
            return Some(self.gateway_mac);
        }
        self.by_ip.get(&ip).map(|s| s.mac)
    }
}

/// Index of a segment inside an [`Fdb`].
pub type SegmentId = usize;

/// A published port: the routing mesh sends its traffic to the service's
/// backends on one of its networks.
#[derive(Debug, Clone)]
pub struct Published {
    pub segment: SegmentId,
    /// The service's VIP on that segment (its backends are the VIP's).
    pub vip: Ipv4Addr,
    pub target: u16,
    /// Mode host: only this node's backends serve the port (and a node
    /// without one does not publish it).
    pub local: Option<BackendSet>,
}

/// Forwarding state of a node: every overlay network it takes part in.
#[derive(Debug, Clone, Default)]
pub struct Fdb {
    segments: Vec<Segment>,
    by_vni: HashMap<u32, SegmentId>,
    published: HashMap<(Protocol, u16), Published>,
    /// Underlay addresses of the nodes in the tables: the only senders of
    /// VXLAN taken.
    nodes: HashSet<Ipv4Addr>,
    /// Where routing-mesh flows may go on a backend's node: (segment,
    /// protocol, backend, target port) of every port published in ingress
    /// mode.
    mesh_targets: HashSet<(SegmentId, Protocol, Ipv4Addr, u16)>,
    has_vips: bool,
}

impl Fdb {
    /// Builds the forwarding state of `tables`. `local_port` maps each local
    /// endpoint (by network name and IP) to its port; endpoints it does not
    /// know are left out (their interface is not up yet).
    pub fn build(
        tables: &Tables,
        underlay_mtu: u16,
        local_port: impl Fn(&str, Ipv4Addr) -> Option<PortId>,
    ) -> Fdb {
        Fdb::rebuild(tables, underlay_mtu, local_port, &Fdb::default())
    }

    /// [`Fdb::build`], keeping the Maglev tables of `previous` (the state in
    /// force) whose backends did not change.
    pub fn rebuild(
        tables: &Tables,
        underlay_mtu: u16,
        local_port: impl Fn(&str, Ipv4Addr) -> Option<PortId>,
        previous: &Fdb,
    ) -> Fdb {
        let mut fdb = Fdb {
            nodes: tables.nodes().collect(),
            ..Fdb::default()
        };
        // Where every endpoint is, indexed once rather than searched per
        // backend.
        let endpoints: HashSet<(&str, Ipv4Addr)> = tables
            .endpoints
            .iter()
            .map(|e| (e.network.as_str(), e.ip))
            .collect();
        for net in &tables.networks {
            let gateway = net.gateway_or_default();
            fdb.by_vni.insert(net.vni, fdb.segments.len());
            fdb.segments.push(Segment {
                name: net.name.clone(),
                vni: net.vni,
                subnet: net.subnet,
                gateway,
                gateway_mac: gateway_mac(net.vni),
                mtu: net.mtu_or(underlay_mtu),
                encrypted: net.encrypted,
                by_ip: HashMap::new(),
                by_mac: HashMap::new(),
                vips: HashMap::new(),
            });
        }
        for ep in &tables.endpoints {
            let Some(seg) = tables.networks.iter().position(|n| n.name == ep.network) else {
                continue;
            };
            let at = if tables.is_local(ep) {
                match local_port(&ep.network, ep.ip) {
                    Some(port) => Location::Local(port),
                    None => continue,
                }
            } else {
                Location::Remote(ep.node)
            };
            let mac = ep.mac_or_default();
            let segment = &mut fdb.segments[seg];
            segment.by_ip.insert(ep.ip, Station { mac, at });
            segment.by_mac.insert(mac, at);
        }
        for svc in &tables.services {
            for (net, &vip) in &svc.vips {
                let Some(segment) = fdb.segments.iter_mut().find(|s| &s.name == net) else {
                    continue;
                };
                let backends = svc
                    .backends
                    .iter()
                    .filter(|b| endpoints.contains(&(net.as_str(), b.ip)))
                    .map(LbBackend::from)
                    .collect();
                let kept = previous
                    .segment_by_name(net)
                    .and_then(|(_, s)| s.vip(vip))
                    .map(|v| &v.backends);
                // Validated tables never list a backend twice; a set that
                // cannot be built leaves the VIP out rather than half-made.
                let Ok(backends) = BackendSet::new_or_kept(
                    backends,
                    maglev::DEFAULT_TABLE_SIZE,
                    LB_FLOW_SEED,
                    kept,
                ) else {
                    continue;
                };
                let ports = svc.ports.iter().map(|p| (p.protocol, p.target)).collect();
                segment.vips.insert(
                    vip,
                    Vip {
                        service: svc.name.clone(),
                        ports,
                        all_ports: svc.all_ports,
                        backends,
                    },
                );
            }
            // The mesh reaches the backends over the first network with a VIP.
            let entry = svc.vips.iter().find_map(|(net, &vip)| {
                let (id, seg) = fdb.segment_by_name(net)?;
                seg.vips.contains_key(&vip).then_some((id, vip))
            });
            if let Some((segment, vip)) = entry {
                let seg_name = fdb.segments[segment].name.clone();
                for p in &svc.ports {
                    let Some(published) = p.published else {
                        continue;
                    };
                    let local = match p.mode {
                        PublishMode::Ingress => {
                            // Other nodes bring this port's clients to the
                            // backends here over VXLAN.
                            let backends = svc
                                .backends
                                .iter()
                                .filter(|b| endpoints.contains(&(seg_name.as_str(), b.ip)));
                            for b in backends {
                                fdb.mesh_targets
                                    .insert((segment, p.protocol, b.ip, p.target));
                            }
                            None
                        }
                        PublishMode::Host => {
                            let here = |ip: Ipv4Addr| {
                                tables.endpoints.iter().any(|e| {
                                    e.network == seg_name && e.ip == ip && tables.is_local(e)
                                })
                            };
                            let mine: Vec<LbBackend> = svc
                                .backends
                                .iter()
                                .filter(|b| b.state.is_active() && here(b.ip))
                                .map(LbBackend::from)
                                .collect();
                            if mine.is_empty() {
                                continue;
                            }
                            let kept = previous
                                .published(p.protocol, published)
                                .and_then(|p| p.local.as_ref());
                            let set = BackendSet::new_or_kept(
                                mine,
                                maglev::DEFAULT_TABLE_SIZE,
                                LB_FLOW_SEED,
                                kept,
                            );
                            match set {
                                Ok(set) => Some(set),
                                Err(_) => continue,
                            }
                        }
                    };
                    let target = p.target;
                    let at = Published {
                        segment,
                        vip,
                        target,
                        local,
                    };
                    fdb.published.insert((p.protocol, published), at);
                }
            }
        }
        fdb.has_vips = fdb.segments.iter().any(|s| !s.vips.is_empty());
        fdb
    }

    /// The service behind a published port.
    pub fn published(&self, proto: Protocol, port: u16) -> Option<&Published> {
        self.published.get(&(proto, port))
    }

    /// Whether `ip` is the underlay address of a node in the tables, one
    /// that may send this node VXLAN.
    pub fn is_node(&self, ip: Ipv4Addr) -> bool {
        self.nodes.contains(&ip)
    }

    /// Whether `dst` on segment `seg` is a backend's target port of a port
    /// published in ingress mode: where a routing-mesh flow that entered at
    /// another node may go.
    pub fn is_mesh_target(&self, seg: SegmentId, proto: Protocol, dst: SocketAddrV4) -> bool {
        self.mesh_targets
            .contains(&(seg, proto, *dst.ip(), dst.port()))
    }

    /// Every port this node publishes, sorted.
    pub fn published_ports(&self) -> Vec<(Protocol, u16)> {
        let mut ports: Vec<_> = self.published.keys().copied().collect();
        ports.sort_by_key(|&(proto, port)| (port, proto == Protocol::Udp));
        ports
    }

    /// Whether any network has a service VIP (replies then need reverse NAT).
    pub fn has_vips(&self) -> bool {
        self.has_vips
    }

    pub fn segment(&self, id: SegmentId) -> &Segment {
        &self.segments[id]
    }

    pub fn segment_by_vni(&self, vni: u32) -> Option<(SegmentId, &Segment)> {
        self.by_vni.get(&vni).map(|&id| (id, &self.segments[id]))
    }

    pub fn segment_by_name(&self, name: &str) -> Option<(SegmentId, &Segment)> {
        self.segments
            .iter()
            .enumerate()
            .find(|(_, s)| s.name == name)
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }
}

/// The gateway's MAC on a network: locally administered, derived from the VNI
/// so that every node answers with the same one.
pub fn gateway_mac(vni: u32) -> MacAddr {
    let v = vni.to_be_bytes();
    MacAddr([0x02, 0x53, 0x48, v[1], v[2], v[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables() -> Tables {
        Tables::from_yaml_str(
            r#"
node: { name: n1, underlay: 198.18.0.1 }
networks:
  - { name: skynet, vni: 4097, subnet: 10.10.0.0/24 }
  - { name: other, vni: 4098, subnet: 10.20.0.0/24, mtu: 1400 }
endpoints:
  - { network: skynet, ip: 10.10.0.2, node: 198.18.0.1, netns: web1 }
  - { network: skynet, ip: 10.10.0.3, node: 198.18.0.2 }
  - { network: other, ip: 10.20.0.3, node: 198.18.0.2, mac: "02:00:00:00:00:09" }
"#,
        )
        .expect("valid tables")
    }

    #[test]
    fn locates_local_and_remote_stations() {
        let fdb = Fdb::build(&tables(), 1500, |net, ip| {
            (net == "skynet" && ip == Ipv4Addr::new(10, 10, 0, 2)).then_some(7)
        });
        let (_, sky) = fdb.segment_by_vni(4097).expect("skynet");
        assert_eq!(sky.mtu, 1450);
        assert_eq!(
            sky.station(Ipv4Addr::new(10, 10, 0, 2)).map(|s| s.at),
            Some(Location::Local(7))
        );
        assert_eq!(
            sky.station(Ipv4Addr::new(10, 10, 0, 3)).map(|s| s.at),
            Some(Location::Remote(Ipv4Addr::new(198, 18, 0, 2)))
        );
        assert_eq!(
            sky.arp_answer(Ipv4Addr::new(10, 10, 0, 3)),
            Some(MacAddr::from_ipv4(Ipv4Addr::new(10, 10, 0, 3)))
        );
        assert_eq!(
            sky.arp_answer(Ipv4Addr::new(10, 10, 0, 1)),
            Some(gateway_mac(4097))
        );
        assert_eq!(sky.arp_answer(Ipv4Addr::new(10, 10, 0, 9)), None);
        let (_, other) = fdb.segment_by_vni(4098).expect("other");
        assert_eq!(other.mtu, 1400);
        assert_eq!(
            other.locate_mac(MacAddr([2, 0, 0, 0, 0, 9])),
            Some(Location::Remote(Ipv4Addr::new(198, 18, 0, 2)))
        );
        assert!(fdb.segment_by_vni(1).is_none());
    }

    #[test]
    fn the_nodes_are_those_the_tables_name() {
        let mut t = tables();
        t.peers = vec![Ipv4Addr::new(198, 18, 0, 9)];
        let fdb = Fdb::build(&t, 1500, |_, _| None);
        for node in [[198, 18, 0, 1], [198, 18, 0, 2], [198, 18, 0, 9]] {
            assert!(fdb.is_node(Ipv4Addr::from(node)), "{node:?}");
        }
        assert!(!fdb.is_node(Ipv4Addr::new(198, 18, 0, 3)));
        assert!(!Fdb::default().is_node(Ipv4Addr::new(198, 18, 0, 1)));
    }

    #[test]
    fn mesh_targets_are_the_ingress_ports_targets_on_each_backend() {
        let t = Tables::from_yaml_str(
            r#"
node: { name: n1, underlay: 198.18.0.1 }
networks:
  - { name: skynet, vni: 4097, subnet: 10.10.0.0/24 }
  - { name: other, vni: 4098, subnet: 10.20.0.0/24 }
endpoints:
  - { network: skynet, ip: 10.10.0.2, node: 198.18.0.1, netns: web1 }
  - { network: skynet, ip: 10.10.0.3, node: 198.18.0.2 }
  - { network: other, ip: 10.20.0.3, node: 198.18.0.2 }
services:
  - { name: web, vips: { skynet: 10.10.0.100 },
      ports: [ { target: 80, published: 8080 }, { target: 53, protocol: udp, published: 53 },
               { target: 22 }, { target: 443, published: 8443, mode: host } ],
      backends: [ { ip: 10.10.0.2 }, { ip: 10.10.0.3, state: draining } ] }
  - { name: db, vips: { other: 10.20.0.100 }, ports: [ { target: 5432 } ],
      backends: [ { ip: 10.20.0.3 } ] }
"#,
        )
        .expect("valid tables");
        let fdb = Fdb::build(&t, 1500, |_, _| None);
        let at = |ip: [u8; 4], port| SocketAddrV4::new(Ipv4Addr::from(ip), port);
        let (sky, _) = fdb.segment_by_name("skynet").expect("skynet");
        let (other, _) = fdb.segment_by_name("other").expect("other");
        for backend in [[10, 10, 0, 2], [10, 10, 0, 3]] {
            assert!(fdb.is_mesh_target(sky, Protocol::Tcp, at(backend, 80)));
            assert!(fdb.is_mesh_target(sky, Protocol::Udp, at(backend, 53)));
            // The wrong protocol, a port only the VIP serves, one
            // published in host mode (its clients never cross nodes).
            assert!(!fdb.is_mesh_target(sky, Protocol::Udp, at(backend, 80)));
            assert!(!fdb.is_mesh_target(sky, Protocol::Tcp, at(backend, 22)));
            assert!(!fdb.is_mesh_target(sky, Protocol::Tcp, at(backend, 443)));
        }
        // Not a backend, another segment, a network without published ports.
        assert!(!fdb.is_mesh_target(sky, Protocol::Tcp, at([10, 10, 0, 9], 80)));
        assert!(!fdb.is_mesh_target(other, Protocol::Tcp, at([10, 10, 0, 2], 80)));
        assert!(!fdb.is_mesh_target(other, Protocol::Tcp, at([10, 20, 0, 3], 5432)));
    }

    #[test]
    fn local_endpoints_without_a_port_are_left_out() {
        let fdb = Fdb::build(&tables(), 1500, |_, _| None);
        let (_, sky) = fdb.segment_by_vni(4097).expect("skynet");
        assert!(sky.station(Ipv4Addr::new(10, 10, 0, 2)).is_none());
    }

    #[test]
    fn a_vip_serves_its_listed_ports_or_every_port_with_all_ports() {
        let mut t = tables();
        let svc = |all_ports| crate::tables::Service {
            name: "web".into(),
            vips: [("skynet".to_owned(), Ipv4Addr::new(10, 10, 0, 100))].into(),
            ports: vec![crate::tables::Port {
                protocol: Protocol::Tcp,
                target: 80,
                published: None,
                mode: PublishMode::Ingress,
            }],
            backends: vec![],
            endpoint_mode: crate::tables::EndpointMode::Vip,
            all_ports,
            aliases: Vec::new(),
        };
        for all_ports in [false, true] {
            t.services = vec![svc(all_ports)];
            let fdb = Fdb::build(&t, 1500, |_, _| None);
            let (_, sky) = fdb.segment_by_vni(4097).expect("skynet");
            let vip = sky.vip(Ipv4Addr::new(10, 10, 0, 100)).expect("vip");
            assert!(vip.serves(Protocol::Tcp, 80));
            assert_eq!(vip.serves(Protocol::Tcp, 5432), all_ports);
            assert_eq!(vip.serves(Protocol::Udp, 53), all_ports);
        }
    }

    #[test]
    fn a_rebuild_keeps_the_maglev_tables_whose_backends_did_not_change() {
        let t = Tables::from_yaml_str(
            r#"
node: { name: n1, underlay: 198.18.0.1 }
networks:
  - { name: skynet, vni: 4097, subnet: 10.10.0.0/24 }
endpoints:
  - { network: skynet, ip: 10.10.0.2, node: 198.18.0.1, netns: web1 }
  - { network: skynet, ip: 10.10.0.3, node: 198.18.0.2 }
  - { network: skynet, ip: 10.10.0.4, node: 198.18.0.2 }
services:
  - { name: web, vips: { skynet: 10.10.0.100 }, ports: [ { target: 80 } ],
      backends: [ { ip: 10.10.0.2 }, { ip: 10.10.0.3 } ] }
  - { name: api, vips: { skynet: 10.10.0.101 }, ports: [ { target: 80 } ],
      backends: [ { ip: 10.10.0.4 } ] }
"#,
        )
        .expect("valid tables");
        let set = |fdb: &Fdb, vip: [u8; 4]| {
            let (_, sky) = fdb.segment_by_vni(4097).expect("skynet");
            sky.vip(Ipv4Addr::from(vip)).expect("vip").backends.clone()
        };
        let first = Fdb::build(&t, 1500, |_, _| None);
        let mut changed = t.clone();
        changed.services[0].backends[1].state = crate::tables::EndpointState::Draining;
        let second = Fdb::rebuild(&changed, 1500, |_, _| None, &first);
        assert!(set(&second, [10, 10, 0, 101]).shares_table_with(&set(&first, [10, 10, 0, 101])));
        let web = set(&second, [10, 10, 0, 100]);
        assert!(!web.shares_table_with(&set(&first, [10, 10, 0, 100])));
        assert_eq!(
            web.maglev(),
            Fdb::build(&changed, 1500, |_, _| None)
                .segment(0)
                .vip(Ipv4Addr::new(10, 10, 0, 100))
                .expect("vip")
                .backends
                .maglev()
        );
    }
}
