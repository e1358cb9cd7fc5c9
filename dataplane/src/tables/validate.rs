//! Validation of [`Tables`]: every check that needs no machine, and the
//! few that do ([`Tables::check_host`]), each problem reported with its key
//! path. All problems are collected; nothing stops at the first.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::{Endpoint, MacAddr, Network, Protocol, Service, Tables};
use crate::wire::vxlan::VNI_MAX;

/// One thing wrong with a tables file: where (`endpoints[3].ip`) and what.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Problem {
    /// Key path in the file, as in `services[0].backends[1].ip`.
    pub path: String,
    pub message: String,
}

impl Problem {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl Tables {
    /// Checks everything that needs no access to the machine and returns
    /// every problem found, in file order.
    pub fn validate(&self) -> Result<(), Vec<Problem>> {
        let mut problems = Vec::new();
        if self.node.name.trim().is_empty() {
            problems.push(Problem::new(
                "node.name",
                "is empty; name this node (its hostname, for instance)",
            ));
        }
        self.check_peers(&mut problems);
        self.check_tunnel(&mut problems);
        self.check_networks(&mut problems);
        let endpoint_ips = self.check_endpoints(&mut problems);
        self.check_services(&endpoint_ips, &mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Checks what needs the machine: that the namespace of every local
    /// endpoint exists (`netns_exists` is `sys::netns::exists` in the daemon).
    pub fn check_host(&self, netns_exists: &dyn Fn(&str) -> bool) -> Result<(), Vec<Problem>> {
        let mut problems = Vec::new();
        for (i, e) in self.endpoints.iter().enumerate() {
            let Some(ns) = e.netns.as_deref().filter(|ns| !ns.is_empty()) else {
                continue;
            };
            if !self.is_local(e) || netns_exists(ns) {
                continue;
            }
            let message = if ns.starts_with('/') {
                format!(
                    "network namespace `{ns}` does not exist; is the process that owns it still running?"
                )
            } else {
                format!(
                    "network namespace `{ns}` does not exist; create it with `ip netns add {ns}`"
                )
            };
            problems.push(Problem::new(format!("endpoints[{i}].netns"), message));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// A peer is a node's unicast underlay address: VXLAN never comes from
    /// anything else.
    /// At most two preshared keys (the current one and the one before),
    /// each id once; no key for this node itself.
    fn check_tunnel(&self, problems: &mut Vec<Problem>) {
        let psks = &self.tunnel.preshared;
        if psks.len() > 2 {
            problems.push(Problem::new(
                "tunnel.preshared",
                format!(
                    "lists {} keys; keep the current one and the one before",
                    psks.len()
                ),
            ));
        }
        for (i, k) in psks.iter().enumerate() {
            if psks[..i].iter().any(|o| o.id == k.id) {
                problems.push(Problem::new(
                    format!("tunnel.preshared[{i}].id"),
                    format!("{} is listed twice", k.id),
                ));
            } else if let [a, b] = psks.as_slice()
                && i == 1
                && a.id % 2 == b.id % 2
            {
                // Handshakes name their key by the parity of its id.
                problems.push(Problem::new(
                    "tunnel.preshared[1].id",
                    format!(
                        "{} and {} are both {}; give the two keys consecutive ids",
                        a.id,
                        b.id,
                        if a.id % 2 == 0 { "even" } else { "odd" }
                    ),
                ));
            }
        }
        if self.tunnel.peers.contains_key(&self.node.underlay) {
            problems.push(Problem::new(
                format!("tunnel.peers.{}", self.node.underlay),
                "is this node's own address; list the other nodes' keys",
            ));
        }
    }

    fn check_peers(&self, problems: &mut Vec<Problem>) {
        for (i, peer) in self.peers.iter().enumerate() {
            let what = if peer.is_unspecified() {
                "the unspecified address"
            } else if peer.is_broadcast() {
                "the broadcast address"
            } else if peer.is_multicast() {
                "a multicast address"
            } else {
                continue;
            };
            problems.push(Problem::new(
                format!("peers[{i}]"),
                format!("{peer} is {what}; list each other node's underlay address"),
            ));
        }
    }

    fn check_networks(&self, problems: &mut Vec<Problem>) {
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut vnis: HashMap<u32, usize> = HashMap::new();
        for (i, n) in self.networks.iter().enumerate() {
            let at = |field: &str| format!("networks[{i}].{field}");
            if n.name.trim().is_empty() {
                problems.push(Problem::new(
                    at("name"),
                    "is empty; every network needs a name",
                ));
            } else if let Some(&j) = names.get(n.name.as_str()) {
                problems.push(Problem::new(
                    at("name"),
                    format!("network `{}` is already defined at networks[{j}]", n.name),
                ));
            } else {
                names.insert(&n.name, i);
            }
            if !(1..=VNI_MAX).contains(&n.vni) {
                problems.push(Problem::new(
                    at("vni"),
                    format!(
                        "{} is outside 1..={VNI_MAX} (VXLAN has 24-bit VNIs and 0 is reserved)",
                        n.vni
                    ),
                ));
            } else if let Some(&j) = vnis.get(&n.vni) {
                problems.push(Problem::new(
                    at("vni"),
                    format!(
                        "VNI {} is already used by network `{}`",
                        n.vni, self.networks[j].name
                    ),
                ));
            } else {
                vnis.insert(n.vni, i);
            }
            self.check_subnet(i, n, problems);
            if let Some(what) = n.gateway.and_then(|gw| special_address(n, gw, false)) {
                problems.push(Problem::new(at("gateway"), what));
            }
            if let Some(mtu) = n.mtu.filter(|m| !(576..=9000).contains(m)) {
                problems.push(Problem::new(
                    at("mtu"),
                    format!("{mtu} is outside 576..=9000; leave it out for the underlay MTU - 50"),
                ));
            }
        }
    }

    /// A subnet must be written as its network address, leave room for a
    /// gateway and endpoints, and overlap no earlier network's subnet.
    fn check_subnet(&self, i: usize, n: &Network, problems: &mut Vec<Problem>) {
        let at = format!("networks[{i}].subnet");
        if n.subnet.prefix_len() > 30 {
            problems.push(Problem::new(
                &at,
                format!(
                    "{} leaves no room for a gateway and endpoints; use /30 or shorter",
                    n.subnet
                ),
            ));
        } else if n.subnet.addr() != n.subnet.network() {
            problems.push(Problem::new(
                &at,
                format!("{} has host bits set; write {}", n.subnet, n.subnet.trunc()),
            ));
        }
        let earlier = self.networks[..i].iter();
        if let Some(other) = earlier.into_iter().find(|o| overlaps(o.subnet, n.subnet)) {
            problems.push(Problem::new(
                at,
                format!(
                    "{} overlaps subnet {} of network `{}`",
                    n.subnet, other.subnet, other.name
                ),
            ));
        }
    }

    /// Checks endpoints and returns where each (network, IP) is defined.
    fn check_endpoints(&self, problems: &mut Vec<Problem>) -> HashMap<(&str, Ipv4Addr), usize> {
        let mut ips: HashMap<(&str, Ipv4Addr), usize> = HashMap::new();
        let mut macs: HashMap<(&str, MacAddr), usize> = HashMap::new();
        for (i, e) in self.endpoints.iter().enumerate() {
            let at = |field: &str| format!("endpoints[{i}].{field}");
            match self.network(&e.network) {
                None => problems.push(Problem::new(at("network"), undefined_network(&e.network))),
                Some(n) => {
                    if let Some(what) = special_address(n, e.ip, true) {
                        problems.push(Problem::new(at("ip"), what));
                    }
                }
            }
            let key = (e.network.as_str(), e.ip);
            match ips.get(&key) {
                Some(&j) => problems.push(Problem::new(
                    at("ip"),
                    format!(
                        "{} is already used by endpoints[{j}] on network `{}`",
                        e.ip, e.network
                    ),
                )),
                None => {
                    ips.insert(key, i);
                }
            }
            let mac = e.mac_or_default();
            let whose = if e.mac.is_some() {
                ""
            } else {
                " (the default for its ip)"
            };
            if mac.0[0] & 1 != 0 {
                problems.push(Problem::new(
                    at("mac"),
                    format!("{mac} is a multicast address; an endpoint needs a unicast MAC (even first byte)"),
                ));
            }
            match macs.get(&(e.network.as_str(), mac)) {
                Some(&j) => problems.push(Problem::new(
                    at("mac"),
                    format!(
                        "{mac}{whose} is already used by endpoints[{j}] on network `{}`",
                        e.network
                    ),
                )),
                None => {
                    macs.insert((e.network.as_str(), mac), i);
                }
            }
            self.check_netns(i, e, problems);
        }
        ips
    }

    fn check_netns(&self, i: usize, e: &Endpoint, problems: &mut Vec<Problem>) {
        let at = format!("endpoints[{i}].netns");
        let underlay = self.node.underlay;
        match (self.is_local(e), e.netns.as_deref()) {
            (true, None) => problems.push(Problem::new(
                at,
                format!(
                    "missing; an endpoint on this node ({underlay}) needs the network namespace shoal wires (`ip netns add NAME`)"
                ),
            )),
            (true, Some("")) => problems.push(Problem::new(
                at,
                "is empty; name a namespace (`ip netns add NAME`) or give a path like /proc/PID/ns/net",
            )),
            (true, Some(ns)) if !ns.starts_with('/') && (ns.contains('/') || ns == "." || ns == "..") => {
                problems.push(Problem::new(
                    at,
                    format!("`{ns}` is neither a namespace name (no `/`) nor an absolute path"),
                ));
            }
            (false, Some(_)) => problems.push(Problem::new(
                at,
                format!(
                    "netns is only for endpoints on this node ({underlay}); this one lives on {}",
                    e.node
                ),
            )),
            (true, Some(_)) | (false, None) => {}
        }
    }

    fn check_services(
        &self,
        endpoint_ips: &HashMap<(&str, Ipv4Addr), usize>,
        problems: &mut Vec<Problem>,
    ) {
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut vips: HashMap<(&str, Ipv4Addr), &str> = HashMap::new();
        let mut published: HashMap<(u16, Protocol), &str> = HashMap::new();
        for (i, s) in self.services.iter().enumerate() {
            let at = |field: &str| format!("services[{i}].{field}");
            if s.name.trim().is_empty() {
                problems.push(Problem::new(
                    at("name"),
                    "is empty; every service needs a name",
                ));
            } else if let Some(&j) = names.get(s.name.as_str()) {
                problems.push(Problem::new(
                    at("name"),
                    format!("service `{}` is already defined at services[{j}]", s.name),
                ));
            } else {
                names.insert(&s.name, i);
            }
            for (k, alias) in s.aliases.iter().enumerate() {
                if alias.trim().is_empty() || alias.contains(char::is_whitespace) {
                    problems.push(Problem::new(
                        at(&format!("aliases[{k}]")),
                        format!("`{alias}` is not a DNS name"),
                    ));
                }
            }
            for (net_name, &vip) in &s.vips {
                let path = at(&format!("vips.{net_name}"));
                let Some(n) = self.network(net_name) else {
                    problems.push(Problem::new(path, undefined_network(net_name)));
                    continue;
                };
                if let Some(what) = special_address(n, vip, true) {
                    problems.push(Problem::new(path, what));
                } else if let Some(&j) = endpoint_ips.get(&(net_name.as_str(), vip)) {
                    problems.push(Problem::new(
                        path,
                        format!("{vip} is already the ip of endpoints[{j}]"),
                    ));
                } else if let Some(other) = vips.get(&(net_name.as_str(), vip)) {
                    problems.push(Problem::new(
                        path,
                        format!("{vip} is already the VIP of service `{other}`"),
                    ));
                } else {
                    vips.insert((net_name.as_str(), vip), &s.name);
                }
            }
            for (j, port) in s.ports.iter().enumerate() {
                let at = |field: &str| at(&format!("ports[{j}].{field}"));
                if port.target == 0 {
                    problems.push(Problem::new(
                        at("target"),
                        "is 0; give the port the service's tasks listen on",
                    ));
                }
                match port.published {
                    Some(0) => problems.push(Problem::new(
                        at("published"),
                        "is 0; give a port from 1 to 65535, or leave it out to publish nothing",
                    )),
                    Some(p) => {
                        if let Some(other) = published.get(&(p, port.protocol)) {
                            problems.push(Problem::new(
                                at("published"),
                                format!(
                                    "port {p}/{} is already published by service `{other}`",
                                    port.protocol
                                ),
                            ));
                        } else {
                            published.insert((p, port.protocol), &s.name);
                        }
                    }
                    None => {}
                }
            }
            self.check_backends(i, s, endpoint_ips, problems);
        }
    }

    /// Backends must be endpoints of the service's VIP networks (of any
    /// network when it has no VIP, as with dnsrr), once each, weight >= 1.
    fn check_backends(
        &self,
        i: usize,
        s: &Service,
        endpoint_ips: &HashMap<(&str, Ipv4Addr), usize>,
        problems: &mut Vec<Problem>,
    ) {
        let networks: Vec<&str> = if s.vips.is_empty() {
            self.networks.iter().map(|n| n.name.as_str()).collect()
        } else {
            s.vips
                .keys()
                .map(String::as_str)
                .filter(|n| self.network(n).is_some())
                .collect()
        };
        let mut seen: HashMap<Ipv4Addr, usize> = HashMap::new();
        for (j, b) in s.backends.iter().enumerate() {
            let at = |field: &str| format!("services[{i}].backends[{j}].{field}");
            if let Some(&k) = seen.get(&b.ip) {
                problems.push(Problem::new(
                    at("ip"),
                    format!("{} is already backends[{k}]", b.ip),
                ));
            } else {
                seen.insert(b.ip, j);
                if !networks
                    .iter()
                    .any(|n| endpoint_ips.contains_key(&(*n, b.ip)))
                {
                    problems.push(Problem::new(
                        at("ip"),
                        format!("{} is no endpoint of {}", b.ip, network_list(&networks, s)),
                    ));
                }
            }
            if b.weight == 0 {
                problems.push(Problem::new(
                    at("weight"),
                    "is 0; a weight must be at least 1 (set state: draining to stop new flows)",
                ));
            }
        }
    }
}

/// Why `ip` cannot be an address of network `n` (outside the subnet, its
/// network or broadcast address, or, when `not_gateway`, its gateway).
fn special_address(n: &Network, ip: Ipv4Addr, not_gateway: bool) -> Option<String> {
    let (subnet, name) = (n.subnet.trunc(), &n.name);
    if !subnet.contains(&ip) {
        Some(format!(
            "{ip} is outside subnet {subnet} of network `{name}`"
        ))
    } else if ip == subnet.network() {
        Some(format!(
            "{ip} is the network address of subnet {subnet} of network `{name}`"
        ))
    } else if ip == subnet.broadcast() {
        Some(format!(
            "{ip} is the broadcast address of subnet {subnet} of network `{name}`"
        ))
    } else if not_gateway && ip == n.gateway_or_default() {
        Some(format!(
            "{ip} is the gateway of network `{name}`; pick another address"
        ))
    } else {
        None
    }
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    let (a, b) = (a.trunc(), b.trunc());
    a.contains(&b.network()) || b.contains(&a.network())
}

fn undefined_network(name: &str) -> String {
    format!("network `{name}` is not defined; add it under `networks`")
}

fn network_list(networks: &[&str], s: &Service) -> String {
    match networks {
        [] if s.vips.is_empty() => "any network (there are none)".to_string(),
        [] => "any defined network (its vips name none)".to_string(),
        [one] => format!("network `{one}`"),
        many => {
            let names: Vec<String> = many.iter().map(|n| format!("`{n}`")).collect();
            format!("networks {}", names.join(", "))
        }
    }
}
